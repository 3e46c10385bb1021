"""Fitting how a run turns its verdicts into answers, on held-out data it was not trained on.

Three settings, each fitted on the same routed items (one model pass, then arithmetic):

- :class:`~openhoof_router.core.verdicts.VerdictRule` ``top_threshold`` / ``extra_threshold``:
  the pair with the best exact tool-set accuracy (ties: the lower thresholds, so the
  router leans towards offering a tool);
- the **no-tool threshold** (``tool_thresholds["none"]``): the lowest ``no_tool_score``
  at which the "no tool" answers kept reach ``no_tool_precision`` (default 0.97). A "no tool"
  below it falls back to all tools: a wrong "no tool" breaks the turn, an extra tool costs
  a few tokens;
- the **keep threshold** for ``narrow`` mode: the highest score such that binding every
  tool scoring at least that keeps every needed tool in ``keep_recall`` (0.97) of the
  turns; ``narrow`` binds those tools, not only the answer's.

Below :data:`MIN_ITEMS` items nothing is fitted: the defaults stand and the result says so.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from openhoof_router.core.engine import RouterEngine
from openhoof_router.core.verdicts import DEFAULT_MAX_TOOLS, VerdictRule
from openhoof_router.learning.evaluation.evaluate import EvalItem

GRID = (0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99)
MIN_ITEMS = 40
DEFAULT_NO_TOOL_THRESHOLD = 0.8
"""Used when too few "no tool" answers exist to fit one: "no tool" must be fairly sure."""
DEFAULT_KEEP_THRESHOLD = 0.05


@dataclass
class Scored:
    """One routed item: each offered tool's P(needed) (list order), the no-tool score, the truth."""

    scores: list[float]
    names: list[str]
    no_tool: float
    expected: frozenset[str]


@dataclass
class VerdictFit:
    rule: VerdictRule
    accuracy: float
    no_tool_threshold: float
    keep_threshold: float
    n: int
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"top_threshold": self.rule.top_threshold, "extra_threshold": self.rule.extra_threshold,
                "accuracy": round(self.accuracy, 4), "no_tool_threshold": self.no_tool_threshold,
                "keep_threshold": self.keep_threshold, "n": self.n, "notes": self.notes}


def score_items(engine: RouterEngine, items: Sequence[EvalItem]) -> list[Scored]:
    out = []
    for item in items:
        d = engine.route(item.message, item.tools, context=item.context)
        names = [t.name for t in item.tools]
        out.append(Scored([d.scores.get(n, 0.0) for n in names], names, d.no_tool_score, item.expected))
    return out


def answer(s: Scored, rule: VerdictRule) -> frozenset[str]:
    return frozenset(s.names[i] for i in rule.select(s.scores))


def fit_rule(scored: Sequence[Scored], max_tools: int = DEFAULT_MAX_TOOLS) -> tuple[VerdictRule, float]:
    best: tuple[float, VerdictRule] | None = None
    for top in GRID:
        for extra in (g for g in GRID if g >= top):
            rule = VerdictRule(top, extra, max_tools)
            acc = sum(answer(s, rule) == s.expected for s in scored) / len(scored)
            if best is None or acc > best[0] + 1e-9:
                best = (acc, rule)
    assert best is not None
    return best[1], best[0]


def fit_no_tool_threshold(scored: Sequence[Scored], rule: VerdictRule, precision: float) -> float | None:
    """Lowest no-tool score at which the kept "no tool" answers are right ``precision`` of the time."""
    nones = sorted(((s.no_tool, not s.expected) for s in scored if not answer(s, rule)), reverse=True)
    if len(nones) < 10:
        return None
    best, right = None, 0
    for k, (score, ok) in enumerate(nones, 1):
        right += ok
        if right / k >= precision:
            best = score
    return best


def fit_keep_threshold(scored: Sequence[Scored], recall: float) -> float:
    """Highest score whose "every tool at least this" set holds all needed tools in ``recall`` of turns."""
    needing = [s for s in scored if s.expected]
    if not needing:
        return DEFAULT_KEEP_THRESHOLD
    worst = sorted(min(p for n, p in zip(s.names, s.scores, strict=False) if n in s.expected) for s in needing)
    index = int((1 - recall) * len(worst))
    return max(0.0, min(worst[index], 0.5))


def fit_verdicts(engine: RouterEngine, items: Sequence[EvalItem], *, no_tool_precision: float = 0.97,
                 keep_recall: float = 0.97) -> VerdictFit:
    scored = score_items(engine, items)
    if len(scored) < MIN_ITEMS:
        return VerdictFit(VerdictRule(max_tools=engine.max_tools), 0.0, DEFAULT_NO_TOOL_THRESHOLD,
                          DEFAULT_KEEP_THRESHOLD, len(scored),
                          [f"only {len(scored)} items (< {MIN_ITEMS}): defaults kept"])
    rule, acc = fit_rule(scored, engine.max_tools)
    notes = []
    none_t = fit_no_tool_threshold(scored, rule, no_tool_precision)
    if none_t is None:
        notes.append("too few 'no tool' answers to fit their threshold: default kept")
        none_t = DEFAULT_NO_TOOL_THRESHOLD
    return VerdictFit(rule, acc, round(none_t, 4), round(fit_keep_threshold(scored, keep_recall), 4), len(scored),
                      notes)
