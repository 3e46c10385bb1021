"""Fitting the serving thresholds of a run on held-out data (``hoof-train calibrate``).

Two things are fitted, both written into the run's manifest (``decoding``) and used by
every router that serves the run:

- how decisions become answers (:func:`fit_verdict_rule`), the **verdict rule**
  (:class:`~openhoof_router.core.verdicts.VerdictRule`): the best tool is named when its
  P(needed) reaches ``top_threshold``, every other one reaching ``extra_threshold`` beside
  it. One routing pass records every tool's P(needed); the best exact-set accuracy on the
  grid wins (ties: the lower thresholds, so the router leans towards offering a tool).
- **per-tool thresholds** on the decision scores: for each tool (and ``none``), the
  lowest score at which the decisions naming it are right at least ``target`` of the
  time on the held-out split plus the confirmed and corrected decisions of the outcome
  log. Below it the router falls back to all tools. :func:`tradeoff` tabulates what a
  threshold costs (fallback rate) and buys (accuracy of the decisions kept). A tool named
  by fewer than :data:`MIN_SUPPORT` decisions gets no threshold of its own (a handful of
  records would fit anything up to 0.99): it keeps the default, and the fit says which.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from openhoof_router.core.engine import RouterEngine
from openhoof_router.core.records import NO_TOOL, RoutingDecision
from openhoof_router.core.verdicts import VerdictRule
from openhoof_router.learning.evaluation.evaluate import INVALID, EvalItem, predicted, route_all

SCORE_GRID = (0.0, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.98, 0.99)


RULE_GRID = (0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99)


def rule_answer(decision: RoutingDecision, rule: VerdictRule) -> frozenset[str]:
    """The tools a decision names under ``rule`` (its scores are every tool's P(needed), in list order)."""
    if not decision.valid:
        return frozenset({INVALID})
    names = list(decision.scores)
    return frozenset(names[i] for i in rule.select(list(decision.scores.values())))


@dataclass
class RuleFit:
    """The verdict rule fitted on routed items."""

    rule: VerdictRule
    accuracy: float
    default_accuracy: float
    """Accuracy under the default rule, for comparison."""
    decisions: list[RoutingDecision] = field(default_factory=list)

    @property
    def answers(self) -> list[frozenset[str]]:
        return [rule_answer(d, self.rule) for d in self.decisions]

    @property
    def decoding(self) -> dict[str, float]:
        return {"top_threshold": self.rule.top_threshold, "extra_threshold": self.rule.extra_threshold}

    def headline(self) -> str:
        return (f"verdict rule: top {self.rule.top_threshold}, others {self.rule.extra_threshold} "
                f"({self.accuracy:.1%} on {len(self.decisions)} messages; default rule: {self.default_accuracy:.1%})")


def fit_verdict_rule(engine: RouterEngine, items: Sequence[EvalItem], *, progress: bool = True,
                     decisions: Sequence[RoutingDecision] | None = None) -> RuleFit:
    decisions = list(decisions) if decisions is not None else route_all(engine, items, progress=progress,
                                                                         desc="calibrating")
    max_tools = engine.max_tools

    def accuracy(rule: VerdictRule) -> float:
        return sum(rule_answer(d, rule) == it.expected for d, it in zip(decisions, items, strict=True)) / max(
            1, len(items))

    rule, acc = best_rule(accuracy, max_tools)
    return RuleFit(rule, acc, accuracy(VerdictRule(max_tools=max_tools)), decisions)


def best_rule(score: Callable[[VerdictRule], float], max_tools: int) -> tuple[VerdictRule, float]:
    """The rule on :data:`RULE_GRID` (extra ≥ top) that ``score`` rates highest, and its score;
    ties go to the first in grid order, the lower thresholds."""
    best: tuple[VerdictRule, float] | None = None
    for top in RULE_GRID:
        for extra in (g for g in RULE_GRID if g >= top):
            rule = VerdictRule(top, extra, max_tools)
            value = score(rule)
            if best is None or value > best[1] + 1e-9:
                best = (rule, value)
    assert best is not None
    return best


# -- per-tool score thresholds ---------------------------------------------------------------

@dataclass
class Scored:
    """One decision to fit on: what the router said, how sure it was, and the right answer."""

    got: frozenset[str]
    scores: dict[str, float]
    no_tool_score: float
    expected: frozenset[str]

    @classmethod
    def of(cls, decision: RoutingDecision, expected: frozenset[str], got: frozenset[str] | None = None) -> Scored:
        return cls(got if got is not None else predicted(decision), decision.scores, decision.no_tool_score, expected)

    def bar(self, name: str) -> float:
        return self.no_tool_score if name == NO_TOOL else self.scores.get(name, 0.0)

    @property
    def names(self) -> list[str]:
        return sorted(self.got) or [NO_TOOL]

    @property
    def right(self) -> bool:
        return self.got == self.expected


def kept(item: Scored, thresholds: dict[str, float], default: float) -> bool:
    if INVALID in item.got:
        return False
    return all(item.bar(n) >= thresholds.get(n, default) for n in item.names)


def lowest_threshold(items: Sequence[Scored], name: str | None, target: float, min_support: int) -> float | None:
    """The lowest grid score at which the decisions naming ``name`` (None: every decision,
    judged on all its names) are right at least ``target`` of the time; None: too few; the
    grid's top when no score reaches the target (:func:`out_of_reach` names those)."""
    found = _search(items, name, target, min_support)
    return None if found is None else found[0]


def _search(items: Sequence[Scored], name: str | None, target: float,
            min_support: int) -> tuple[float, bool] | None:
    """(threshold, whether it reaches ``target`` keeping ``min_support`` decisions); None: too few."""
    mine = [it for it in items if INVALID not in it.got and (name is None or name in it.names)]
    if len(mine) < min_support:
        return None

    def bar(it: Scored) -> float:
        return it.bar(name) if name is not None else min(it.bar(n) for n in it.names)

    for threshold in SCORE_GRID:
        keep = [it for it in mine if bar(it) >= threshold]
        if len(keep) >= min_support and sum(it.right for it in keep) / len(keep) >= target:
            return threshold, True
    return SCORE_GRID[-1], False


DEFAULT_NAME = "(default)"


def out_of_reach(items: Sequence[Scored], target: float, min_support: int) -> list[str]:
    """Tools (and ``(default)``, over every decision) with enough decisions whose ``target`` no
    score reaches: their threshold is the grid's top, so (nearly) all their turns fall back."""
    out = []
    for name in [None, *sorted(support(items))]:
        found = _search(items, name, target, min_support)
        if found is not None and not found[1]:
            out.append(name or DEFAULT_NAME)
    return out


MIN_SUPPORT = 20
"""Fewest decisions naming a tool (``none`` included; all decisions, for the default) that
its threshold is fitted on."""


def support(items: Sequence[Scored]) -> dict[str, int]:
    """How many valid decisions name each tool (or ``none``): what each threshold would be fitted on."""
    return dict(Counter(n for it in items if INVALID not in it.got for n in it.names))


def fit_tool_thresholds(items: Sequence[Scored], *, target: float = 0.9,
                        min_support: int = MIN_SUPPORT) -> tuple[float | None, dict[str, float]]:
    """(default threshold, per-tool thresholds) fitted to ``target``; tools seen fewer than
    ``min_support`` times get no threshold of their own (the default applies), and with
    fewer decisions than that in all the default is not fitted either (None)."""
    names = sorted({n for it in items for n in it.names if INVALID not in it.got})
    fitted = {}
    for name in names:
        value = lowest_threshold(items, name, target, min_support)
        if value is not None:
            fitted[name] = value
    return lowest_threshold(items, None, target, min_support), fitted


def tradeoff(items: Sequence[Scored], thresholds: dict[str, float], default: float,
             scales: Sequence[float] = (0.0, 0.5, 1.0, 1.5, 2.0)) -> list[dict[str, float]]:
    """Fallback rate and accuracy of the kept decisions as every threshold is scaled."""
    rows = []
    for scale in scales:
        scaled = {k: min(1.0, v * scale) for k, v in thresholds.items()}
        keep = [it for it in items if kept(it, scaled, min(1.0, default * scale))]
        rows.append({"scale": scale, "fallback_rate": 1 - len(keep) / max(1, len(items)),
                     "kept_accuracy": sum(it.right for it in keep) / max(1, len(keep)),
                     "overall_accuracy": sum(it.right for it in items) / max(1, len(items))})
    return rows
