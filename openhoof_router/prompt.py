"""The prompt format: the only place it exists. Training and inference both import it.

Layout (FunctionGemma's turns; the base model has no chat template of its own)::

    <start_of_turn>developer
    You route requests to tools. ...
    memory_read(file): Read one of the agent's own workspace files ...
    ...<end_of_turn>
    <start_of_turn>user
    {message}<end_of_turn>
    <start_of_turn>model
    {answer}<end_of_turn>

The developer turn (the *tool block*) depends only on the tools, so backends cache its KV
state and evaluate just the user turn. The answer is the selected tool names joined by
``,`` (or ``none``): a handful of tokens, because decoding costs ~20 ms a token on a
laptop CPU. Arguments are the reasoner's job; the parser still accepts ``name{json}``,
JSON ``{"tool_calls": [...]}`` and FunctionGemma ``call:name{...}`` answers.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Sequence

from .records import ToolCall
from .tools import ToolSpec

START = "<start_of_turn>"
END = "<end_of_turn>"
NO_TOOL = "none"
SEPARATOR = ","
MAX_DESCRIPTION_CHARS = 120

INSTRUCTION = (
    "You route requests to tools. Reply with the names of the tools the user's request "
    f"needs, separated by '{SEPARATOR}', or {NO_TOOL} if it needs no tool."
)


def _one_line(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= MAX_DESCRIPTION_CHARS else text[: MAX_DESCRIPTION_CHARS - 1] + "…"


def render_tool_line(tool: ToolSpec) -> str:
    params = ", ".join(tool.parameters)
    desc = _one_line(tool.description)
    return f"{tool.name}({params})" + (f": {desc}" if desc else "")


def render_tool_block(tools: Sequence[ToolSpec]) -> str:
    """The developer turn: constant for a given tool list (the cacheable prefix)."""
    lines = "\n".join(render_tool_line(t) for t in tools)
    return f"{START}developer\n{INSTRUCTION}\nTools:\n{lines}{END}\n"


def render_user_turn(message: str) -> str:
    """The user turn plus the opening of the model turn: what a cached call evaluates."""
    return f"{START}user\n{message.strip()}{END}\n{START}model\n"


def render_prompt(tools: Sequence[ToolSpec], message: str) -> str:
    return render_tool_block(tools) + render_user_turn(message)


def render_answer(names: Sequence[str]) -> str:
    """The model's answer for a tool set, end marker included (the training target)."""
    return (SEPARATOR.join(names) if names else NO_TOOL) + END


@dataclass
class ParsedAnswer:
    tool_calls: list[ToolCall] = field(default_factory=list)
    valid: bool = True
    error: str | None = None


_FG_CALL = re.compile(r"call:([A-Za-z_][\w.\-]*)\s*(\{.*?\})?(?=<end_function_call>|call:|$)", re.S)
_NAME_ARGS = re.compile(r"([A-Za-z_][\w.\-]*)\s*(\{.*?\}(?=\s*(?:,|$)))?", re.S)


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
        out = []
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
    """Turn the model's text into validated tool calls. Never raises.

    Names not among ``offered`` never come out as calls: the answer is then marked
    invalid (with the reason) and only the offered names it held are kept.
    """
    text = raw.split(END, 1)[0]
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
