"""Evaluation: exact tool-set accuracy, per-tool precision/recall/F1, no-tool false positives,
latency, and a confusion matrix, on any file of records.

Two record shapes are read:
  - the seed's training records (``input.user_message``, ``input.tools`` names, ``output.tool_calls``);
  - routing records that carry their own tool list each, like the BFCL-derived files:
    ``{"messages": [{"role": "user", "content": ...}, ...], "tools": [OpenAI schemas], "expected_tools": [names]}``.
"""

from __future__ import annotations

import json
import statistics
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from pydantic import BaseModel, Field

from ..engine import RouterEngine
from ..records import TrainingRecord
from ..tools import ToolSpec, normalize_tools
from .dataset import record_tools

MULTI = "(several)"
NONE = "none"


@dataclass
class EvalItem:
    message: str
    tools: list[ToolSpec]
    expected: frozenset[str]


def _latest_user(messages: Sequence[Any]) -> str:
    for msg in reversed(messages):
        if isinstance(msg, dict) and msg.get("role") in ("user", "human"):
            content = msg.get("content", "")
            if isinstance(content, list):
                content = " ".join(p.get("text", "") for p in content if isinstance(p, dict))
            return str(content)
    raise ValueError("no user message")


def to_item(data: dict, catalog: dict[str, ToolSpec] | None = None) -> EvalItem:
    if "input" in data:
        rec = TrainingRecord.model_validate(data)
        return EvalItem(rec.input.user_message, record_tools(rec, catalog), rec.tool_set)
    messages = data.get("messages") or data.get("question")
    if isinstance(messages, list) and messages and isinstance(messages[0], list):
        messages = messages[-1]  # BFCL keeps turns as a list of lists
    message = _latest_user(messages) if isinstance(messages, list) else str(data.get("message", ""))
    expected = data.get("expected_tools", data.get("expected", []))
    return EvalItem(message, normalize_tools(data["tools"]), frozenset(expected))


def load_eval_items(path: Path) -> tuple[list[EvalItem], int]:
    """Items of a JSONL (or JSON list) file; malformed entries are skipped and counted."""
    text = Path(path).read_text(encoding="utf-8")
    if text.lstrip().startswith("["):
        rows = json.loads(text)
    else:
        rows = []
        for line in text.splitlines():
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError:
                    rows.append(None)
    items, skipped = [], 0
    for row in rows:
        try:
            items.append(to_item(row))
        except Exception:
            skipped += 1
    return items, skipped


def label(tools: frozenset[str]) -> str:
    if not tools:
        return NONE
    return next(iter(tools)) if len(tools) == 1 else MULTI


class ToolScore(BaseModel):
    precision: float
    recall: float
    f1: float
    support: int


class EvalReport(BaseModel):
    n: int
    accuracy: float
    """Exact tool-set match."""
    invalid: int
    no_tool_false_positive_rate: float | None
    """Share of no-tool messages where the router picked a tool."""
    latency_p50_ms: float
    latency_p95_ms: float
    per_tool: dict[str, ToolScore] = Field(default_factory=dict)
    confusion: dict[str, dict[str, int]] = Field(default_factory=dict)
    """expected label -> predicted label -> count (labels: a tool, none, or (several))."""
    errors: list[dict] = Field(default_factory=list)
    skipped: int = 0


def _percentile(values: Sequence[float], q: float) -> float:
    if not values:
        return 0.0
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


def evaluate(engine: RouterEngine, items: Sequence[EvalItem], *, progress: bool = True, skipped: int = 0) -> EvalReport:
    """Route every item and score the decisions."""
    from tqdm.auto import tqdm

    tp, fp, fn, support = Counter(), Counter(), Counter(), Counter()
    confusion: dict[str, Counter] = {}
    latencies: list[float] = []
    correct = invalid = none_total = none_fp = 0
    errors = []
    for item in tqdm(items, desc="evaluating", unit="msg", disable=not progress):
        decision = engine.route(item.message, item.tools)
        got = frozenset(decision.tool_names) if decision.valid else frozenset({"(invalid)"})
        latencies.append(decision.latency_ms)
        invalid += not decision.valid
        if got == item.expected:
            correct += 1
        elif len(errors) < 200:
            errors.append({"message": item.message, "expected": sorted(item.expected), "got": sorted(got)})
        if not item.expected:
            none_total += 1
            none_fp += bool(got)
        for t in item.expected:
            support[t] += 1
            (tp if t in got else fn)[t] += 1
        for t in got - item.expected:
            fp[t] += 1
        confusion.setdefault(label(item.expected), Counter())[label(got) if decision.valid else "(invalid)"] += 1
    per_tool = {}
    for t in sorted(set(support) | set(fp)):
        p = tp[t] / (tp[t] + fp[t]) if tp[t] + fp[t] else 0.0
        r = tp[t] / (tp[t] + fn[t]) if tp[t] + fn[t] else 0.0
        per_tool[t] = ToolScore(precision=p, recall=r, f1=2 * p * r / (p + r) if p + r else 0.0, support=support[t])
    return EvalReport(
        n=len(items),
        accuracy=correct / len(items) if items else 0.0,
        invalid=invalid,
        no_tool_false_positive_rate=(none_fp / none_total) if none_total else None,
        latency_p50_ms=_percentile(latencies, 50),
        latency_p95_ms=_percentile(latencies, 95),
        per_tool=per_tool,
        confusion={k: dict(v) for k, v in confusion.items()},
        errors=errors,
        skipped=skipped,
    )
