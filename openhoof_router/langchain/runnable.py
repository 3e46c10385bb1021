"""ToolRouter: the local router as a LangChain Runnable that can delegate to a reasoner.

::

    router = ToolRouter(tools, mode="narrow", reasoner=ChatOpenAI(base_url=..., model="qwen3:8b"))
    reply = (prompt | router).invoke({"question": "Check disk space on the server"})

Modes (chosen at construction):

``route``
    return the :class:`~openhoof_router.core.records.RoutingDecision` only.
``narrow``
    bind only the selected tools to the reasoner (``bind_tools``) and return its reply.
``hint``
    bind all tools and add a one-line system hint naming the router's choice.

In every mode a decision that is invalid, or scores below its threshold, is a *fallback*:
the reasoner gets all tools, or on a list of 5 or more the best-scored half of them
(``decision.fallback_tools``; the ``fallback_share`` setting), no hint, and the log says so. A "no tool" decision that
passes its threshold sends the turn to the reasoner without tools.

The router reads the conversation (the latest human message and up to three earlier
turns, with the tools they called) and routes each human turn **once**: later calls
in the same turn (an agent calling the model again after each tool result) reuse the
decision, so the log holds one line per human turn. Each decision is a child run
(``openhoof_route``) in the callback tree, and a delegated reply carries the decision id
and scores in ``response_metadata["openhoof_router"]``
(:func:`~openhoof_router.langchain.tracing.decision_info`). Policy,
logs and hot reload live in :class:`~openhoof_router.serving.service.RouterService`; this class
only adapts it to LangChain.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import BaseMessage
from langchain_core.runnables import Runnable, RunnableConfig
from langchain_core.runnables.config import patch_config, run_in_executor

from openhoof_router.core.engine import RouterEngine
from openhoof_router.core.records import OutcomeRecord, RoutingDecision
from openhoof_router.core.tools import ToolError
from openhoof_router.langchain.conversation import Turn, conversation_id, merge_chunks, parse_turn
from openhoof_router.langchain.delegation import DEFAULT_HINT, MODES, Delegation, Mode
from openhoof_router.langchain.toolset import IdentityCache, ToolSet
from openhoof_router.langchain.tracing import (
    OutcomeCallbackHandler,
    annotate,
    atrace_decision,
    reply_summary,
    trace_decision,
)
from openhoof_router.serving.service import RouterService
from openhoof_router.serving.settings import RouterSettings
from openhoof_router.store.paths import Paths


class ToolRouter(Runnable[Any, Any]):
    """The local tool router as a LangChain Runnable (see the module docs for the modes).

    Args:
        tools: the tools to route over: LangChain ``BaseTool``s or OpenAI function schemas
            (a dict input's ``"tools"`` overrides them per call). May be omitted when tools
            come with every call.
        mode: ``"route"``, ``"narrow"`` or ``"hint"``.
        reasoner: the chat model turns are delegated to (``narrow`` / ``hint``); default
            :func:`~openhoof_router.langchain.reasoner.openai_compatible_reasoner`
            (Qwen3-8B behind an OpenAI-compatible endpoint, from ``OPENHOOF_REASONER_*``).
        service: an existing :class:`RouterService` to share (several routers, one model).
        hint_template: ``hint`` mode's system text (``{tools}``, ``{confidence}``).
        force_tool: in ``narrow`` mode, when exactly one tool is selected, require the
            reasoner to call it (``tool_choice``).
        bind_tools_kwargs: extra arguments for the reasoner's ``bind_tools``.
        name: the run name in traces.
        settings: the router's own service's settings
            (:class:`~openhoof_router.serving.settings.RouterSettings`; default: from the
            ``OPENHOOF_*`` environment variables).
        engine, paths: a :class:`~openhoof_router.core.engine.RouterEngine` to serve with,
            the folders to use (see :class:`RouterService`).
        overrides: settings fields applied over ``settings`` (``model=``, ``threshold=``,
            ``tool_thresholds=``, ``data_dir=``, ``hot_reload=``, ...).

    Raises:
        ToolError: the tool list cannot be routed over.
        TypeError / SettingsError: an unknown setting, or an invalid value.
        LogWriteError: the data folder cannot be written (when logging).
        BackendError / BaseModelError: the model cannot be loaded.
    """

    def __init__(
        self,
        tools: Sequence[Any] | None = None,
        *,
        mode: Mode = "route",
        reasoner: BaseChatModel | None = None,
        service: RouterService | None = None,
        hint_template: str = DEFAULT_HINT,
        force_tool: bool = False,
        bind_tools_kwargs: Mapping[str, Any] | None = None,
        name: str | None = None,
        settings: RouterSettings | None = None,
        engine: RouterEngine | None = None,
        paths: Paths | None = None,
        **overrides: Any,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
        if service is not None and (settings is not None or engine is not None or paths is not None or overrides):
            raise TypeError("pass a service, or settings for a new one, not both")
        # validated here, before a reasoner or a model is set up
        own = None if service is not None else RouterSettings.of(settings, **overrides)
        self.name = name or "ToolRouter"
        self.mode: Mode = mode
        self.toolset = ToolSet.build(tools) if tools is not None else None  # bad lists fail here
        if mode != "route" and reasoner is None:
            from openhoof_router.langchain.reasoner import openai_compatible_reasoner

            reasoner = openai_compatible_reasoner()
        self.delegation = Delegation(reasoner, mode, hint_template=hint_template, force_tool=force_tool,
                                     bind_tools_kwargs=bind_tools_kwargs)
        self._owns_service = service is None
        self.service = service or RouterService(own, engine=engine, paths=paths)
        self._toolsets = IdentityCache(ToolSet.build, size=16)  # tool lists given per call

    # -- plain API ---------------------------------------------------------------------
    @property
    def engine(self) -> Any:
        return self.service.engine

    @property
    def last_reload_error(self) -> str | None:
        return self.service.last_reload_error

    def outcome_callback(self, **kwargs: Any) -> OutcomeCallbackHandler:
        """A callback handler that logs tool outcomes into this router's data folder."""
        return OutcomeCallbackHandler(self.service.outcome_log, **kwargs)

    def _toolset(self, tools: Sequence[Any] | ToolSet | None) -> ToolSet:
        if isinstance(tools, ToolSet):
            return tools
        if tools is None:
            if self.toolset is None:
                raise ToolError("no tools to route over: give them to ToolRouter(...) or with the input")
            return self.toolset
        return self._toolsets.get(tools)

    def decide(self, message: str, tools: Sequence[Any] | ToolSet | None = None, **kwargs: Any) -> RoutingDecision:
        """Route a message (``context=``, ``turn=`` as for :meth:`RouterService.route`)."""
        kwargs.setdefault("mode", self.mode)
        return self.service.route(message, self._toolset(tools).specs, **kwargs)

    def route_turn(self, turn: Turn, mode: str | None = None) -> tuple[RoutingDecision, ToolSet]:
        """Route a parsed human turn (once per turn: see :meth:`RouterService.route`)."""
        toolset = self._toolset(turn.tools)
        decision = self.service.route(turn.text, toolset.specs, context=turn.context, turn=turn.key,
                                      mode=mode or self.mode)
        return decision, toolset

    def confirm(self, decision_id: str, detail: str | None = None) -> OutcomeRecord:
        """Explicit feedback: the decision was right."""
        return self.service.confirm(decision_id, detail)

    def correct(self, decision_id: str, tools: Sequence[str], detail: str | None = None) -> OutcomeRecord:
        """Explicit feedback: the right tool set was ``tools`` ([] = no tool was needed)."""
        return self.service.correct(decision_id, tools, detail,
                                    offered=self.toolset.names if self.toolset is not None else None)

    def reload(self) -> bool:
        """Check the ``latest`` pointer now and swap in a new run synchronously."""
        return self.service.reload()

    def close(self) -> None:
        if self._owns_service:
            self.service.close()

    # -- delegation --------------------------------------------------------------------
    @property
    def reasoner(self) -> BaseChatModel | None:
        return self.delegation.reasoner

    def plan(self, decision: RoutingDecision, messages: list[BaseMessage],
             toolset: ToolSet) -> tuple[Runnable, list[BaseMessage], list[str]]:
        """What the reasoner gets for ``decision``: (model, messages, names of tools sent)."""
        return self.delegation.plan(decision, messages, toolset)

    # -- Runnable ----------------------------------------------------------------------
    # Each path: read the turn, route it (once per human turn), record the decision as a
    # child run, then return it (route mode) or delegate to the reasoner.
    def invoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        return self._call_with_config(self._invoke, input, config)

    def _invoke(self, input: Any, run_manager: Any, config: RunnableConfig) -> Any:
        child = patch_config(config, callbacks=run_manager.get_child())
        decision, toolset, turn = self._routed(input, config)
        trace_decision(decision, child, self.mode)
        if self.mode == "route":
            return decision
        model, messages, sent = self.plan(decision, turn.messages, toolset)
        # The decision is logged already: a reasoner that is down raises to the caller here.
        return annotate(model.invoke(messages, child), reply_summary(decision, self.mode, sent))

    async def ainvoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        return await self._acall_with_config(self._ainvoke, input, config)

    async def _ainvoke(self, input: Any, run_manager: Any, config: RunnableConfig) -> Any:
        child = patch_config(config, callbacks=run_manager.get_child())
        decision, toolset, turn = await run_in_executor(child, self._routed, input, config)
        await atrace_decision(decision, child, self.mode)
        if self.mode == "route":
            return decision
        model, messages, sent = self.plan(decision, turn.messages, toolset)
        return annotate(await model.ainvoke(messages, child), reply_summary(decision, self.mode, sent))

    def _routed(self, input: Any, config: RunnableConfig | None) -> tuple[RoutingDecision, ToolSet, Turn]:
        # The run config names the conversation (a LangGraph thread_id, a session_id), so two
        # conversations that open with the same text are routed and logged apart.
        turn = parse_turn(input, self.service.engine.context_turns, conversation_id(config))
        decision, toolset = self.route_turn(turn)
        return decision, toolset, turn

    def transform(self, input: Iterator[Any], config: RunnableConfig | None = None, **kwargs: Any) -> Iterator[Any]:
        yield from self._transform_stream_with_config(input, self._transform, config)

    def stream(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Iterator[Any]:
        """Streams the reasoner's reply chunk by chunk (``route`` mode: the decision)."""
        yield from self.transform(iter([input]), config, **kwargs)

    def _transform(self, inputs: Iterator[Any], run_manager: Any, config: RunnableConfig) -> Iterator[Any]:
        decision, toolset, turn = self._routed(merge_chunks(list(inputs)), config)
        trace_decision(decision, config, self.mode)
        if self.mode == "route":
            yield decision
            return
        model, messages, sent = self.plan(decision, turn.messages, toolset)
        info = reply_summary(decision, self.mode, sent)
        for i, chunk in enumerate(model.stream(messages, config)):
            # Only the first chunk carries the summary: chunk addition would merge copies.
            yield annotate(chunk, info) if i == 0 else chunk

    async def atransform(self, input: AsyncIterator[Any], config: RunnableConfig | None = None,
                         **kwargs: Any) -> AsyncIterator[Any]:
        async for chunk in self._atransform_stream_with_config(input, self._atransform, config):
            yield chunk

    async def astream(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> AsyncIterator[Any]:
        async def one() -> AsyncIterator[Any]:
            yield input

        async for chunk in self.atransform(one(), config, **kwargs):
            yield chunk

    async def _atransform(self, inputs: AsyncIterator[Any], run_manager: Any,
                          config: RunnableConfig) -> AsyncIterator[Any]:
        merged = merge_chunks([c async for c in inputs])
        decision, toolset, turn = await run_in_executor(config, self._routed, merged, config)
        await atrace_decision(decision, config, self.mode)
        if self.mode == "route":
            yield decision
            return
        model, messages, sent = self.plan(decision, turn.messages, toolset)
        info = reply_summary(decision, self.mode, sent)
        i = 0
        async for chunk in model.astream(messages, config):
            yield annotate(chunk, info) if i == 0 else chunk
            i += 1

    def __repr__(self) -> str:
        names = self.toolset.names if self.toolset else "per call"
        return f"ToolRouter(mode={self.mode!r}, threshold={self.service.policy.default}, tools={names})"


__all__ = ["DEFAULT_HINT", "MODES", "Mode", "ToolRouter"]
