"""Evaluation: exact tool-set accuracy (overall and per class: none / one / two or more),
per-tool precision/recall/F1, no-tool false positives, latency, a confusion matrix, and
the per-message results that paired comparisons need, on any file of records.

Two record shapes are read:
  - the seed's training records (``input.user_message``, ``input.tools`` names,
    ``input.context``, ``output.tool_calls``);
  - routing records that carry their own tool list each, like the BFCL-derived files:
    ``{"messages": [{"role": "user", "content": ...}, ...], "tools": [OpenAI schemas],
    "expected_tools": [names]}``; earlier turns in ``messages`` become the context.
"""

from __future__ import annotations

import hashlib
import json
import random
import statistics
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from openhoof_router.core.engine import RouterEngine
from openhoof_router.core.records import NO_TOOL, PastTurn, RoutingDecision, TrainingRecord
from openhoof_router.core.tools import ToolSpec, normalize_tools
from openhoof_router.core.turns import latest_turn, openai_lines
from openhoof_router.learning.data import DataError
from openhoof_router.learning.data.groups import record_tools

MULTI = "(several)"
INVALID = "(invalid)"
CLASSES = ("none", "one", "two+")


@dataclass
class EvalItem:
    message: str
    tools: list[ToolSpec]
    expected: frozenset[str]
    context: list[PastTurn] = field(default_factory=list)
    id: str = ""

    @property
    def klass(self) -> str:
        return CLASSES[min(len(self.expected), 2)]


def to_item(data: dict, catalog: dict[str, ToolSpec] | None = None) -> EvalItem:
    if "input" in data:
        rec = TrainingRecord.model_validate(data)
        return EvalItem(rec.input.user_message, record_tools(rec, catalog), rec.tool_set, list(rec.input.context),
                        str(data.get("id", "")))
    messages: Any = data.get("messages") or data.get("question")  # a row as read from JSON
    if isinstance(messages, list) and messages and isinstance(messages[0], list):
        messages = [m for turn in messages for m in turn]  # BFCL keeps turns as a list of lists
    lines = openai_lines(messages)
    index, context = latest_turn(lines)
    expected = data.get("expected_tools", data.get("expected", []))
    return EvalItem(lines[index].text, normalize_tools(data["tools"]), frozenset(expected), context,
                    str(data.get("id", "")))


def load_eval_items(path: Path) -> tuple[list[EvalItem], int]:
    """Items of a JSONL (or JSON list) file; malformed entries are skipped and counted.

    Raises ``DataError`` when nothing in the file is usable (``FileNotFoundError`` if missing).
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
        rows = json.loads(text) if text.lstrip().startswith("[") else None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{path}: not a JSON or JSONL file of records ({exc})") from None
    if rows is None:
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
    if not items:
        raise DataError(f"{path}: no usable records ({skipped} malformed)")
    return items, skipped


def sample_items(items: Sequence[EvalItem], limit: int, seed: int = 0) -> list[EvalItem]:
    """``limit`` items drawn with ``seed`` across classes and tools (not the file's first ones).

    Each class (none / one / two+) gets its share of the items' class mix (at least one while
    the limit allows); within a class, items are taken in turn from each expected tool set,
    in a seeded order, so tool sets are covered before any repeats. The sample keeps the
    items' own order.
    """
    if limit >= len(items):
        return list(items)
    rng = random.Random(seed)
    by_class: dict[str, list[int]] = {}
    for i, item in enumerate(items):
        by_class.setdefault(item.klass, []).append(i)
    quota = _shares({k: len(v) for k, v in by_class.items()}, limit)
    chosen: list[int] = []
    for klass, members in by_class.items():
        strata: dict[frozenset[str], list[int]] = {}
        for i in members:
            strata.setdefault(items[i].expected, []).append(i)
        queues = [rng.sample(v, len(v)) for _, v in sorted(strata.items(), key=lambda kv: sorted(kv[0]))]
        rng.shuffle(queues)
        picked: list[int] = []
        while len(picked) < quota[klass]:
            picked += [q.pop() for q in queues if q][: quota[klass] - len(picked)]
        chosen += picked
    return [items[i] for i in sorted(chosen)]


def _shares(sizes: dict[str, int], limit: int) -> dict[str, int]:
    """``limit`` split in proportion to ``sizes`` (largest remainder), each at least 1 when possible."""
    total = sum(sizes.values())
    exact = {k: limit * n / total for k, n in sizes.items()}
    floor = 1 if limit >= len(sizes) else 0
    out = {k: min(n, max(floor, int(exact[k]))) for k, n in sizes.items()}
    while sum(out.values()) > limit:  # the minimum of one overshot: take from the most over-served
        k = max((k for k in out if out[k] > floor), key=lambda k: out[k] - exact[k])
        out[k] -= 1
    while sum(out.values()) < limit:
        k = max((k for k in out if out[k] < sizes[k]), key=lambda k: exact[k] - out[k])
        out[k] += 1
    return out


def items_digest(items: Sequence[EvalItem]) -> str:
    """Identifies an evaluation set (per-message results are only comparable on the same one)."""
    digest = hashlib.sha256()
    for item in items:
        digest.update(json.dumps([item.message, [t.name for t in item.tools], sorted(item.expected),
                                  [c.model_dump() for c in item.context]], ensure_ascii=False).encode())
    return digest.hexdigest()[:16]


def label(tools: frozenset[str]) -> str:
    if not tools:
        return NO_TOOL
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
    per_class: dict[str, dict[str, float]] = Field(default_factory=dict)
    """none / one / two+: {"n", "accuracy"}."""
    invalid: int
    no_tool_false_positive_rate: float | None
    """Share of no-tool messages where the router picked a tool."""
    latency_p50_ms: float
    latency_p95_ms: float
    per_tool: dict[str, ToolScore] = Field(default_factory=dict)
    confusion: dict[str, dict[str, int]] = Field(default_factory=dict)
    """expected label -> predicted label -> count (labels: a tool, none, or (several))."""
    correct: list[int] = Field(default_factory=list)
    """1/0 per message, in order: what paired comparisons (the promotion gate) use."""
    set_digest: str = ""
    errors: list[dict] = Field(default_factory=list)
    skipped: int = 0
    sampled_from: int | None = None
    """The number of records this was a seeded sample of (:func:`sample_items`); None: all of them."""
    error_kinds: dict[str, int] = Field(default_factory=dict)
    """Wrong answers by kind (:func:`error_kind`): each points to a different fix."""


ERROR_KINDS = ("said none", "missed a tool", "wrong tool", "tool for none", "invalid")


def error_kind(expected: frozenset[str], got: frozenset[str]) -> str | None:
    """What went wrong (None: nothing): "said none" when tools were needed, "missed a tool"
    when the answer is a strict part of the needed set, "tool for none" when none was
    needed, "wrong tool" for any other mismatch."""
    if got == expected:
        return None
    if INVALID in got:
        return "invalid"
    if not got:
        return "said none"
    if not expected:
        return "tool for none"
    return "missed a tool" if got < expected else "wrong tool"


def _percentile(values: Sequence[float], q: float) -> float:
    if not values:
        return 0.0
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


def predicted(decision: RoutingDecision) -> frozenset[str]:
    return frozenset(decision.tool_names) if decision.valid else frozenset({INVALID})


def score(items: Sequence[EvalItem], got: Sequence[frozenset[str]], latencies: Sequence[float] = (),
          skipped: int = 0) -> EvalReport:
    """Score predictions (one tool set per item) against the items."""
    tp, fp, fn, support = Counter[str](), Counter[str](), Counter[str](), Counter[str]()
    confusion: dict[str, Counter] = {}
    per_class: dict[str, list[int]] = {k: [] for k in CLASSES}
    correct: list[int] = []
    none_total = none_fp = 0
    errors: list[dict] = []
    for item, pred in zip(items, got, strict=True):
        ok = pred == item.expected
        correct.append(int(ok))
        per_class[item.klass].append(int(ok))
        if not ok and len(errors) < 200:
            errors.append({"message": item.message, "expected": sorted(item.expected), "got": sorted(pred)})
        if not item.expected:
            none_total += 1
            none_fp += bool(pred)
        for t in item.expected:
            support[t] += 1
            (tp if t in pred else fn)[t] += 1
        for t in pred - item.expected:
            fp[t] += 1
        confusion.setdefault(label(item.expected), Counter())[INVALID if INVALID in pred else label(pred)] += 1
    per_tool = {}
    for t in sorted(set(support) | set(fp)):
        p = tp[t] / (tp[t] + fp[t]) if tp[t] + fp[t] else 0.0
        r = tp[t] / (tp[t] + fn[t]) if tp[t] + fn[t] else 0.0
        per_tool[t] = ToolScore(precision=p, recall=r, f1=2 * p * r / (p + r) if p + r else 0.0, support=support[t])
    return EvalReport(
        n=len(items),
        accuracy=sum(correct) / len(items) if items else 0.0,
        per_class={k: {"n": len(v), "accuracy": sum(v) / len(v)} for k, v in per_class.items() if v},
        invalid=sum(INVALID in p for p in got),
        no_tool_false_positive_rate=(none_fp / none_total) if none_total else None,
        latency_p50_ms=_percentile(list(latencies), 50),
        latency_p95_ms=_percentile(list(latencies), 95),
        per_tool=per_tool,
        confusion={k: dict(v) for k, v in confusion.items()},
        correct=correct,
        set_digest=items_digest(items),
        errors=errors,
        skipped=skipped,
        error_kinds=dict(Counter(k for item, pred in zip(items, got, strict=True)
                                 if (k := error_kind(item.expected, pred)) is not None)),
    )


def route_all(engine: RouterEngine, items: Sequence[EvalItem], *, progress: bool = True,
              desc: str = "evaluating") -> list[RoutingDecision]:
    from tqdm.auto import tqdm

    from openhoof_router.learning.trainers.loop import show_progress

    return [engine.route(item.message, item.tools, context=item.context)
            for item in tqdm(items, desc=desc, unit="msg", disable=not show_progress(progress))]


def evaluate(engine: RouterEngine, items: Sequence[EvalItem], *, progress: bool = True, skipped: int = 0) -> EvalReport:
    """Route every item and score the decisions."""
    return score_decisions(items, route_all(engine, items, progress=progress), skipped)


def score_decisions(items: Sequence[EvalItem], decisions: Sequence[RoutingDecision], skipped: int = 0) -> EvalReport:
    """Score routed decisions (one per item, in order) against the items."""
    return score(items, [predicted(d) for d in decisions], [d.latency_ms for d in decisions], skipped)


def summary_row(report: EvalReport) -> dict[str, Any]:
    """The report without the long parts (for manifests and tables)."""
    return report.model_dump(exclude={"errors", "confusion", "correct"})
