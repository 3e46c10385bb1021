"""Reading a router answer back from *text*: the inverse of ``prompt.render_answer``.

The router itself never needs this (its decoder returns names). It is for text that comes
back from elsewhere: the exported GGUF served by llama-server or LlamaFarm, a FunctionGemma
base, a teacher model.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from openhoof_router.core.prompt import END, clean_text
from openhoof_router.core.records import NO_TOOL, ToolCall


@dataclass
class ParsedAnswer:
    tool_calls: list[ToolCall] = field(default_factory=list)
    valid: bool = True
    error: str | None = None


_FG_CALL = re.compile(r"call:([^\s{},<]+)\s*(\{.*?\})?(?=<end_function_call>|call:|$)", re.S)
_NAME_ARGS = re.compile(r"([^\s{},]+)\s*(\{.*?\}(?=\s*(?:,|$)))?", re.S)


def _loads_args(text: str | None) -> dict:
    if not text:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        # FunctionGemma writes {key:<escape>value<escape>}: read it leniently
        pairs = re.findall(r"(\w+)\s*:\s*(?:<escape>(.*?)<escape>|([^,}]*))", text, re.S)
        return {k: (a if a else b.strip()) for k, a, b in pairs}
    return value if isinstance(value, dict) else {}


def _candidates(text: str) -> list[tuple[str, dict]] | None:
    """Read (name, arguments) pairs from any accepted answer form; None if unreadable."""
    stripped = text.strip()
    if stripped.startswith("{") or stripped.startswith("["):
        try:
            data = json.loads(stripped)
        except json.JSONDecodeError:
            return None
        calls = data.get("tool_calls", data) if isinstance(data, dict) else data
        if isinstance(calls, dict):
            calls = [calls]
        if not isinstance(calls, list):
            return None
        out: list[tuple[str, dict]] = []
        for call in calls:
            if isinstance(call, str):
                out.append((call, {}))
            elif isinstance(call, dict) and isinstance(call.get("name"), str):
                args = call.get("arguments", {})
                if isinstance(args, str):
                    args = _loads_args(args)
                out.append((call["name"], args if isinstance(args, dict) else {}))
            else:
                return None
        return out
    if "call:" in stripped:
        return [(m.group(1), _loads_args(m.group(2))) for m in _FG_CALL.finditer(stripped)] or None
    parts = [p.strip() for p in re.split(r"[,\n]", stripped) if p.strip()]
    out = []
    for part in parts:
        m = _NAME_ARGS.fullmatch(part)
        if not m:
            return None
        out.append((m.group(1), _loads_args(m.group(2))))
    return out


def parse_answer(raw: str, offered: Sequence[str]) -> ParsedAnswer:
    """Read an answer *text* into validated tool calls. Never raises.

    The router itself never needs this (its decoder returns names); it is for text that
    comes back from elsewhere: the exported GGUF served by llama-server or LlamaFarm, a
    FunctionGemma base, a teacher. Accepted: ``a,b``, ``none``, ``name{json}``, JSON
    ``{"tool_calls": [...]}`` and FunctionGemma ``call:name{...}``. Names not among
    ``offered`` never come out as calls: the answer is then marked invalid (with the
    reason) and only the offered names it held are kept.
    """
    text = clean_text(raw).split(END, 1)[0]
    text = text.replace("<start_function_call>", "").replace("<end_function_call>", "\n").strip()
    if not text:
        return ParsedAnswer(valid=False, error="empty answer")
    if text.lower() == NO_TOOL:
        return ParsedAnswer()
    found = _candidates(text)
    if found is None:
        return ParsedAnswer(valid=False, error=f"unreadable answer: {text[:80]!r}")
    allowed = set(offered)
    calls: list[ToolCall] = []
    unknown: list[str] = []
    for name, args in found:
        if name.lower() == NO_TOOL:
            continue
        if name not in allowed:
            unknown.append(name)
        elif name not in [c.name for c in calls]:
            calls.append(ToolCall(name=name, arguments=args))
    if unknown:
        return ParsedAnswer(calls, valid=False, error=f"not among the offered tools: {unknown}")
    return ParsedAnswer(calls)
