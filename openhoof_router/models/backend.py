"""The small interface every local model backend implements.

A backend is a stateful next-token scorer over one token sequence:

- ``start(prefix)`` positions it after a token prefix (restoring that prefix's cached KV
  state when it has one);
- ``feed(ids)`` appends tokens and returns the logits for the next token;
- ``mark()`` / ``rewind(mark)`` drop what was fed after a point, so the decoder can look
  down one branch of the answer trie and come back.

It also tokenizes, in the shape :class:`~openhoof_router.core.prompt.PromptCodec` needs: plain
text with special tokens *off*, control tokens by name. The constrained decoder
(:mod:`openhoof_router.core.decoding`) drives it the same way for llama.cpp, MLX and
transformers, so the three give the same decisions for the same weights.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import OrderedDict
from typing import Any, Generic, Sequence, TypeVar

import numpy as np

State = TypeVar("State")


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

    @abstractmethod
    def mark(self) -> Any:
        """An opaque marker of the current position."""

    @abstractmethod
    def rewind(self, mark: Any) -> None:
        """Forget everything fed after ``mark`` (taken since the last ``start``)."""

    def close(self) -> None:  # noqa: B027 - optional
        """Free the model's memory."""


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


class PrefixCache(Generic[State]):
    """A small LRU of saved KV states keyed by the exact prefix tokens."""

    def __init__(self, capacity: int = 8) -> None:
        self.capacity = capacity
        self._items: OrderedDict[tuple[int, ...], State] = OrderedDict()

    def get(self, prefix: Sequence[int]) -> State | None:
        key = tuple(prefix)
        state = self._items.get(key)
        if state is not None:
            self._items.move_to_end(key)
        return state

    def put(self, prefix: Sequence[int], state: State) -> None:
        self._items[tuple(prefix)] = state
        self._items.move_to_end(tuple(prefix))
        while len(self._items) > self.capacity:
            self._items.popitem(last=False)

    def clear(self) -> None:
        self._items.clear()
