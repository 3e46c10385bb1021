"""RouterEngine: prompt + local model + constrained decoding → RoutingDecision.

Framework-free and thread-safe (one lock around the model, which holds KV state).
:class:`openhoof_router.router.ToolRouter` wraps it as a LangChain Runnable.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any, Iterable

from .backends import Backend, BackendError, load_backend
from .decoding import AnswerVocabulary, decode
from .prompt import parse_answer, render_tool_block, render_user_turn
from .records import RoutingDecision
from .tools import ToolSpec, normalize_tools

ANSWER_RESERVE = 32  # tokens kept free for the answer itself


@dataclass(frozen=True)
class _Prepared:
    specs: tuple[ToolSpec, ...]
    prefix: tuple[int, ...]
    vocab: AnswerVocabulary
    backend: Backend | None = None
    """The backend these tokens were made with (a hot swap invalidates them)."""


class RouterEngine:
    """Routes one message over a tool list with a local backend."""

    def __init__(self, backend: Backend, *, max_tools: int = 3) -> None:
        if max_tools < 1:
            raise ValueError("max_tools must be at least 1")
        self.backend = backend
        self.max_tools = max_tools
        self._lock = threading.RLock()
        self._prepared: dict[tuple[str, ...], _Prepared] = {}

    @classmethod
    def load(
        cls,
        *,
        backend: str | None = "auto",
        base_model: Any = None,
        model: Any = None,
        n_threads: int | None = None,
        max_tools: int = 3,
        **kwargs: Any,
    ) -> "RouterEngine":
        return cls(
            load_backend(backend, base_model=base_model, model=model, n_threads=n_threads, **kwargs),
            max_tools=max_tools,
        )

    def prepare(self, tools: Iterable[Any]) -> _Prepared:
        """Normalise and tokenize a tool list (cached per list)."""
        specs = tuple(normalize_tools(tools))
        block = render_tool_block(specs)
        key = (block,)
        prepared = self._prepared.get(key)
        if prepared is None or prepared.backend is not self.backend:
            with self._lock:
                backend = self.backend
                prefix = tuple(backend.tokenize(block, bos=True))
                vocab = AnswerVocabulary.build(backend, [s.name for s in specs])
            if len(prefix) + ANSWER_RESERVE >= backend.n_ctx:
                raise BackendError(
                    f"the tool list alone takes {len(prefix)} tokens, over the context window "
                    f"({backend.n_ctx}); offer fewer tools or shorten their descriptions"
                )
            prepared = _Prepared(specs, prefix, vocab, backend)
            if len(self._prepared) > 64:
                self._prepared.clear()
            self._prepared[key] = prepared
        return prepared

    def route(self, message: str, tools: Iterable[Any], *, use_cache: bool = True) -> RoutingDecision:
        """Pick the tools for ``message``. Bad *input* raises ToolError; model trouble never raises."""
        prepared = self.prepare(tools)
        names = [s.name for s in prepared.specs]
        started = time.perf_counter()
        with self._lock:
            if prepared.backend is not self.backend:  # swapped meanwhile: re-tokenize for the new model
                prepared = self.prepare(tools)
            ident = {"model": self.backend.model_id, "adapter": self.backend.adapter_id,
                     "backend": self.backend.name}
            user = self.backend.tokenize(render_user_turn(message), bos=False)
            room = self.backend.n_ctx - len(prepared.prefix) - ANSWER_RESERVE
            if len(user) > room:
                return RoutingDecision(
                    valid=False,
                    error=f"message too long for the context window ({len(user)} tokens > {room}); "
                    "callers fall back to all tools",
                    latency_ms=(time.perf_counter() - started) * 1000,
                    **ident,
                )
            try:
                result = decode(self.backend, prepared.prefix, user, prepared.vocab,
                                max_tools=self.max_tools, use_cache=use_cache)
                raw = self.backend.detokenize(result.tokens)
            except Exception as exc:  # a model fault must not take the caller down
                return RoutingDecision(valid=False, error=f"backend error: {exc}",
                                       latency_ms=(time.perf_counter() - started) * 1000, **ident)
        parsed = parse_answer(raw, names)
        return RoutingDecision(
            tool_calls=parsed.tool_calls,
            valid=parsed.valid,
            error=parsed.error,
            confidence=min(1.0, max(0.0, result.confidence)),
            latency_ms=(time.perf_counter() - started) * 1000,
            raw=raw,
            **ident,
        )

    def swap_backend(self, backend: Backend) -> Backend:
        """Replace the model; calls in flight finish on the old one. Returns the old backend."""
        with self._lock:
            old, self.backend = self.backend, backend
            self._prepared.clear()
        return old

    def close(self) -> None:
        with self._lock:
            self.backend.close()

