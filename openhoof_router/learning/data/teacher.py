"""Teacher synthesis: a bigger model writes new user messages for each tool and tool pair.

The teacher is any LangChain chat model; :func:`make_teacher` builds the documented
default, Qwen3-8B (or anything) behind an OpenAI-compatible endpoint. Answers are
validated (JSON, strings of sensible length), near duplicates of everything already
known (curated, held-out, earlier synthetic) are dropped, and the survivors are appended
to ``synthetic_training.jsonl`` under the file lock. It works for any tool list.
"""

from __future__ import annotations

import itertools
import json
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from openhoof_router.core.records import TrainingRecord
from openhoof_router.core.tools import ToolSpec, needs_schemas, normalize_tools
from openhoof_router.learning.data.assemble import NearDuplicateIndex, curated_eval, curated_train, load_records
from openhoof_router.store.jsonl import append_jsonl
from openhoof_router.store.paths import Paths

RESPONSE_SCHEMA = {
    "type": "object",
    "properties": {"messages": {"type": "array", "items": {"type": "string"}, "minItems": 1}},
    "required": ["messages"],
}
MIN_CHARS, MAX_CHARS = 6, 400


def make_teacher(base_url: str, model: str, api_key: str = "not-needed", *, temperature: float = 0.9,
                 json_schema: bool = True, max_tokens: int = 600) -> Any:
    """A chat model on an OpenAI-compatible server (LlamaFarm, Ollama, llama-server, vLLM).

    With ``json_schema`` the server is asked to constrain its answer to the response
    schema (llama.cpp and Ollama honour it; others ignore it and the parser copes).
    """
    from langchain_openai import ChatOpenAI

    kwargs: dict[str, Any] = {}
    if json_schema:
        kwargs["response_format"] = {"type": "json_object", "schema": RESPONSE_SCHEMA}
    return ChatOpenAI(base_url=base_url, api_key=api_key, model=model, temperature=temperature,
                      max_tokens=max_tokens, timeout=120, max_retries=1, model_kwargs=kwargs)


def _describe(tools: Sequence[ToolSpec]) -> str:
    return "\n".join(f"- {t.name}: {t.description or '(no description)'}" for t in tools)


def build_request(tools: Sequence[ToolSpec], target: Sequence[str], n: int) -> list[tuple[str, str]]:
    """The (role, text) messages asking the teacher for ``n`` messages needing exactly ``target``."""
    if target:
        need = " and then ".join(f"`{t}`" for t in target)
        task = (f"Write {n} different, realistic messages a user might send to an AI agent that need exactly "
                f"these tools: {need} — no other tool.")
    else:
        task = (f"Write {n} different, realistic messages a user might send to an AI agent that need none of "
                "these tools (chit-chat, general knowledge, explanations, writing help).")
    return [
        ("system", "You write training data for a tool router. Reply with JSON only: "
                   '{"messages": ["...", "..."]}. /no_think'),
        ("human", f"The agent's tools:\n{_describe(tools)}\n\n{task} Vary length, tone and phrasing; "
                  "do not name the tools."),
    ]


_THINK = re.compile(r"<think>.*?</think>", re.S)


def parse_messages(text: str) -> list[str] | None:
    """The teacher's message list, or None if the answer is not the JSON asked for."""
    text = _THINK.sub("", text).strip()
    start, end = text.find("{"), text.rfind("}")
    if start < 0 or end <= start:
        return None
    try:
        data = json.loads(text[start : end + 1])
    except json.JSONDecodeError:
        return None
    messages = data.get("messages") if isinstance(data, dict) else None
    if not isinstance(messages, list):
        return None
    return [m.strip() for m in messages if isinstance(m, str)]


@dataclass
class SynthReport:
    added: int = 0
    requests: int = 0
    failed_requests: int = 0
    rejected_invalid: int = 0
    rejected_duplicate: int = 0


def targets_for(tools: Sequence[ToolSpec], rng: random.Random) -> list[tuple[str, ...]]:
    """Every single tool, every ordered pair (shuffled), and 'no tool', in a rotating order."""
    names = [t.name for t in tools]
    singles = [(n,) for n in names]
    pairs = list(itertools.permutations(names, 2))
    rng.shuffle(pairs)
    out: list[tuple[str, ...]] = []
    i = 0
    while len(out) <= 4 * len(names) + len(pairs):  # at least one round
        out.extend(singles)
        out.append(())
        out.extend(pairs[i * 3 : i * 3 + 3])
        i += 1
    return out


def synthesize(teacher: Any, tools: Sequence[Any], count: int, paths: Paths, *, per_request: int = 5,
               seed: int = 0, progress: bool = True, max_requests: int | None = None) -> SynthReport:
    """Ask the teacher until ``count`` new examples were appended (or requests run out)."""
    from tqdm.auto import tqdm

    specs = normalize_tools(tools)
    names = [t.name for t in specs]
    schemas = [t.openai_schema() for t in specs] if needs_schemas(specs) else None
    rng = random.Random(seed)
    known = NearDuplicateIndex()
    existing, _ = load_records(paths.synthetic_file)
    for rec in [*curated_train(), *curated_eval(), *existing]:
        known.add(rec.input.user_message)
    report = SynthReport()
    max_requests = max_requests or max(10, 4 * count // max(1, per_request))
    plan = itertools.cycle(targets_for(specs, rng))
    bar = tqdm(total=count, desc="generating", unit="ex", disable=not progress)
    while report.added < count and report.requests < max_requests:
        target = next(plan)
        report.requests += 1
        try:
            answer = teacher.invoke(build_request(specs, target, per_request))
        except Exception:
            report.failed_requests += 1
            continue
        messages = parse_messages(str(getattr(answer, "content", answer)))
        if messages is None:
            report.rejected_invalid += 1
            continue
        batch = []
        for message in messages:
            if not (MIN_CHARS <= len(message) <= MAX_CHARS) or any(n in message for n in names if "_" in n):
                report.rejected_invalid += 1
                continue
            if known.match(message):
                report.rejected_duplicate += 1
                continue
            known.add(message)
            batch.append(TrainingRecord.make(message, names, list(target), "synthetic", tool_schemas=schemas,
                                             teacher=getattr(teacher, "model_name", None)))
            if report.added + len(batch) >= count:
                break
        append_jsonl(paths.synthetic_file, batch)
        report.added += len(batch)
        bar.update(len(batch))
    bar.close()
    return report
