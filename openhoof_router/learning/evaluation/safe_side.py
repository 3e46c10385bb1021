"""The safe side of ``narrow`` mode: what the reasoner gets when the router may be wrong.

A wrong "no tool" breaks the turn (the reasoner has no tool to call); a wrong extra tool
costs a few prompt tokens. Two settings lean the served decision that way, both fitted on
held-out decisions (one routing pass, then arithmetic) and written into the run's
``decoding``:

- the **no-tool threshold** (``tool_thresholds["none"]``): the lowest no-tool score at which
  the "no tool" answers kept are right ``precision`` (0.97) of the time. A "no tool" below
  it falls back to every tool. Where no score reaches the precision on at least
  :data:`MIN_NONE` answers, "no tool" is never followed (threshold above 1) and the fit
  says so; with fewer "no tool" answers than that nothing is fitted (the router's default
  applies). A general run is never trusted with "no tool" (:data:`NEVER`): its calibration
  requests are the corpus's, and its "no tool" on a user's own, unseen tools is not what
  they measured (a plain "is it raining in London?" over a ``get_weather`` tool with no
  description got "no tool" at 0.999); a user run fits its own on the user's messages;
- a "no tool" or an unsure answer that falls back on a list of :data:`MANY` or more tools
  binds the best-scored half of them (``fallback_share``), not all of them: see
  :class:`~openhoof_router.serving.policy.ThresholdPolicy`;
- the **keep threshold** (``keep_threshold``): ``narrow`` mode and the middleware bind the
  answer's tools *and* every other tool scoring at least this. It is the highest value at
  which the tools sent hold every needed tool in ``recall`` (0.97) of the turns that need
  one; fitted on at least :data:`MIN_NEEDING` such turns, else not at all;
- a user run fits both on its calibration turns, mostly the user's own tools (the keep
  threshold to :data:`OWN_RECALL`, 0.99: those turns come from the data it trained on); a
  turn that offers other tools (``known_tools``) is not what they measured. Training on the user's
  tools makes the model surer of "no tool" on tools it does not know (BFCL turn recall in
  ``narrow`` fell from 99.2 % with the shipped adapter to 92.0 % after ``hoof-train run``,
  benchmarks/README), so such turns never follow "no tool", and keep at the
  ``unseen_keep_threshold`` fitted by :func:`fit_unseen_side` on the turns that offer
  other tools: the general corpus's calibration turns and the general sample the run is
  gated on (80 + 190; on the 80 alone the fit moved from 0.5 to 0.003 between seeds).

:func:`narrow_figures` gives what the reasoner then gets: the **turn recall** (turns whose
needed tools all reach it, no-tool turns counted as reached) and the mean share of the
offered tools cut, on lists of :data:`MANY` or more. The fit leaves out fallbacks on tool
thresholds (they only add tools: the fitted values err to the safe side);
:func:`served_sent` applies a router's whole policy, for benchmarks.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from openhoof_router.core.records import NO_TOOL, RoutingDecision
from openhoof_router.learning.evaluation.calibrate import RuleFit, Scored
from openhoof_router.learning.evaluation.evaluate import INVALID, EvalItem
from openhoof_router.serving.policy import MANY_TOOLS, NEVER, ThresholdPolicy, fallback_tools
from openhoof_router.serving.settings import DEFAULT_FALLBACK_SHARE, DEFAULT_NO_TOOL_THRESHOLD

NONE_GRID = (0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95, 0.97, 0.98, 0.99, 0.995, 0.999)
KEEP_GRID = (0.5, 0.3, 0.2, 0.1, 0.05, 0.03, 0.02, 0.01, 0.005, 0.003, 0.002, 0.001, 0.0)
MIN_NONE = 10
"""Fewest "no tool" answers kept at a threshold for it to count as reaching the precision."""
MIN_NEEDING = 20
"""Fewest turns needing a tool that the keep threshold is fitted on."""
MANY = MANY_TOOLS
"""Lists of at least this many tools are where cutting tools pays: the share cut is measured there."""
PRECISION = 0.97
RECALL = 0.97
OWN_RECALL = 0.99
"""The recall a user run's keep threshold is fitted to on its own calibration turns: its
validation split is drawn from the data it trained on, so the recall there overstates the
recall on new messages (at 0.97, on that split and 80 general messages, two of three seeds
fitted 0.3, and held-out follow-ups then lost a needed tool in up to 7.5 % of turns; on the
split alone it went to 0.5 on all three)."""


@dataclass
class SafeSide:
    no_tool_threshold: float | None
    """None: not fitted (too few "no tool" answers; the router's default applies)."""
    keep_threshold: float | None
    """None: not fitted (too few turns needing a tool; narrow binds the answer's tools only)."""
    n: int
    turn_recall: float
    cut_share: float | None
    """Mean share of offered tools not sent, on lists of :data:`MANY` or more (None: no such list)."""
    notes: list[str] = field(default_factory=list)
    target_recall: float = RECALL
    """The turn recall the keep threshold was fitted to reach."""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def decoding(self) -> dict[str, Any]:
        """The :class:`~openhoof_router.store.runs.Decoding` fields this fit sets."""
        fitted = {} if self.no_tool_threshold is None else {NO_TOOL: self.no_tool_threshold}
        return {"keep_threshold": self.keep_threshold, "tool_thresholds": fitted}

    def headline(self) -> str:
        cut = "" if self.cut_share is None else f", cutting {self.cut_share:.0%} of the tools on lists of {MANY}+"
        none = "not fitted" if self.no_tool_threshold is None else self.no_tool_threshold
        keep = "not fitted" if self.keep_threshold is None else self.keep_threshold
        return (f"narrow mode: no-tool threshold {none}, keep threshold {keep} (fitted to {self.target_recall:.0%} "
                f"turn recall: {self.turn_recall:.1%}"
                f"{cut})" + "".join(f"; {note}" for note in self.notes))


def sent(item: Scored, no_tool_threshold: float, keep: float,
         fallback_share: float = DEFAULT_FALLBACK_SHARE) -> frozenset[str] | None:
    """The tools the reasoner gets for ``item`` (None: every offered tool, a fallback); a
    "no tool" that falls back on a long list keeps its best-scored ``fallback_share``
    (:func:`~openhoof_router.serving.policy.fallback_tools`)."""
    if INVALID in item.got:
        return None
    if not item.got:
        if item.no_tool_score >= no_tool_threshold:
            return frozenset()
        return frozenset(fallback_tools(item.scores, fallback_share)) or None
    return item.got | {name for name, score in item.scores.items() if score >= keep}


def served_sent(decision: RoutingDecision, policy: ThresholdPolicy) -> frozenset[str] | None:
    """The tools ``narrow`` mode binds for ``decision`` under ``policy`` (None: every tool)."""
    judged = decision.model_copy(update={"fallback": False, "fallback_reason": None, "fallback_tools": [],
                                         "extra_tools": []})
    policy.judge(judged)
    if judged.fallback:
        return frozenset(judged.fallback_tools) or None
    return frozenset(judged.narrow_tools)


def reached(item: Scored, no_tool_threshold: float, keep: float) -> bool:
    tools = sent(item, no_tool_threshold, keep)
    return tools is None or item.expected <= tools


Outcome = tuple[frozenset[str] | None, frozenset[str], int]
"""What one turn's reasoner got (None: every tool), the tools it needed, how many were offered."""


def narrow_figures(outcomes: Sequence[Outcome]) -> tuple[float, float | None]:
    """(turn recall, mean share cut on lists of :data:`MANY` or more tools)."""
    recall = sum(got is None or needed <= got for got, needed, _ in outcomes) / max(1, len(outcomes))
    cuts = [0.0 if got is None else 1 - len(got) / n for got, _, n in outcomes if n >= MANY]
    return recall, (statistics.mean(cuts) if cuts else None)


def narrow_report(items: Sequence[Scored], no_tool_threshold: float, keep: float) -> tuple[float, float | None]:
    """:func:`narrow_figures` of fitted items at these thresholds."""
    return narrow_figures([(sent(it, no_tool_threshold, keep), it.expected, len(it.scores)) for it in items])


def fit_no_tool_threshold(items: Sequence[Scored], precision: float = PRECISION) -> float | None:
    """The lowest grid score whose kept "no tool" answers are right ``precision`` of the time;
    :data:`NEVER` when none is; None with fewer than :data:`MIN_NONE` "no tool" answers."""
    nones = [it for it in items if not it.got]
    if len(nones) < MIN_NONE:
        return None
    for threshold in NONE_GRID:
        kept = [it for it in nones if it.no_tool_score >= threshold]
        if len(kept) >= MIN_NONE and sum(not it.expected for it in kept) / len(kept) >= precision:
            return threshold
    return NEVER


def fit_keep_threshold(items: Sequence[Scored], no_tool_threshold: float, recall: float = RECALL) -> float | None:
    """The highest grid score at which the tools sent hold every needed tool in ``recall`` of
    the turns that need one (0 when none does: every scored tool is sent); None with fewer
    than :data:`MIN_NEEDING` such turns."""
    needing = [it for it in items if it.expected]
    if len(needing) < MIN_NEEDING:
        return None
    for keep in KEEP_GRID:
        if sum(reached(it, no_tool_threshold, keep) for it in needing) >= recall * len(needing):
            return keep
    return 0.0


def fit_safe_side(items: Sequence[Scored], *, precision: float = PRECISION, recall: float = RECALL,
                  default_no_tool: float = DEFAULT_NO_TOOL_THRESHOLD, trust_no_tool: bool = True) -> SafeSide:
    """Both thresholds fitted on ``items`` (see the module docs); ``default_no_tool`` stands
    when too few "no tool" answers exist to fit one; ``trust_no_tool=False`` (general runs)
    never follows "no tool" and fits the keep threshold under that."""
    notes = []
    no_tool = fit_no_tool_threshold(items, precision) if trust_no_tool else NEVER
    if not trust_no_tool:
        notes.append("a general run: 'no tool' always falls back to every tool until a user run fits it "
                     "on your own tools")
    elif no_tool is None:
        notes.append(f"fewer than {MIN_NONE} 'no tool' answers: not fitted, the default {default_no_tool} applies")
    elif no_tool == NEVER:
        notes.append(f"no no-tool score reaches {precision:.0%} precision: 'no tool' always falls back to "
                     "every tool")
    effective = default_no_tool if no_tool is None else no_tool
    keep = fit_keep_threshold(items, effective, recall)
    if keep is None:
        notes.append(f"fewer than {MIN_NEEDING} turns needing a tool: keep threshold not fitted")
    turn_recall, cut = narrow_report(items, effective, NEVER if keep is None else keep)
    return SafeSide(no_tool, keep, len(items), round(turn_recall, 4), None if cut is None else round(cut, 4),
                    notes, recall)


def scored_of(fit: RuleFit, items: Sequence[EvalItem]) -> list[Scored]:
    """A verdict rule fit's decisions, with the answers it fitted, to fit the safe side on."""
    return [Scored.of(d, item.expected, g) for d, item, g in zip(fit.decisions, items, fit.answers, strict=True)]


def fit_unseen_side(items: Sequence[Scored], known: frozenset[str]) -> SafeSide:
    """The safe side of turns offering a tool outside ``known`` (a user run's own tools),
    fitted on the items that do: "no tool" never followed, and the keep threshold under
    that (not fitted with fewer than :data:`MIN_NEEDING` such turns needing a tool)."""
    unseen = [it for it in items if not known.issuperset(it.scores)]
    side = fit_safe_side(unseen, trust_no_tool=False)
    side.notes = [f"turns offering tools outside the user's {len(known)}: 'no tool' always falls back"
                  + ("" if side.keep_threshold is not None else
                     f"; fewer than {MIN_NEEDING} such calibration turns need a tool: keep not fitted")]
    return side
