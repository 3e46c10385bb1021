"""ThresholdPolicy: when a router follows a decision, and when it falls back to all tools."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from openhoof_router.core.records import NO_TOOL, RoutingDecision
from openhoof_router.serving.settings import DEFAULT_NO_TOOL_THRESHOLD, DEFAULT_THRESHOLD
from openhoof_router.store.runs import Decoding


@dataclass
class ThresholdPolicy:
    """When to follow a decision, and what ``narrow`` mode binds for it.

    A decision is followed when every tool it names, or its "no tool", scores at least its
    threshold (``per_tool``, else ``default``); otherwise it is a fallback to every tool. A
    followed decision's ``extra_tools`` are the other tools scoring at least ``keep``
    (None: none), which ``narrow`` mode binds too.
    """

    default: float = DEFAULT_THRESHOLD
    per_tool: dict[str, float] = field(default_factory=dict)
    keep: float | None = None

    def __post_init__(self) -> None:
        if self.default < 0 or any(v < 0 for v in self.per_tool.values()) or (self.keep or 0) < 0:
            raise ValueError("thresholds must be >= 0")

    @classmethod
    def served(cls, decoding: Decoding, threshold: float | None = None,
               tool_thresholds: Mapping[str, float] | None = None,
               keep_threshold: float | None = None) -> ThresholdPolicy:
        """A run's fitted thresholds (``decoding``) under the ones a caller set explicitly:
        ``threshold`` replaces the fitted default, ``tool_thresholds`` override per tool,
        ``keep_threshold`` the fitted keep threshold. The safe side (see
        :mod:`~openhoof_router.learning.evaluation.safe_side`): with neither a fitted nor a
        given no-tool threshold, "no tool" needs :data:`DEFAULT_NO_TOOL_THRESHOLD`, unless the
        caller set ``threshold`` for every answer."""
        default = threshold if threshold is not None else decoding.threshold
        default = DEFAULT_THRESHOLD if default is None else float(default)
        per_tool = {**decoding.tool_thresholds, **{k: float(v) for k, v in (tool_thresholds or {}).items()}}
        if NO_TOOL not in per_tool and threshold is None:
            per_tool[NO_TOOL] = max(default, DEFAULT_NO_TOOL_THRESHOLD)
        keep = keep_threshold if keep_threshold is not None else decoding.keep_threshold
        return cls(default, per_tool, keep)

    def required(self, names: Sequence[str]) -> float:
        """The highest threshold among ``names`` (``[]``: the no-tool threshold)."""
        return max(self.per_tool.get(n, self.default) for n in (names or [NO_TOOL]))

    def judge(self, decision: RoutingDecision) -> float:
        """Mark ``decision`` as a fallback when it should not be followed; returns the bar it had."""
        if not decision.valid:
            decision.fallback, decision.fallback_reason = True, "invalid"
            return self.required(decision.tool_names)
        pairs = ([(n, decision.scores.get(n, 0.0)) for n in decision.tool_names]
                 or [(NO_TOOL, decision.no_tool_score)])
        for name, score in pairs:
            if score < self.per_tool.get(name, self.default):
                decision.fallback = True
                decision.fallback_reason = f"tool_threshold:{name}" if name in self.per_tool else "low_confidence"
                break
        if not decision.fallback and decision.tool_calls and self.keep is not None:
            named = set(decision.tool_names)
            decision.extra_tools = [n for n, s in sorted(decision.scores.items(), key=lambda kv: -kv[1])
                                    if s >= self.keep and n not in named]
        return self.required(decision.tool_names)
