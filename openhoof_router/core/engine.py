"""RouterEngine: prompt codec + local model + per-tool verdicts → RoutingDecision.

Framework-free and thread-safe (one lock around the model, which holds KV state).
:class:`openhoof_router.serving.service.RouterService` adds thresholds, logs and hot reload on
top; the LangChain adapters sit on that.

Every input routes to a defined result, never an exception from the model side:

- an empty or blank message needs no tool (a valid "none" decision, ``notes`` says why);
- text is cleaned first (lone surrogates, control characters) and tokenized as plain text,
  so a message that spells ``<end_of_turn>`` cannot forge a turn;
- a tool list too long for the window is shortened (descriptions cut, then dropped);
  a message too long loses its oldest context turns, then its middle;
  ``notes`` records each, so the log shows what the model saw;
- a model fault gives an invalid decision (callers fall back to all tools).

Only a tool list that cannot be routed over at all (empty, duplicate names, too many
tools for the window even as bare names) raises :class:`~openhoof_router.core.tools.ToolError`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from openhoof_router.core.prompt import CONTEXT_TURNS, DETAIL_LEVELS, PromptCodec, UserTurn, clean_text
from openhoof_router.core.records import NO_TOOL, PastTurn, RoutingDecision, ToolCall
from openhoof_router.core.tools import ToolError, ToolSpec, normalize_tools
from openhoof_router.core.verdicts import (
    VerdictRule,
    confidence,
    read_verdicts,
)
from openhoof_router.models.backend import common_prefix
from openhoof_router.models.loading import Backend, load_backend, resolve_run, run_decoding
from openhoof_router.store.runs import Decoding

MIN_USER_TOKENS = 48
"""The tool block may use the window only up to where this much room is left for the user turn."""
USER_ROOM = 1024
"""Room for the user turn when the window grows for a long tool list."""
MAX_USER_TOKENS = 384
"""Most tokens of one user turn (earlier turns + message): a routing decision needs the gist,
and each token costs prefill time (~2-5 ms on 2 cores): 200 spelled ``<end_of_turn>`` are 1,200."""
CHARS_PER_TOKEN = 8
"""Text beyond this many characters per token of room is cut before it is tokenized."""


@dataclass(frozen=True)
class Prepared:
    """A tool list, normalised and encoded for the engine's current model."""

    specs: tuple[ToolSpec, ...]
    prefix: tuple[int, ...]
    level: int
    """Level of detail of the tool lines (0: full; see ``prompt.DETAIL_LEVELS``)."""
    backend: Backend

    @property
    def notes(self) -> list[str]:
        if not self.level:
            return []
        chars, params = DETAIL_LEVELS[self.level]
        what = f"descriptions cut to {chars} characters" if chars else "descriptions dropped"
        return [f"tool list shortened to fit the context window ({what}, {params} parameter names)"]


class RouterEngine:
    """Routes one message (with optional earlier turns) over a tool list with a local backend.

    Args:
        backend: the loaded model.
        max_tools: most tools one answer may name.
        context_turns: how many earlier turns of the conversation to read.
        rule: how the verdicts become an answer (runs store a fitted one).
    """

    def __init__(self, backend: Backend, *, max_tools: int = 3, context_turns: int = CONTEXT_TURNS,
                 rule: VerdictRule | None = None) -> None:
        if max_tools < 1:
            raise ValueError("max_tools must be at least 1")
        self.max_tools = max_tools
        self.context_turns = context_turns
        self.max_user_tokens: int | None = MAX_USER_TOKENS
        """Cap on the user turn's tokens (None: only the window bounds it)."""
        self._lock = threading.RLock()
        self._prepared: dict[tuple[str, ...], Prepared] = {}
        self.backend = backend
        self.rule = rule or VerdictRule()
        self.codec = PromptCodec(backend)

    def use_decoding(self, decoding: Decoding) -> None:
        """Route with a run's fitted verdict rule from the next call on (unset fields: the defaults)."""
        with self._lock:
            self.rule = VerdictRule.fitted(decoding.top_threshold, decoding.extra_threshold, self.rule.max_tools)

    def serve_run(self, target: Any) -> None:
        """Serve ``target``'s fitted decoding (a :class:`ServedRun`; else the defaults)."""
        self.use_decoding(run_decoding(target))

    @classmethod
    def load(cls, *, backend: str | None = "auto", base_model: Any = None, model: Any = None,
             n_threads: int | None = None, max_tools: int = 3, **kwargs: Any) -> RouterEngine:
        """Load exactly ``model`` (a run, a GGUF, None: the base) with the run's fitted decoding.

        No choice between runs and no probe: for what a router serves, use
        :func:`openhoof_router.serving.selection.serve`. ``kwargs`` go to ``load_backend``.
        """
        target = resolve_run(model)
        engine = cls(load_backend(backend, base_model=base_model, model=target, n_threads=n_threads, **kwargs),
                     max_tools=max_tools)
        engine.serve_run(target)
        return engine

    def prepare(self, tools: Iterable[Any]) -> Prepared:
        """Normalise and encode a tool list (cached per list and model)."""
        specs = tuple(normalize_tools(tools))
        key = tuple(s.model_dump_json() for s in specs)
        prepared = self._prepared.get(key)
        if prepared is not None and prepared.backend is self.backend:
            return prepared
        with self._lock, self.backend.lock:
            backend, codec = self.backend, self.codec
            reserve = self._answer_reserve(specs) + MIN_USER_TOKENS
            try:  # the most detailed block the largest window takes; the window grows for it if it can
                prefix, level = codec.fit_tool_block(specs, backend.max_ctx - reserve)
                if len(prefix) > backend.n_ctx - reserve:
                    backend.ensure_window(len(prefix) + reserve + USER_ROOM)
                    prefix, level = codec.fit_tool_block(specs, backend.n_ctx - reserve)
            except ValueError as exc:
                raise ToolError(f"{exc} (context window {backend.max_ctx} tokens)") from None
        prepared = Prepared(specs, prefix, level, backend)
        if len(self._prepared) > 64:
            self._prepared.clear()
        self._prepared[key] = prepared
        return prepared

    def route(self, message: str, tools: Iterable[Any], *, context: Sequence[PastTurn] = (),
              use_cache: bool = True) -> RoutingDecision:
        """Pick the tools for ``message``. Bad tool lists raise ToolError; nothing else raises."""
        tools = list(tools)
        started = time.perf_counter()
        text = clean_text(message).strip()
        context = list(context)[-self.context_turns:] if self.context_turns else []
        with self._lock, self.backend.lock:  # the backend's lock: other engines may share it
            prepared = self.prepare(tools)
            backend = self.backend
            ident = {"model": backend.model_id, "adapter": backend.adapter_id, "backend": backend.name}

            def elapsed() -> float:
                return (time.perf_counter() - started) * 1000

            if not text:
                return RoutingDecision(confidence=1.0, no_tool_score=1.0, raw=NO_TOOL, latency_ms=elapsed(),
                                       notes=["empty message: no tool needed"], **ident)
            room = self._user_room(prepared)
            cut: list[str] = []
            if self.max_user_tokens:
                text, cut = bound_text(text, CHARS_PER_TOKEN * room)
            try:
                user = self.codec.fit_user_turn(text, context, room)
                user.notes[:0] = cut
                return self._decision(prepared, user, use_cache, elapsed, ident)
            except Exception as exc:  # a model fault must not take the caller down
                return RoutingDecision(valid=False, error=f"backend error: {exc}", latency_ms=elapsed(),
                                       notes=prepared.notes, **ident)

    def prefetch(self, tools: Iterable[Any], context: Sequence[PastTurn]) -> int:
        """Evaluate a conversation's tool block and earlier turns before its next message
        arrives, so that :meth:`route` then reads only the message (on backends that keep
        states: llama.cpp). Returns the tokens evaluated. Call it when a turn is over (its
        tools ran, its reply is out) with the turns so far; what ``route`` would cut or drop
        is cut or dropped alike, and a state that does not match is simply not used."""
        tools = list(tools)
        context = list(context)[-self.context_turns:] if self.context_turns else []
        if not context:
            return 0  # the tool block alone is cached already
        with self._lock, self.backend.lock:
            prepared = self.prepare(tools)
            room = self._user_room(prepared)
            # What any next message shares: the user turn up to where two different messages part.
            try:
                a = self.codec.fit_user_turn("a", context, room).ids
                b = self.codec.fit_user_turn("b", context, room).ids
            except ValueError:
                return 0
            shared = a[: common_prefix(a, b)]
            return self.backend.prefill(prepared.prefix, shared)

    def _user_room(self, prepared: Prepared) -> int:
        """Tokens the user turn may take: the window less the tool block and the answer, within
        ``max_user_tokens``."""
        room = self.backend.n_ctx - len(prepared.prefix) - self._answer_reserve(prepared.specs)
        return min(room, self.max_user_tokens) if self.max_user_tokens else room

    def _answer_reserve(self, specs: Sequence[ToolSpec]) -> int:
        """Tokens kept free after the user turn: the verdict marks."""
        return len(self.codec.segment(specs).ids) + 1

    def _decision(self, prepared: Prepared, user: UserTurn, use_cache: bool, elapsed: Any,
                  ident: dict[str, Any]) -> RoutingDecision:
        codec = self.codec
        v = read_verdicts(self.backend, codec, prepared.prefix, user.ids, codec.segment(prepared.specs),
                          use_cache=use_cache)
        rule = self.rule if self.rule.max_tools <= self.max_tools else VerdictRule(
            self.rule.top_threshold, self.rule.extra_threshold, self.max_tools)
        chosen = rule.select(v.tools)
        names = [prepared.specs[i].name for i in chosen]
        return RoutingDecision(
            tool_calls=[ToolCall(name=n) for n in names],
            confidence=confidence(v, chosen),
            scores={s.name: round(p, 6) for s, p in zip(prepared.specs, v.tools, strict=False)},
            no_tool_score=round(v.no_tool_score, 6),
            latency_ms=elapsed(),
            raw=",".join(names) or NO_TOOL,
            notes=prepared.notes + user.notes,
            context_turns=user.context_turns,
            **ident,
        )

    def swap_backend(self, backend: Backend) -> Backend:
        """Replace the model; calls in flight finish on the old one. Returns the old backend."""
        with self._lock:
            old, self.backend = self.backend, backend
            self.codec = PromptCodec(backend)
            self._prepared.clear()
        return old

    def close(self) -> None:
        """Give back the model (once: a shared model is freed when its last holder closes)."""
        with self._lock:
            if not getattr(self, "_closed", False):
                self._closed = True
                self.backend.close()


def bound_text(text: str, limit: int) -> tuple[str, list[str]]:
    """``text`` cut to ``limit`` characters (its start and end kept) before it is tokenized, so
    a huge message costs no more than one that fills the window; and the note saying so."""
    if len(text) <= limit:
        return text, []
    head = (2 * limit) // 3
    cut = text[:head] + "…" + text[len(text) - (limit - head - 1):]
    return cut, [f"message cut from {len(text)} to {limit} characters before tokenizing"]
