"""Constrained decoding of the router's answer over a token trie of the offered tools.

Only offered names (or ``none``) can come out. Tokens that the trie forces are never
scored one by one: they are queued and evaluated together right before the next real
choice, and not at all once the answer is settled. A one-tool answer therefore costs the
user-turn prefill plus one or two small evaluations, not one per token.

Confidence is the product, over the branching points, of the probability the model gave
the chosen token (a full-vocabulary softmax): the model's own belief in its answer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from .backends.base import Backend
from .prompt import END, NO_TOOL, SEPARATOR


@dataclass(frozen=True)
class AnswerVocabulary:
    """Token ids of every piece an answer can be made of, for one tool list."""

    names: tuple[str, ...]
    name_ids: dict[str, tuple[int, ...]]
    none_ids: tuple[int, ...]
    sep_ids: tuple[int, ...]
    end_ids: tuple[int, ...]

    @classmethod
    def build(cls, backend: Backend, names: Sequence[str]) -> "AnswerVocabulary":
        def ids(text: str) -> tuple[int, ...]:
            return tuple(backend.tokenize(text, bos=False))

        return cls(
            names=tuple(names),
            name_ids={n: ids(n) for n in names},
            none_ids=ids(NO_TOOL),
            sep_ids=ids(SEPARATOR),
            end_ids=ids(END),
        )


@dataclass
class DecodeResult:
    names: list[str]
    tokens: list[int]
    confidence: float
    branch_probs: list[float] = field(default_factory=list)
    evaluations: int = 0
    """How many times the backend was asked for logits (prefill included)."""


def _prob(logits: np.ndarray, token: int) -> float:
    top = float(np.max(logits))
    log_z = top + math.log(float(np.sum(np.exp(logits - top, dtype=np.float64))))
    return math.exp(float(logits[token]) - log_z)


def decode(
    backend: Backend,
    prefix: Sequence[int],
    user: Sequence[int],
    vocab: AnswerVocabulary,
    *,
    max_tools: int = 3,
    use_cache: bool = True,
) -> DecodeResult:
    """Pick the answer greedily among the trie's branches; see the module docstring."""
    backend.start(prefix, use_cache=use_cache)
    logits = backend.feed(user)
    evaluations = 1
    chosen: list[str] = []
    tokens: list[int] = []
    pending: list[int] = []  # tokens chosen but not yet evaluated
    probs: list[float] = []
    while True:
        remaining = [n for n in vocab.names if n not in chosen]
        more_allowed = len(chosen) + 1 < max_tools and len(remaining) > 1
        terminators = [vocab.end_ids] + ([vocab.sep_ids] if more_allowed else [])
        cands: list[tuple[str, tuple[int, ...], bool]] = [
            (n, vocab.name_ids[n] + t, t == vocab.end_ids) for n in remaining for t in terminators
        ]
        if not chosen:
            cands.append((NO_TOOL, vocab.none_ids + vocab.end_ids, True))
        pos = 0
        while len(cands) > 1:
            allowed = sorted({c[1][pos] for c in cands if len(c[1]) > pos})
            if len(allowed) == 1:
                token = allowed[0]
            else:
                if pending:
                    logits = backend.feed(pending)
                    evaluations += 1
                    pending = []
                token = allowed[int(np.argmax(logits[allowed]))]
                probs.append(_prob(logits, token))
            pending.append(token)
            tokens.append(token)
            cands = [c for c in cands if len(c[1]) > pos and c[1][pos] == token]
            pos += 1
        label, seq, ends = cands[0]
        rest = list(seq[pos:])
        pending.extend(rest)
        tokens.extend(rest)
        if label == NO_TOOL:
            break
        chosen.append(label)
        if ends:
            break
    confidence = float(np.prod(probs)) if probs else 1.0
    return DecodeResult(chosen, tokens, confidence, probs, evaluations)
