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
the reasoner gets all tools (no hint) and the log says so. A "no tool" decision that
passes its threshold sends the turn to the reasoner without tools.

The router reads the conversation (the latest human message and up to three earlier
turns, with the tools they called) and routes each human turn **once**: later calls
in the same turn (an agent calling the model again after each tool result) reuse the
decision, so the log holds one line per human turn. Each decision is a child run
(``openhoof_route``) in the callback tree, and a delegated reply carries the decision id
and scores in ``response_metadata["openhoof_router"]`` (:func:`decision_info`). Policy,
logs and hot reload live in :class:`~openhoof_router.serving.service.RouterService`; this class
only adapts it to LangChain.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, AsyncIterator, Iterator, Literal, Mapping, Sequence

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import BaseMessage, SystemMessage
from langchain_core.runnables import Runnable, RunnableConfig
from langchain_core.runnables.config import patch_config, run_in_executor
from langchain_core.tools import BaseTool

from openhoof_router.langchain.tracing import OutcomeCallbackHandler, atrace_decision, trace_decision
from openhoof_router.langchain.conversation import Turn, parse_turn
from openhoof_router.core.records import OutcomeRecord, RoutingDecision
from openhoof_router.serving.service import RouterService
from openhoof_router.core.tools import ToolError, ToolSpec, normalize_tools

Mode = Literal["route", "narrow", "hint"]
MODES: tuple[str, ...] = ("route", "narrow", "hint")
DEFAULT_HINT = (
    "Tool router hint: this request most likely needs {tools} (router confidence "
    "{confidence:.2f}). All tools stay available; use your own judgement."
)
METADATA_KEY = "openhoof_router"
"""Key of the routing summary in a delegated reply's ``response_metadata``."""

_UNSET: Any = object()


def decision_info(message: BaseMessage) -> dict[str, Any] | None:
    """The routing summary a router put on a reply (decision id, tools, scores, ...)."""
    return (getattr(message, "response_metadata", None) or {}).get(METADATA_KEY)


def summary(decision: RoutingDecision, mode: str, sent: Sequence[str]) -> dict[str, Any]:
    """The routing summary put on replies (``response_metadata["openhoof_router"]``)."""
    return {
        "decision_id": decision.decision_id,
        "mode": mode,
        "selected": decision.tool_names,
        "sent_tools": list(sent),
        "scores": decision.scores,
        "no_tool_score": decision.no_tool_score,
        "confidence": decision.confidence,
        "fallback": decision.fallback,
        "fallback_reason": decision.fallback_reason,
        "adapter": decision.adapter,
    }


def annotate(message: Any, info: dict[str, Any]) -> Any:
    if isinstance(message, BaseMessage):
        message.response_metadata[METADATA_KEY] = info
    return message


@dataclass(frozen=True)
class ToolSet:
    """A validated tool list: specs for the router, originals for ``bind_tools``."""

    specs: tuple[ToolSpec, ...]
    bindable: dict[str, Any]

    @classmethod
    def build(cls, tools: Sequence[Any]) -> "ToolSet":
        tools = list(tools)
        specs = tuple(normalize_tools(tools))
        # LangChain tools and OpenAI dicts bind as given; names / ToolSpecs as schemas.
        bindable = {spec.name: tool if isinstance(tool, (BaseTool, dict)) else spec.openai_schema()
                    for tool, spec in zip(tools, specs)}
        return cls(specs, bindable)

    @property
    def names(self) -> list[str]:
        return [s.name for s in self.specs]

    def pick(self, names: Sequence[str]) -> list[Any]:
        return [self.bindable[n] for n in names]


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
        service_options: for the router's own :class:`RouterService` (``model``,
            ``threshold``, ``tool_thresholds``, ``data_dir``, ``engine``, ``hot_reload``, ...).

    Raises:
        ToolError: the tool list cannot be routed over.
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
        **service_options: Any,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
        if service is not None and service_options:
            raise TypeError("pass a service or service options, not both")
        self.name = name or "ToolRouter"
        self.mode: Mode = mode
        self.hint_template = hint_template
        self.force_tool = force_tool
        self.bind_tools_kwargs = dict(bind_tools_kwargs or {})
        self.toolset = ToolSet.build(tools) if tools is not None else None  # bad lists fail here
        if mode != "route" and reasoner is None:
            from openhoof_router.langchain.reasoner import openai_compatible_reasoner

            reasoner = openai_compatible_reasoner()
        self.reasoner = reasoner
        self._owns_service = service is None
        self.service = service or RouterService(**service_options)
        self._toolsets: dict[tuple[int, ...], tuple[tuple[Any, ...], ToolSet]] = {}
        self._bound: dict[tuple[Any, ...], tuple[tuple[Any, ...], Runnable]] = {}

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
        tools = tuple(tools)
        key = tuple(id(t) for t in tools)
        hit = self._toolsets.get(key)
        if hit is not None and all(a is b for a, b in zip(hit[0], tools)):
            return hit[1]
        built = ToolSet.build(tools)
        if len(self._toolsets) > 16:
            self._toolsets.clear()
        self._toolsets[key] = (tools, built)  # holding the tools keeps their ids unique
        return built

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
    def _bind(self, names: Sequence[str], toolset: ToolSet, tool_choice: str | None = None) -> Runnable:
        assert self.reasoner is not None
        picked = tuple(toolset.pick(names))
        key = (tuple(id(t) for t in picked), tool_choice)
        hit = self._bound.get(key)
        if hit is not None and all(a is b for a, b in zip(hit[0], picked)):
            return hit[1]
        kwargs = dict(self.bind_tools_kwargs)
        if tool_choice:
            kwargs["tool_choice"] = tool_choice
        bound = self.reasoner.bind_tools(list(picked), **kwargs)
        if len(self._bound) > 64:
            self._bound.clear()
        self._bound[key] = (picked, bound)  # the tools kept alive keep their ids unique
        return bound

    def _hinted(self, messages: list[BaseMessage], decision: RoutingDecision) -> list[BaseMessage]:
        hint = self.hint_template.format(tools=", ".join(decision.tool_names), confidence=decision.confidence)
        # One system message, first: several chat templates (Qwen's among them) reject others.
        if messages and isinstance(messages[0], SystemMessage) and isinstance(messages[0].content, str):
            return [SystemMessage(content=f"{messages[0].content}\n\n{hint}"), *messages[1:]]
        return [SystemMessage(content=hint), *messages]

    def plan(self, decision: RoutingDecision, messages: list[BaseMessage],
             toolset: ToolSet) -> tuple[Runnable, list[BaseMessage], list[str]]:
        """What the reasoner gets for ``decision``: (model, messages, names of tools sent)."""
        if self.reasoner is None:
            raise RuntimeError("this router has no reasoner (mode='route')")
        if decision.fallback:
            return self._bind(toolset.names, toolset), messages, toolset.names
        if not decision.tool_calls:
            return self.reasoner, messages, []
        if self.mode == "hint":
            return self._bind(toolset.names, toolset), self._hinted(messages, decision), toolset.names
        names = decision.tool_names
        choice = names[0] if self.force_tool and len(names) == 1 else None
        return self._bind(names, toolset, choice), messages, names

    # -- Runnable ----------------------------------------------------------------------
    # Each path: read the turn, route it (once per human turn), record the decision as a
    # child run, then return it (route mode) or delegate to the reasoner.
    def invoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        return self._call_with_config(self._invoke, input, config)

    def _invoke(self, input: Any, run_manager: Any, config: RunnableConfig) -> Any:
        child = patch_config(config, callbacks=run_manager.get_child())
        decision, toolset, turn = self._routed(input)
        trace_decision(decision, child, self.mode)
        if self.mode == "route":
            return decision
        model, messages, sent = self.plan(decision, turn.messages, toolset)
        # The decision is logged already: a reasoner that is down raises to the caller here.
        return annotate(model.invoke(messages, child), summary(decision, self.mode, sent))

    async def ainvoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        return await self._acall_with_config(self._ainvoke, input, config)

    async def _ainvoke(self, input: Any, run_manager: Any, config: RunnableConfig) -> Any:
        child = patch_config(config, callbacks=run_manager.get_child())
        decision, toolset, turn = await run_in_executor(child, self._routed, input)
        await atrace_decision(decision, child, self.mode)
        if self.mode == "route":
            return decision
        model, messages, sent = self.plan(decision, turn.messages, toolset)
        return annotate(await model.ainvoke(messages, child), summary(decision, self.mode, sent))

    def _routed(self, input: Any) -> tuple[RoutingDecision, ToolSet, Turn]:
        turn = parse_turn(input, self.service.engine.context_turns)
        decision, toolset = self.route_turn(turn)
        return decision, toolset, turn

    @staticmethod
    def _merge_inputs(chunks: Sequence[Any]) -> Any:
        final = _UNSET
        for chunk in chunks:
            if final is _UNSET:
                final = chunk
            else:
                try:
                    final = final + chunk
                except TypeError:
                    final = chunk
        if final is _UNSET:
            raise ValueError("ToolRouter received no input")
        return final

    def transform(self, input: Iterator[Any], config: RunnableConfig | None = None, **kwargs: Any) -> Iterator[Any]:
        yield from self._transform_stream_with_config(input, self._transform, config)

    def stream(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Iterator[Any]:
        """Streams the reasoner's reply chunk by chunk (``route`` mode: the decision)."""
        yield from self.transform(iter([input]), config, **kwargs)

    def _transform(self, inputs: Iterator[Any], run_manager: Any, config: RunnableConfig) -> Iterator[Any]:
        decision, toolset, turn = self._routed(self._merge_inputs(list(inputs)))
        trace_decision(decision, config, self.mode)
        if self.mode == "route":
            yield decision
            return
        model, messages, sent = self.plan(decision, turn.messages, toolset)
        info = summary(decision, self.mode, sent)
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
        merged = self._merge_inputs([c async for c in inputs])
        decision, toolset, turn = await run_in_executor(config, self._routed, merged)
        await atrace_decision(decision, config, self.mode)
        if self.mode == "route":
            yield decision
            return
        model, messages, sent = self.plan(decision, turn.messages, toolset)
        info = summary(decision, self.mode, sent)
        i = 0
        async for chunk in model.astream(messages, config):
            yield annotate(chunk, info) if i == 0 else chunk
            i += 1

    def __repr__(self) -> str:
        names = self.toolset.names if self.toolset else "per call"
        return f"ToolRouter(mode={self.mode!r}, threshold={self.service.policy.default}, tools={names})"


__all__ = ["DEFAULT_HINT", "METADATA_KEY", "MODES", "Mode", "ToolRouter", "ToolSet", "annotate",
           "decision_info", "summary"]
