"""The small interface every local model backend implements.

A backend is a stateful next-token scorer over one token sequence:

- ``start(prefix)`` positions it after a token prefix (restoring that prefix's cached KV
  state when it has one);
- ``feed(ids)`` appends tokens and returns the logits for the next token;
- ``feed_rows(ids, rows, tokens)`` appends tokens and returns a few logits at several
  positions (the verdict marks), from one evaluation where the backend can.

It also tokenizes, in the shape :class:`~openhoof_router.core.prompt.PromptCodec` needs: plain
text with special tokens *off*, control tokens by name. The verdict reader
(:mod:`openhoof_router.core.verdicts`) drives it the same way for llama.cpp, MLX and
transformers, so the three give the same decisions for the same weights.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

import numpy as np

State = TypeVar("State")
_LOCK_GUARD = threading.Lock()


class BackendError(RuntimeError):
    """A backend could not load its model or adapter, or failed while scoring."""


class Backend(ABC):
    """Next-token scoring over one model (+ optional adapter)."""

    name: str = "backend"
    model_id: str = ""
    adapter_id: str | None = None
    n_ctx: int = 2048
    bos_id: int = 2

    # -- tokens ---------------------------------------------------------------------
    @abstractmethod
    def encode(self, text: str) -> list[int]:
        """Token ids of plain text: no BOS, and ``<end_of_turn>`` in the text stays text."""

    @abstractmethod
    def control(self, piece: str) -> int:
        """The id of one control token (``<start_of_turn>``, ``<end_of_turn>``)."""

    @abstractmethod
    def detokenize(self, ids: Sequence[int]) -> str: ...

    # -- scoring --------------------------------------------------------------------
    @abstractmethod
    def start(self, prefix: Sequence[int], *, use_cache: bool = True) -> None:
        """Position the model right after ``prefix``.

        With ``use_cache`` the prefix's KV state is reused when this prefix was seen
        before; without it the whole prefix is evaluated again (the naive path).
        """

    @abstractmethod
    def feed(self, ids: Sequence[int]) -> np.ndarray:
        """Append ``ids`` and return float32 logits over the vocabulary for the next token."""

    def feed_rows(self, ids: Sequence[int], rows: Sequence[int], tokens: Sequence[int]) -> np.ndarray:
        """Append ``ids``; return, for each index ``r`` in ``rows`` (ascending), the logits of
        ``tokens`` for the token after ``ids[r]``: shape ``(len(rows), len(tokens))``.

        This generic version feeds up to each row in turn; backends that can read several
        positions from one evaluation (llama.cpp) override it.
        """
        out = np.empty((len(rows), len(tokens)), dtype=np.float32)
        start = 0
        for k, r in enumerate(rows):
            out[k] = self.feed(ids[start: r + 1])[list(tokens)]
            start = r + 1
        if start < len(ids):
            self.feed(ids[start:])
        return out

    def prefill(self, prefix: Sequence[int], ids: Sequence[int]) -> int:
        """Evaluate ``ids`` after ``prefix`` ahead of a call whose prompt will start with them
        (a conversation's earlier turns, before its next message arrives), so that call reads
        only what follows. Returns the tokens evaluated; backends that keep no finished
        calls' states (this default) do nothing and return 0."""
        return 0

    # -- window ---------------------------------------------------------------------
    @property
    def max_ctx(self) -> int:
        """The largest window :meth:`ensure_window` can give (the default cannot grow)."""
        return self.n_ctx

    def ensure_window(self, tokens: int) -> int:
        """Make room for prompts of ``tokens`` tokens if this backend can (llama.cpp re-creates
        its context over the loaded weights); returns the window now. The default cannot grow."""
        return self.n_ctx

    # -- sharing ----------------------------------------------------------------------
    @property
    def lock(self) -> threading.RLock:
        """Held around every sequence of calls that must not interleave (start, feed):
        engines that share this backend take it, as one engine takes its own lock."""
        lock = self.__dict__.get("_backend_lock")
        if lock is None:
            with _LOCK_GUARD:
                lock = self.__dict__.setdefault("_backend_lock", threading.RLock())
        return lock

    def close(self) -> None:
        """Give back this owner's hold; the model's memory is freed when the last owner closes
        (:mod:`openhoof_router.models.shared`). Close once per ``load_backend`` call."""
        from openhoof_router.models.shared import release

        if release(self):
            self._free()

    def _free(self) -> None:  # noqa: B027 - optional
        """Free the model's memory (backends that hold any override this)."""


class HFTokensMixin:
    """Tokenization for backends that keep an :class:`~openhoof_router.models.hf.HFTokenizer` in ``tokens``."""

    tokens: Any

    def encode(self, text: str) -> list[int]:
        return self.tokens.encode(text)

    def control(self, piece: str) -> int:
        return self.tokens.control(piece)

    def detokenize(self, ids: Sequence[int]) -> str:
        return self.tokens.decode(ids)


def control_id(ids: Sequence[int], piece: str) -> int:
    """The single id a control token tokenizes to, or a clear error (wrong tokenizer)."""
    if len(ids) != 1:
        raise BackendError(f"{piece} is not one token in this model's vocabulary ({list(ids)}): "
                           "the router needs a Gemma 3 / FunctionGemma tokenizer")
    return int(ids[0])


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    """How many leading tokens ``a`` and ``b`` share."""
    n = min(len(a), len(b))
    if n == 0:
        return 0
    diff = np.flatnonzero(np.asarray(a[:n], dtype=np.int64) != np.asarray(b[:n], dtype=np.int64))
    return int(diff[0]) if diff.size else n


class PrefixCache(Generic[State]):
    """An LRU of saved states keyed by the token sequence each was evaluated over.

    ``get`` finds an exact sequence (a tool block); :meth:`longest` finds the entry that shares
    the longest prefix with a new sequence, so a caller restores it and evaluates only the rest:
    any prompt whose earlier part is unchanged (a tool block, a conversation's earlier turns
    in an append-only format) is read once. Bounded by a count and, with ``weigh`` (a state's
    size), by ``max_weight``: the least recently used entries go first.
    """

    def __init__(self, capacity: int = 8, *, weigh: Callable[[State], int] | None = None,
                 max_weight: int | None = None) -> None:
        self.capacity = capacity
        self.max_weight = max_weight
        self._weigh = weigh or (lambda _state: 0)
        self.weight = 0
        """Total weight of the entries held."""
        self._items: OrderedDict[tuple[int, ...], State] = OrderedDict()

    def __len__(self) -> int:
        return len(self._items)

    def get(self, prefix: Sequence[int]) -> State | None:
        key = tuple(prefix)
        state = self._items.get(key)
        if state is not None:
            self._items.move_to_end(key)
        return state

    def longest(self, tokens: Sequence[int], minimum: int = 1) -> tuple[tuple[int, ...], State, int] | None:
        """The entry sharing the longest prefix with ``tokens`` (at least ``minimum`` tokens):
        ``(its key, its state, tokens shared)``, marked as used; None if there is none."""
        best: tuple[tuple[int, ...], State, int] | None = None
        for key, state in self._items.items():
            n = common_prefix(key, tokens)
            if n >= minimum and (best is None or n > best[2]):
                best = (key, state, n)
        if best is not None:
            self._items.move_to_end(best[0])
        return best

    def put(self, prefix: Sequence[int], state: State) -> None:
        self.pop(prefix)
        self._items[tuple(prefix)] = state
        self.weight += self._weigh(state)
        while len(self._items) > self.capacity or (self.max_weight is not None and self.weight > self.max_weight
                                                   and len(self._items) > 1):
            self.pop(next(iter(self._items)))

    def retire(self, prefix: Sequence[int]) -> None:
        """Make an entry the first to go (a newer entry supersedes it)."""
        key = tuple(prefix)
        if key in self._items:
            self._items.move_to_end(key, last=False)

    def pop(self, prefix: Sequence[int]) -> State | None:
        state = self._items.pop(tuple(prefix), None)
        if state is not None:
            self.weight -= self._weigh(state)
        return state

    def clear(self) -> None:
        self._items.clear()
        self.weight = 0
