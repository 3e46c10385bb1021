"""The decision: a probability per offered tool that it is needed, read in one evaluation.

After the user turn the model turn holds one verdict mark per tool (``exec?notify?…``) and
one for "no tool" (``none?``); see :mod:`openhoof_router.core.prompt`. At each
mark only two logits matter, "yes" and "no": ``P(needed) = sigmoid(yes - no)``. All marks
are read from one evaluation of the user turn and the segment, after the cached tool block.

The answer (:class:`VerdictRule`): the best-scoring tool when it reaches
``top_threshold``, plus every other tool reaching ``extra_threshold`` (at most
``max_tools`` in all, best first, then listed in tool order). Tools compete through the
training objective (a listwise softmax beside the per-tool verdicts), and several can
still win. "No tool" is the case where no tool passes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from openhoof_router.core.prompt import PromptCodec, VerdictSegment
from openhoof_router.models.backend import Backend

DEFAULT_TOP_THRESHOLD = 0.5
DEFAULT_EXTRA_THRESHOLD = 0.5
DEFAULT_MAX_TOOLS = 5


@dataclass(frozen=True)
class VerdictRule:
    """How verdicts become an answer; runs store fitted values in their manifest."""

    top_threshold: float = DEFAULT_TOP_THRESHOLD
    extra_threshold: float = DEFAULT_EXTRA_THRESHOLD
    max_tools: int = DEFAULT_MAX_TOOLS

    def __post_init__(self) -> None:
        if not (0.0 <= self.top_threshold <= 1.0 and 0.0 <= self.extra_threshold <= 1.0):
            raise ValueError("verdict thresholds must be within [0, 1]")
        if self.max_tools < 1:
            raise ValueError("max_tools must be at least 1")

    @classmethod
    def fitted(cls, top: float | None, extra: float | None, max_tools: int = DEFAULT_MAX_TOOLS) -> VerdictRule:
        """The rule of a run's decoding settings (a threshold not fitted, None: the default)."""
        return cls(DEFAULT_TOP_THRESHOLD if top is None else top, DEFAULT_EXTRA_THRESHOLD if extra is None else extra,
                   max_tools)

    def select(self, probs: Sequence[float]) -> list[int]:
        """Indices of the selected tools (in list order) given each tool's P(needed)."""
        if not len(probs):
            return []
        order = sorted(range(len(probs)), key=lambda i: -probs[i])
        top = order[0]
        if probs[top] < self.top_threshold:
            return []
        chosen = [top] + [i for i in order[1:] if probs[i] >= self.extra_threshold][: self.max_tools - 1]
        return sorted(chosen)


@dataclass
class Verdicts:
    """What one evaluation gives: P(needed) per tool (list order) and for "no tool"."""

    tools: list[float]
    none: float
    evaluations: int = 1
    margins: list[float] = field(default_factory=list)

    @property
    def no_tool_score(self) -> float:
        """How sure the model is that no tool is needed: its "no tool" verdict and the best
        tool's "not needed" must agree, so the lower of the two."""
        best = max(self.tools, default=0.0)
        return min(self.none, 1.0 - best)


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))


def read_verdicts(backend: Backend, codec: PromptCodec, prefix: Sequence[int], user: Sequence[int],
                  segment: VerdictSegment, *, use_cache: bool = True) -> Verdicts:
    """Evaluate the user turn and the verdict segment after ``prefix``; read every mark."""
    backend.start(prefix, use_cache=use_cache)
    ids = [*user, *segment.ids]
    rows = [len(user) + p for p in segment.positions]
    logits = np.asarray(backend.feed_rows(ids, rows, (codec.yes_id, codec.no_id)), dtype=np.float64)
    margins = (logits[:, 0] - logits[:, 1]).tolist()
    probs = [_sigmoid(m) for m in margins]
    return Verdicts(tools=probs[:-1], none=probs[-1], margins=margins)


def confidence(verdicts: Verdicts, chosen: Sequence[int]) -> float:
    """How sure the answer is: the weakest of its verdicts (a chosen tool's P(needed), an
    unchosen one's P(not needed)); for "no tool", :attr:`Verdicts.no_tool_score`."""
    if not chosen:
        return verdicts.no_tool_score
    picked = set(chosen)
    return min(p if i in picked else 1.0 - p for i, p in enumerate(verdicts.tools))
