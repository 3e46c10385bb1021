"""The small interface every local model backend implements.

A backend is a stateful next-token scorer: ``start(prefix)`` positions it after a token
prefix (restoring that prefix's cached KV state when it has one), ``feed(ids)`` appends
tokens and returns the logits for the next token. The constrained decoder in
:mod:`openhoof_router.decoding` drives it; it is the same for llama.cpp, MLX and
transformers, so the three give the same decisions for the same weights.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import OrderedDict
from typing import Generic, Sequence, TypeVar

import numpy as np

State = TypeVar("State")


class BackendError(RuntimeError):
    """A backend could not load its model or adapter."""


class Backend(ABC):
    """Next-token scoring over one model (+ optional adapter)."""

    name: str = "backend"
    model_id: str = ""
    adapter_id: str | None = None
    n_ctx: int = 2048

    @abstractmethod
    def tokenize(self, text: str, *, bos: bool = False) -> list[int]:
        """Token ids for ``text``; special markers like ``<end_of_turn>`` are parsed."""

    @abstractmethod
    def detokenize(self, ids: Sequence[int]) -> str: ...

    @abstractmethod
    def start(self, prefix: Sequence[int], *, use_cache: bool = True) -> None:
        """Position the model right after ``prefix``.

        With ``use_cache`` the prefix's KV state is reused when this prefix was seen
        before; without it the whole prefix is evaluated again (the naive path).
        """

    @abstractmethod
    def feed(self, ids: Sequence[int]) -> np.ndarray:
        """Append ``ids`` and return float32 logits over the vocabulary for the next token."""

    def close(self) -> None:  # noqa: B027 - optional
        """Free the model's memory."""


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
