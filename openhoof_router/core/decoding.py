"""Constrained decoding of the router's answer, with a score for every offered tool.

The answer is built slot by slot: the first slot chooses a tool or ``none``, each later
slot a tool listed *after* the previous one (answers name tools in list order), and
between slots the model decides to continue (``,``) or stop (end of turn).

Within a slot the candidate names form a token trie. The slot's first logits give every
subtree's probability at once; a subtree holding several names (``shared_read``,
``shared_write``, ...) is explored with one short evaluation per branching point, for
the most likely subtree always and for any other whose probability reaches
``explore_min``. So every tool that could matter gets its exact path probability and the
slot's choice is the true best name, not the best first token; tools in unexplored
subtrees carry that subtree's probability, an upper bound below ``explore_min``.
Confident decisions cost what plain greedy decoding costs: the user-turn prefill plus
one or two evaluations of a few tokens.

Continue or stop: after a tool, ``P(,) / (P(,) + P(end))`` is compared with
``continue_threshold``: 0.5 is greedy; a run calibrates it on validation data (greedy
decoding stops too early on multi-tool turns).

Probabilities are full-vocabulary softmax probabilities, so mass the model puts outside
the grammar lowers both the scores and the confidence: an untrained model is unsure.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from openhoof_router.core.prompt import AnswerVocabulary
from openhoof_router.core.records import NO_TOOL
from openhoof_router.models.backend import Backend, BackendError

EXPLORE_MIN = 0.05
DEFAULT_CONTINUE_THRESHOLD = 0.5


@dataclass
class DecodeResult:
    names: list[str]
    confidence: float
    scores: dict[str, float] = field(default_factory=dict)
    no_tool_score: float = 0.0
    continue_probs: list[float] = field(default_factory=list)
    """``P(,) / (P(,) + P(end))`` after each chosen tool (what the threshold was compared with)."""
    evaluations: int = 0
    """How many times the backend was asked for logits (prefill included)."""


class _LogProbs:
    """Full-vocabulary log-probabilities of one logits vector, computed lazily per token."""

    def __init__(self, logits: np.ndarray) -> None:
        if not np.all(np.isfinite(logits)):
            raise BackendError("the model produced non-finite scores")
        top = float(np.max(logits))
        self._log_z = top + math.log(float(np.sum(np.exp(logits - top, dtype=np.float64))))
        self._logits = logits

    def prob(self, token: int) -> float:
        return math.exp(float(self._logits[token]) - self._log_z)


class _Cursor:
    """Feeds token paths from a slot's start, reusing what is already evaluated."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.evaluations = 0
        self.mark = backend.mark()
        self.path: tuple[int, ...] = ()

    def logits_after(self, path: Sequence[int]) -> np.ndarray:
        path = tuple(path)
        if self.path == path[: len(self.path)] and len(path) > len(self.path):
            tail = path[len(self.path):]
        else:
            self.backend.rewind(self.mark)
            tail = path
        logits = self.backend.feed(list(tail))
        self.path = path
        self.evaluations += 1
        return logits

    def advance(self, path: Sequence[int]) -> np.ndarray:
        """Make ``path`` part of the answer: the next slot starts after it."""
        logits = self.logits_after(path)
        self.mark = self.backend.mark()
        self.path = ()
        return logits


@dataclass
class _Node:
    children: dict[int, _Node] = field(default_factory=dict)
    label: str | None = None
    """The candidate whose token path ends here."""


def _trie(candidates: dict[str, tuple[int, ...]]) -> _Node:
    root = _Node()
    for label, ids in candidates.items():
        node = root
        for token in ids:
            node = node.children.setdefault(token, _Node())
        node.label = label
    return root


def _labels(node: _Node) -> list[str]:
    out = [node.label] if node.label is not None else []
    for child in node.children.values():
        out.extend(_labels(child))
    return out


def _slot(cursor: _Cursor, logits: np.ndarray, candidates: dict[str, tuple[int, ...]],
          term_ids: Sequence[int], explore_min: float) -> dict[str, float]:
    """Probability of each candidate's path from this slot's start (exact or upper bound)."""
    probs: dict[str, float] = {}

    def walk(node: _Node, path: tuple[int, ...], mass: float, lp: _LogProbs | None, exact: bool) -> None:
        branches = list(node.children.items())
        if node.label is not None and branches:
            # A name that is a prefix of another: ending here is a choice (',' or end).
            if lp is None:
                lp = _LogProbs(cursor.logits_after(path))
            probs[node.label] = mass * sum(lp.prob(t) for t in term_ids)
        elif node.label is not None:
            probs[node.label] = mass
        if not branches:
            return
        if len(branches) == 1 and node.label is None:
            token, child = branches[0]
            walk(child, path + (token,), mass, None, exact)  # forced: no choice, no probability
            return
        if lp is None:
            lp = _LogProbs(cursor.logits_after(path))
        child_mass = {token: mass * lp.prob(token) for token, _ in branches}
        top = max(child_mass, key=lambda k: child_mass[k])
        for token, child in branches:
            m = child_mass[token]
            if exact and (token == top or m >= explore_min):
                walk(child, path + (token,), m, None, True)
            else:
                for label in _labels(child):  # unexplored: the subtree's mass bounds each name
                    probs[label] = m

    root = _trie(candidates)
    walk(root, (), 1.0, _LogProbs(logits), True)
    return probs


def decode(
    backend: Backend,
    prefix: Sequence[int],
    user: Sequence[int],
    vocab: AnswerVocabulary,
    *,
    max_tools: int = 3,
    continue_threshold: float = DEFAULT_CONTINUE_THRESHOLD,
    explore_min: float = EXPLORE_MIN,
    use_cache: bool = True,
) -> DecodeResult:
    """Choose the answer (see the module docstring); the backend ends up after the user turn."""
    backend.start(prefix, use_cache=use_cache)
    logits = backend.feed(list(user))
    cursor = _Cursor(backend)
    chosen: list[str] = []
    scores: dict[str, float] = {}
    no_tool = 0.0
    confidence = reach = 1.0
    continues: list[float] = []
    candidates: dict[str, tuple[int, ...]] = {n: vocab.name_ids[n] for n in vocab.names}
    candidates[NO_TOOL] = vocab.none_ids + vocab.end_ids
    term = (vocab.sep_ids[0], vocab.end_ids[0])
    while True:
        probs = _slot(cursor, logits, candidates, term, explore_min)
        for name, p in probs.items():
            if name == NO_TOOL:
                no_tool = p
            else:
                scores[name] = max(scores.get(name, 0.0), reach * p)
        best = max(probs, key=lambda k: probs[k])
        confidence *= probs[best]
        if best == NO_TOOL:
            break
        chosen.append(best)
        later = vocab.names[vocab.names.index(best) + 1:]
        if len(chosen) >= max_tools or not later:
            break
        lp = _LogProbs(cursor.logits_after(vocab.name_ids[best]))
        p_sep, p_end = lp.prob(vocab.sep_ids[0]), lp.prob(vocab.end_ids[0])
        cont = p_sep / (p_sep + p_end) if p_sep + p_end > 0 else 0.0
        continues.append(cont)
        if cont < continue_threshold:
            confidence *= p_end
            break
        confidence *= p_sep
        reach *= probs[best] * cont
        logits = cursor.advance(vocab.name_ids[best] + vocab.sep_ids)
        candidates = {n: vocab.name_ids[n] for n in later}
    for name in vocab.names:
        scores.setdefault(name, 0.0)
    return DecodeResult(chosen, min(1.0, confidence), scores, no_tool, continues, cursor.evaluations + 1)
