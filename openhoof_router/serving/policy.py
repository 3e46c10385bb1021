"""ThresholdPolicy: when a router follows a decision, and what it binds when it falls back."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from openhoof_router.core.records import NO_TOOL, RoutingDecision
from openhoof_router.serving.settings import DEFAULT_FALLBACK_SHARE, DEFAULT_NO_TOOL_THRESHOLD, DEFAULT_THRESHOLD
from openhoof_router.store.runs import Decoding

MANY_TOOLS = 5
"""Lists of at least this many tools are where a fallback cuts (and where cutting pays)."""
NEVER = 1.01
"""A no-tool threshold no score reaches: "no tool" always falls back."""


@dataclass
class ThresholdPolicy:
    """When to follow a decision, and what ``narrow`` mode binds for it.

    A decision is followed when every tool it names, or its "no tool", scores at least its
    threshold (``per_tool``, else ``default``); otherwise it is a fallback. A followed
    decision's ``extra_tools`` are the other tools scoring at least ``keep`` (None: none),
    which ``narrow`` mode binds too.

    A fallback binds every tool, except on a list of :data:`MANY_TOOLS` or more, where its
    ``fallback_tools`` are the best-scored ``fallback_share`` of them (rounded up; 1: every
    tool). An unsure router still ranks tools well: it names the wrong tool rarely, and says
    "none" or too few where it errs; so the better half of a long list keeps the needed tools
    in nearly every turn (turn recall 99.2 % at 51 % of tools cut on BFCL's unseen tools with
    the shipped adapter, against 99.5 % at 35 % with every tool; benchmarks/README). An
    invalid decision has no scores to rank by and binds every tool.

    With ``known`` set (a user run's own tools), a turn offering any other tool is one the
    fitted thresholds were not measured on: its "no tool" is never followed (unless
    ``trust_unseen_none``: the caller set the no-tool threshold) and its extra tools are
    those scoring at least ``unseen_keep``. A user run makes the model surer of "no tool" on
    tools it does not know; this keeps the reasoner's tools on lists the user adds later.
    """

    default: float = DEFAULT_THRESHOLD
    per_tool: dict[str, float] = field(default_factory=dict)
    keep: float | None = None
    fallback_share: float = DEFAULT_FALLBACK_SHARE
    known: frozenset[str] | None = None
    """Tools the thresholds were fitted on (None: every tool)."""
    unseen_keep: float | None = None
    trust_unseen_none: bool = False

    def __post_init__(self) -> None:
        if (self.default < 0 or any(v < 0 for v in self.per_tool.values()) or (self.keep or 0) < 0
                or (self.unseen_keep or 0) < 0):
            raise ValueError("thresholds must be >= 0")
        if not 0 < self.fallback_share <= 1:
            raise ValueError("fallback_share must be in (0, 1]")

    @classmethod
    def served(cls, decoding: Decoding, threshold: float | None = None,
               tool_thresholds: Mapping[str, float] | None = None,
               keep_threshold: float | None = None, fallback_share: float | None = None) -> ThresholdPolicy:
        """A run's fitted thresholds (``decoding``) under the ones a caller set explicitly:
        ``threshold`` replaces the fitted default, ``tool_thresholds`` override per tool,
        ``keep_threshold`` the fitted keep threshold; ``fallback_share`` (None: the default)
        what a fallback keeps of a long list. The safe side (see
        :mod:`~openhoof_router.learning.evaluation.safe_side`): with neither a fitted nor a
        given no-tool threshold, "no tool" needs :data:`DEFAULT_NO_TOOL_THRESHOLD`, unless the
        caller set ``threshold`` for every answer."""
        default = threshold if threshold is not None else decoding.threshold
        default = DEFAULT_THRESHOLD if default is None else float(default)
        per_tool = {**decoding.tool_thresholds, **{k: float(v) for k, v in (tool_thresholds or {}).items()}}
        if NO_TOOL not in per_tool and threshold is None:
            per_tool[NO_TOOL] = max(default, DEFAULT_NO_TOOL_THRESHOLD)
        keep = keep_threshold if keep_threshold is not None else decoding.keep_threshold
        unseen_keep = keep_threshold if keep_threshold is not None else decoding.unseen_keep_threshold
        known = frozenset(decoding.known_tools) or None
        return cls(default, per_tool, keep, DEFAULT_FALLBACK_SHARE if fallback_share is None else fallback_share,
                   known=known, unseen_keep=unseen_keep if known else None,
                   trust_unseen_none=bool(known) and (threshold is not None or NO_TOOL in (tool_thresholds or {})))

    def unseen(self, decision: RoutingDecision) -> bool:
        """Whether ``decision``'s turn offered a tool outside :attr:`known` (its scored tools)."""
        return self.known is not None and not self.known.issuperset(decision.scores)

    def never_none(self, name: str, unseen: bool) -> bool:
        """Whether ``name`` is a "no tool" answer that is never followed: on an ``unseen`` turn,
        unless the caller set the no-tool threshold."""
        return name == NO_TOOL and unseen and not self.trust_unseen_none

    def bar(self, name: str, unseen: bool = False) -> float:
        """The threshold ``name`` (or :data:`NO_TOOL`) must reach; ``unseen``: on a turn offering an unknown tool."""
        return NEVER if self.never_none(name, unseen) else self.per_tool.get(name, self.default)

    def required(self, names: Sequence[str], unseen: bool = False) -> float:
        """The highest threshold among ``names`` (``[]``: the no-tool threshold)."""
        return max(self.bar(n, unseen) for n in (names or [NO_TOOL]))

    def judge(self, decision: RoutingDecision) -> float:
        """Mark ``decision`` as a fallback when it should not be followed; returns the bar it had."""
        unseen = self.unseen(decision)
        if not decision.valid:
            decision.fallback, decision.fallback_reason = True, "invalid"
            return self.required(decision.tool_names, unseen)
        pairs = ([(n, decision.scores.get(n, 0.0)) for n in decision.tool_names]
                 or [(NO_TOOL, decision.no_tool_score)])
        for name, score in pairs:
            if score < self.bar(name, unseen):
                decision.fallback = True
                decision.fallback_reason = ("unseen_tools" if self.never_none(name, unseen)
                                            else f"tool_threshold:{name}" if name in self.per_tool
                                            else "low_confidence")
                break
        keep = self.unseen_keep if unseen else self.keep
        if decision.fallback:
            decision.fallback_tools = self.fallback_tools(decision)
        elif decision.tool_calls and keep is not None:
            named = set(decision.tool_names)
            decision.extra_tools = [n for n, s in sorted(decision.scores.items(), key=lambda kv: -kv[1])
                                    if s >= keep and n not in named]
        return self.required(decision.tool_names, unseen)

    def fallback_tools(self, decision: RoutingDecision) -> list[str]:
        """What a fallback on ``decision`` binds (see the class docs; []: every tool)."""
        return fallback_tools(decision.scores, self.fallback_share) if decision.valid else []


def fallback_tools(scores: Mapping[str, float], share: float = DEFAULT_FALLBACK_SHARE) -> list[str]:
    """The best-scored ``share`` of a list of :data:`MANY_TOOLS` or more scored tools, best
    first and rounded up; [] (every tool) on a shorter list or at share 1."""
    if len(scores) < MANY_TOOLS or share >= 1:
        return []
    ranked = sorted(scores, key=lambda name: -scores[name])
    return ranked[:max(1, math.ceil(share * len(scores)))]
