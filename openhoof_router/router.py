"""ToolRouter: the local router as a LangChain Runnable that can delegate to a reasoner.

::

    router = ToolRouter(tools, mode="narrow", reasoner=ChatOpenAI(base_url=..., model="qwen3:8b"))
    reply = (prompt | router).invoke({"question": "Check disk space on the server"})

Modes (chosen at construction):

``route``
    return the :class:`~openhoof_router.records.RoutingDecision` only.
``narrow``
    bind only the selected tools to the reasoner (``bind_tools``) and return its reply.
``hint``
    bind all tools and add a one-line system hint naming the router's choice.

In every mode a decision that is invalid, or less confident than its threshold, is a
*fallback*: the reasoner gets all tools (no hint) and the log says so. A "no tool"
decision that passes its threshold sends the turn to the reasoner without tools.

Every decision is appended to ``training_data.jsonl`` (see :mod:`openhoof_router.logs`) and
announced to callbacks as the custom event ``openhoof_decision``, which
:class:`~openhoof_router.callbacks.OutcomeCallbackHandler` uses to tie tool outcomes to it.
The router follows promoted runs without a restart (:mod:`openhoof_router.reload`).
"""

from __future__ import annotations

import logging
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, AsyncIterator, Callable, Iterator, Literal, Mapping, Sequence

from langchain_core.callbacks import adispatch_custom_event, dispatch_custom_event
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import BaseMessage, HumanMessage, SystemMessage, convert_to_messages
from langchain_core.prompt_values import PromptValue
from langchain_core.runnables import Runnable, RunnableConfig
from langchain_core.runnables.config import patch_config, run_in_executor
from langchain_core.tools import BaseTool

from .backends import Backend, load_backend
from .callbacks import DECISION_EVENT, OutcomeCallbackHandler
from .engine import RouterEngine
from .logs import DEFAULT_MAX_MESSAGE_CHARS, DecisionLog, OutcomeLog, resolve_paths
from .paths import Paths
from .prompt import NO_TOOL
from .records import OutcomeRecord, RoutingDecision
from .registry import ModelRegistry
from .reload import HotReloader, probe_backend
from .tools import ToolError, ToolSpec, normalize_tools

logger = logging.getLogger(__name__)

Mode = Literal["route", "narrow", "hint"]
MODES: tuple[str, ...] = ("route", "narrow", "hint")
DEFAULT_THRESHOLD = 0.5
DEFAULT_HINT = (
    "Tool router hint: this request most likely needs {tools} (router confidence "
    "{confidence:.2f}). All tools stay available; use your own judgement."
)
METADATA_KEY = "openhoof_router"
"""Key of the routing summary in a delegated reply's ``response_metadata``."""

_UNSET: Any = object()


# -- input ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Turn:
    """A router input read into the conversation and the text to route on."""

    messages: list[BaseMessage]
    text: str
    """The latest human turn's text."""
    tools: Sequence[Any] | None = None
    """Tools given with the input (a dict's ``tools``), overriding the router's own."""


def parse_turn(value: Any) -> Turn:
    """Read a string, message, message list, prompt value or dict into a :class:`Turn`.

    Dicts: ``{"messages": [...]}`` or ``{"input": str | message, "chat_history": [...]}``,
    optionally with ``"tools"``. Raises ``ValueError`` when there is no human turn.
    """
    tools = None
    if isinstance(value, str):
        messages: list[BaseMessage] = [HumanMessage(content=value)]
    elif isinstance(value, BaseMessage):
        messages = [value]
    elif isinstance(value, PromptValue):
        messages = value.to_messages()
    elif isinstance(value, Mapping):
        tools = value.get("tools")
        if value.get("messages") is not None:
            messages = convert_to_messages(value["messages"])
        elif value.get("input") is not None:
            history = value.get("chat_history") or value.get("history") or []
            current = value["input"]
            current = [current] if isinstance(current, (str, BaseMessage, tuple, dict)) else current
            messages = convert_to_messages([*history, *current])
        else:
            raise ValueError("a dict input needs 'messages' or 'input'")
    elif isinstance(value, Sequence):
        messages = convert_to_messages(value)
    else:
        raise TypeError(f"cannot route on a {type(value).__name__}: give a string, messages or a dict")
    for message in reversed(messages):
        if isinstance(message, HumanMessage):
            return Turn(messages, message.text, tools)
    raise ValueError("the input holds no human turn to route on")


def decision_info(message: BaseMessage) -> dict[str, Any] | None:
    """The routing summary a delegating ToolRouter put on its reply (decision id, tools, ...)."""
    return (getattr(message, "response_metadata", None) or {}).get(METADATA_KEY)


# -- tools ------------------------------------------------------------------------------

@dataclass(frozen=True)
class ToolSet:
    """A validated tool list: specs for the router, originals for ``bind_tools``."""

    specs: tuple[ToolSpec, ...]
    bindable: dict[str, Any]

    @classmethod
    def build(cls, tools: Sequence[Any]) -> "ToolSet":
        tools = list(tools)
        specs = tuple(normalize_tools(tools))
        bindable = {}
        for tool, spec in zip(tools, specs):
            # LangChain tools and OpenAI dicts bind as given; names / ToolSpecs as schemas.
            bindable[spec.name] = tool if isinstance(tool, (BaseTool, dict)) else spec.openai_schema()
        return cls(specs, bindable)

    @property
    def names(self) -> list[str]:
        return [s.name for s in self.specs]

    def pick(self, names: Sequence[str]) -> list[Any]:
        return [self.bindable[n] for n in names]


# -- the router -------------------------------------------------------------------------

def _startup_engine(
    registry: ModelRegistry, load: Callable[[Path | None], Backend], model: Any, max_tools: int
) -> tuple[RouterEngine, str | None, str | None]:
    """(engine, run it serves, why a promoted run was refused) for a router loading its own model.

    ``model`` None: the promoted run, probed like a hot reload; a broken one must not stop
    the service, so the base model serves and the refusal is reported.
    """
    if model is not None:
        return RouterEngine(load(None if model == "base" else Path(model)), max_tools=max_tools), None, None
    info = registry.latest() or {}
    promoted = Path(info["path"]) if info.get("path") else None
    if promoted is None or not promoted.is_dir():
        return RouterEngine(load(None), max_tools=max_tools), None, None
    try:
        backend = load(promoted)
        try:
            probe_backend(backend, max_tools=max_tools)
        except Exception:
            backend.close()
            raise
        return RouterEngine(backend, max_tools=max_tools), info.get("run_id"), None
    except Exception as exc:
        error = f"refused run {info.get('run_id')!r} at startup: {exc}"
        logger.warning("openhoof-router %s; serving the base model", error)
        return RouterEngine(load(None), max_tools=max_tools), None, error


class ToolRouter(Runnable[Any, Any]):
    """The local tool router as a LangChain Runnable (see the module docs for the modes).

    Args:
        tools: the tools to route over: LangChain ``BaseTool``s or OpenAI function schemas
            (a dict input's ``"tools"`` overrides them per call). May be omitted when tools
            come with every call (the agent middleware does that).
        mode: ``"route"``, ``"narrow"`` or ``"hint"``.
        reasoner: the chat model turns are delegated to (``narrow`` / ``hint``); default
            :func:`~openhoof_router.integrations.reasoner.openai_compatible_reasoner`
            (Qwen3-8B behind an OpenAI-compatible endpoint, from ``OPENHOOF_REASONER_*``).
        threshold: minimum confidence to follow a decision; below it the turn falls back
            to all tools. ``0`` follows every valid decision, ``> 1`` never does.
        tool_thresholds: per-tool thresholds (``"none"`` for the no-tool answer); a decision
            must reach the highest threshold among its tools.
        engine: an existing :class:`RouterEngine` to use (not closed by :meth:`close`).
        model: a run folder / GGUF to serve, ``"base"`` for the base model alone; default:
            the promoted ``latest`` run, else the base model.
        base_model, backend, n_threads, max_tools: passed to the model loader.
        paths, home, data_dir, models_dir: where logs and models live (``Paths.resolve``).
        log_decisions: append decisions to ``training_data.jsonl``.
        max_logged_chars: cap on the logged message (``None``: no cap).
        hot_reload: follow promotions of ``latest``; default on unless ``engine`` or
            ``model`` pins the model.
        reload_interval: seconds between pointer checks.
        reload_in_background: load new runs on a background thread (callers never wait).
        hint_template: ``hint`` mode's system text (``{tools}``, ``{confidence}``).
        force_tool: in ``narrow`` mode, when exactly one tool is selected, require the
            reasoner to call it (``tool_choice``).
        bind_tools_kwargs: extra arguments for the reasoner's ``bind_tools``.
        name: the run name in traces.

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
        threshold: float = DEFAULT_THRESHOLD,
        tool_thresholds: Mapping[str, float] | None = None,
        engine: RouterEngine | None = None,
        model: str | os.PathLike[str] | None = None,
        base_model: Any = None,
        backend: str = "auto",
        n_threads: int | None = None,
        max_tools: int = 3,
        paths: Paths | None = None,
        home: str | os.PathLike[str] | None = None,
        data_dir: str | os.PathLike[str] | None = None,
        models_dir: str | os.PathLike[str] | None = None,
        log_decisions: bool = True,
        max_logged_chars: int | None = DEFAULT_MAX_MESSAGE_CHARS,
        hot_reload: bool | None = None,
        reload_interval: float = 2.0,
        reload_in_background: bool = True,
        hint_template: str = DEFAULT_HINT,
        force_tool: bool = False,
        bind_tools_kwargs: Mapping[str, Any] | None = None,
        name: str | None = None,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
        if threshold < 0 or any(v < 0 for v in (tool_thresholds or {}).values()):
            raise ValueError("thresholds must be >= 0")
        self.name = name or "ToolRouter"
        self.mode: Mode = mode
        self.threshold = float(threshold)
        self.tool_thresholds = {k: float(v) for k, v in (tool_thresholds or {}).items()}
        self.hint_template = hint_template
        self.force_tool = force_tool
        self.bind_tools_kwargs = dict(bind_tools_kwargs or {})
        self.toolset = ToolSet.build(tools) if tools is not None else None  # bad lists fail here
        self.paths = resolve_paths(paths or Paths.resolve(home=home, models_dir=models_dir), data_dir)
        self.decision_log = DecisionLog(self.paths, enabled=log_decisions, max_message_chars=max_logged_chars)
        self._outcome_log: OutcomeLog | None = None
        if mode != "route" and reasoner is None:
            from .integrations.reasoner import openai_compatible_reasoner

            reasoner = openai_compatible_reasoner()
        self.reasoner = reasoner
        self.registry = ModelRegistry(self.paths)
        self._toolsets: OrderedDict[tuple[int, ...], tuple[tuple[Any, ...], ToolSet]] = OrderedDict()
        self._bound: dict[tuple[Any, ...], tuple[tuple[Any, ...], Runnable]] = {}
        self._cache_lock = threading.Lock()

        pinned = engine is not None or model is not None
        follow = (not pinned) if hot_reload is None else hot_reload
        stamp = self.registry.pointer_stamp()  # before loading: a promotion meanwhile is seen later
        kind = engine.backend.name if engine is not None and backend == "auto" else backend

        def load(target: Path | None) -> Backend:
            return load_backend(kind, base_model=base_model, model=target, n_threads=n_threads, paths=self.paths)

        self._owns_engine = engine is None
        startup_error, current_run = None, None
        if engine is None:
            engine, current_run, startup_error = _startup_engine(self.registry, load, model, max_tools)
        self.engine = engine
        self.reloader: HotReloader | None = None
        if follow:
            self.reloader = HotReloader(engine, self.registry, load, interval=reload_interval,
                                        background=reload_in_background, current_run=current_run,
                                        stamp=stamp)
            self.reloader.last_error = startup_error
        self._startup_error = startup_error

    # -- plain API ---------------------------------------------------------------------
    @property
    def last_reload_error(self) -> str | None:
        """Why the latest promoted run was refused (None when it serves, or nothing was refused)."""
        return self.reloader.last_error if self.reloader else self._startup_error

    @property
    def outcome_log(self) -> OutcomeLog:
        if self._outcome_log is None:
            self._outcome_log = OutcomeLog(self.paths)
        return self._outcome_log

    def outcome_callback(self, **kwargs: Any) -> OutcomeCallbackHandler:
        """A callback handler that logs tool outcomes into this router's data folder."""
        return OutcomeCallbackHandler(self.outcome_log, **kwargs)

    def required_confidence(self, decision: RoutingDecision) -> float:
        """The threshold ``decision`` must reach: the highest among its tools' thresholds."""
        names = decision.tool_names or [NO_TOOL]
        return max(self.tool_thresholds.get(n, self.threshold) for n in names)

    def _judge(self, decision: RoutingDecision) -> float:
        required = self.required_confidence(decision)
        if not decision.valid:
            decision.fallback, decision.fallback_reason = True, "invalid"
        elif decision.confidence < required:
            decision.fallback, decision.fallback_reason = True, "low_confidence"
        return required

    def _toolset(self, tools: Sequence[Any] | ToolSet | None) -> ToolSet:
        if isinstance(tools, ToolSet):
            return tools
        if tools is None:
            if self.toolset is None:
                raise ToolError("no tools to route over: give them to ToolRouter(...) or with the input")
            return self.toolset
        tools = tuple(tools)
        key = tuple(id(t) for t in tools)
        with self._cache_lock:
            hit = self._toolsets.get(key)
            if hit is not None and all(a is b for a, b in zip(hit[0], tools)):
                return hit[1]
        built = ToolSet.build(tools)
        with self._cache_lock:
            self._toolsets[key] = (tools, built)  # holding the tools keeps their ids unique
            while len(self._toolsets) > 16:
                self._toolsets.popitem(last=False)
        return built

    def decide(self, message: str, tools: Sequence[Any] | ToolSet | None = None, *,
               mode: str | None = None) -> RoutingDecision:
        """Route ``message``, apply the thresholds, log the decision and return it.

        ``decision.fallback`` tells the caller to offer all tools. Raises ``ToolError`` for
        a bad tool list; model trouble comes back as an invalid (fallback) decision.
        """
        toolset = self._toolset(tools)
        if self.reloader is not None:
            self.reloader.poll()
        decision = self.engine.route(message, toolset.specs)
        required = self._judge(decision)
        self.decision_log.record(decision, message, toolset.specs, mode=mode or self.mode,
                                 threshold=required)
        return decision

    def confirm(self, decision_id: str, detail: str | None = None) -> OutcomeRecord:
        """Explicit feedback: the decision was right."""
        return self.outcome_log.confirm(decision_id, detail)

    def correct(self, decision_id: str, tools: Sequence[str], detail: str | None = None) -> OutcomeRecord:
        """Explicit feedback: the right tool set was ``tools`` ([] = no tool was needed)."""
        if self.toolset is not None:
            unknown = [t for t in tools if t not in self.toolset.bindable and t.lower() != NO_TOOL]
            if unknown:
                raise ToolError(f"correction names tools the router does not offer: {unknown}")
        return self.outcome_log.correct(decision_id, tools, detail)

    def reload(self) -> bool:
        """Check the ``latest`` pointer now and swap in a new run synchronously."""
        if self.reloader is None:
            raise RuntimeError("hot reload is off for this router (hot_reload=False)")
        return self.reloader.check()

    def close(self) -> None:
        if self.reloader is not None:
            self.reloader.wait(30)
        if self._owns_engine:
            self.engine.close()

    # -- delegation --------------------------------------------------------------------
    def _bind(self, names: Sequence[str], toolset: ToolSet, tool_choice: str | None = None) -> Runnable:
        assert self.reasoner is not None
        picked = tuple(toolset.pick(names))
        key = (tuple(id(t) for t in picked), tool_choice)
        with self._cache_lock:
            hit = self._bound.get(key)
        if hit is not None and all(a is b for a, b in zip(hit[0], picked)):
            return hit[1]
        kwargs = dict(self.bind_tools_kwargs)
        if tool_choice:
            kwargs["tool_choice"] = tool_choice
        bound = self.reasoner.bind_tools(list(picked), **kwargs)
        with self._cache_lock:
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

    def _summary(self, decision: RoutingDecision, sent: list[str]) -> dict[str, Any]:
        return {
            "decision_id": decision.decision_id,
            "mode": self.mode,
            "selected": decision.tool_names,
            "sent_tools": sent,
            "confidence": decision.confidence,
            "fallback": decision.fallback,
            "fallback_reason": decision.fallback_reason,
            "adapter": decision.adapter,
        }

    def _event(self, decision: RoutingDecision) -> dict[str, Any]:
        return {"decision_id": decision.decision_id, "tools": decision.tool_names,
                "fallback": decision.fallback, "confidence": decision.confidence, "mode": self.mode}

    @staticmethod
    def _annotate(message: Any, summary: dict[str, Any]) -> Any:
        if isinstance(message, BaseMessage):
            message.response_metadata[METADATA_KEY] = summary
        return message

    # -- Runnable ----------------------------------------------------------------------
    def invoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        return self._call_with_config(self._invoke, input, config)

    def _invoke(self, input: Any, run_manager: Any, config: RunnableConfig) -> Any:
        child = patch_config(config, callbacks=run_manager.get_child())
        turn = parse_turn(input)
        toolset = self._toolset(turn.tools)
        decision = self.decide(turn.text, toolset)
        dispatch_custom_event(DECISION_EVENT, self._event(decision), config=child)
        if self.mode == "route":
            return decision
        model, messages, sent = self.plan(decision, turn.messages, toolset)
        # The decision is logged already: a reasoner that is down raises to the caller here.
        return self._annotate(model.invoke(messages, child), self._summary(decision, sent))

    async def ainvoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        return await self._acall_with_config(self._ainvoke, input, config)

    async def _ainvoke(self, input: Any, run_manager: Any, config: RunnableConfig) -> Any:
        child = patch_config(config, callbacks=run_manager.get_child())
        turn = parse_turn(input)
        toolset = self._toolset(turn.tools)
        decision = await run_in_executor(child, self.decide, turn.text, toolset)
        await adispatch_custom_event(DECISION_EVENT, self._event(decision), config=child)
        if self.mode == "route":
            return decision
        model, messages, sent = self.plan(decision, turn.messages, toolset)
        return self._annotate(await model.ainvoke(messages, child), self._summary(decision, sent))

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
        turn = parse_turn(self._merge_inputs(list(inputs)))
        toolset = self._toolset(turn.tools)
        decision = self.decide(turn.text, toolset)
        dispatch_custom_event(DECISION_EVENT, self._event(decision), config=config)
        if self.mode == "route":
            yield decision
            return
        model, messages, sent = self.plan(decision, turn.messages, toolset)
        summary = self._summary(decision, sent)
        for i, chunk in enumerate(model.stream(messages, config)):
            # Only the first chunk carries the summary: chunk addition would merge copies.
            yield self._annotate(chunk, summary) if i == 0 else chunk

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
        turn = parse_turn(self._merge_inputs([c async for c in inputs]))
        toolset = self._toolset(turn.tools)
        decision = await run_in_executor(config, self.decide, turn.text, toolset)
        await adispatch_custom_event(DECISION_EVENT, self._event(decision), config=config)
        if self.mode == "route":
            yield decision
            return
        model, messages, sent = self.plan(decision, turn.messages, toolset)
        summary = self._summary(decision, sent)
        i = 0
        async for chunk in model.astream(messages, config):
            yield self._annotate(chunk, summary) if i == 0 else chunk
            i += 1

    def __repr__(self) -> str:
        names = self.toolset.names if self.toolset else "per call"
        return f"ToolRouter(mode={self.mode!r}, threshold={self.threshold}, tools={names})"


__all__ = ["DEFAULT_HINT", "METADATA_KEY", "MODES", "Mode", "ToolRouter", "ToolSet", "Turn",
           "decision_info", "parse_turn"]
