"""ThresholdPolicy: when a router follows a decision, and when it falls back to all tools."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from openhoof_router.core.records import NO_TOOL, RoutingDecision
from openhoof_router.serving.settings import DEFAULT_THRESHOLD
from openhoof_router.store.runs import Decoding


@dataclass
class ThresholdPolicy:
    """When to follow a decision: every tool it names, or its "no tool", must score at least
    its threshold (``per_tool``, else ``default``); otherwise it is a fallback."""

    default: float = DEFAULT_THRESHOLD
    per_tool: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.default < 0 or any(v < 0 for v in self.per_tool.values()):
            raise ValueError("thresholds must be >= 0")

    @classmethod
    def served(cls, decoding: Decoding, threshold: float | None = None,
               tool_thresholds: Mapping[str, float] | None = None) -> ThresholdPolicy:
        """A run's fitted thresholds (``decoding``) under the ones a caller set explicitly:
        ``threshold`` replaces the fitted default, ``tool_thresholds`` override per tool."""
        default = threshold if threshold is not None else decoding.threshold
        return cls(DEFAULT_THRESHOLD if default is None else float(default),
                   {**decoding.tool_thresholds, **{k: float(v) for k, v in (tool_thresholds or {}).items()}})

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
        return self.required(decision.tool_names)
