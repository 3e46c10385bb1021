"""Agent middleware: a drop-in for LangChain's ``LLMToolSelectorMiddleware``, done by the local router.

Swapping it in changes the class name only::

    from langchain.agents import create_agent
    from openhoof_router.langchain import ToolRouterMiddleware

    agent = create_agent(
        model=reasoner,
        tools=tools,
        # middleware=[LLMToolSelectorMiddleware(max_tools=3, always_include=["notify"])],
        middleware=[ToolRouterMiddleware(max_tools=3, always_include=["notify"])],
    )

The upstream parameters keep their meaning: ``max_tools`` caps the selection (``None``: no
limit), ``always_include`` tools are passed on, not routed over and not counted, selected
tools keep the request's order, provider tool dicts are kept, and ``on_parsing_failure``
(``"error"``, ``"none"``, ``"all"``, a list of names, or a callable given the decision)
says what happens when the router cannot give a usable selection: an invalid decision,
or one below its threshold. Upstream defaults to ``"error"``; here the default is
``"ranked"`` (an unsure local router should not fail the agent's turn): the decision's
``fallback_tools``, the best-scored half of a list of 5 or more tools (every tool on a
shorter list or an invalid decision; ``fallback_share`` in the settings), as ``narrow`` mode
binds them; ``"all"`` passes every tool.

Parameters that configure upstream's selection *model* have no meaning for a local
router and are never misread: a ``model`` string (``"openai:gpt-4o-mini"``) is an error,
a ``model`` chat model, a ``system_prompt`` or ``max_retries`` a warning.

Unlike upstream, nothing leaves the machine, each human turn is routed once (the model
calls after tool results reuse the decision and nothing more is logged), the router reads
earlier turns of the conversation, each decision is a child run in the trace, and the
reply's ``response_metadata["openhoof_router"]`` holds the decision id and the scores, so
``confirm``/``correct`` can be reached from the agent's output. When a reply ends the turn,
the conversation so far is read on the router's background thread
(:meth:`~openhoof_router.serving.service.RouterService.prefetch`), so the next human turn
reads only its own message (``RouterSettings.prefetch_turns``).
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, Literal

from langchain.agents.middleware.types import AgentMiddleware, ModelRequest, ModelResponse
from langchain_core.messages import AIMessage
from langchain_core.runnables.config import ensure_config, run_in_executor

from openhoof_router.core.records import RoutingDecision
from openhoof_router.core.tools import ToolError
from openhoof_router.langchain.conversation import Turn, conversation_id, finished_turns, read_turn
from openhoof_router.langchain.tracing import annotate, atrace_decision, reply_summary, trace_decision
from openhoof_router.serving.settings import RouterSettings

if TYPE_CHECKING:
    from openhoof_router.langchain.runnable import ToolRouter

logger = logging.getLogger(__name__)

MIDDLEWARE_MODE = "middleware"
OnParsingFailure = Literal["error", "none", "all", "ranked"] | list[str] | Callable[[RoutingDecision], list[str]]
UPSTREAM_SYSTEM_PROMPT = "Your goal is to select the most relevant tools for answering the user's query."


class ToolRouterMiddleware(AgentMiddleware):
    """Selects the tools for each model call of an agent with the local router.

    Args:
        model, system_prompt, max_retries: ``LLMToolSelectorMiddleware``'s; meaningless for a
            local router (see the module docs): a ``model`` string raises ``ValueError``,
            anything else set warns and is ignored.
        max_tools: keep at most this many selected tools (``None``: no limit).
        always_include: tool names always passed on; not routed over, not counted.
        on_parsing_failure: what to pass on when the decision is unusable (see module docs).
        router: the :class:`~openhoof_router.langchain.runnable.ToolRouter` to use (its own tools are
            ignored: the request's are routed over). Default: one built from ``settings``.
        settings: the default router's settings
            (:class:`~openhoof_router.serving.settings.RouterSettings`, e.g.
            ``RouterSettings(model="runs/ID")`` for a trained run; default: from the
            ``OPENHOOF_*`` environment variables).
        overrides: settings fields applied over ``settings`` (``threshold=``,
            ``tool_thresholds=``, ``data_dir=``, ...; ``model`` is upstream's, above).
    """

    def __init__(
        self,
        *,
        model: Any = None,
        system_prompt: str = UPSTREAM_SYSTEM_PROMPT,
        max_tools: int | None = None,
        always_include: list[str] | None = None,
        max_retries: int = 1,
        on_parsing_failure: OnParsingFailure = "ranked",
        router: ToolRouter | None = None,
        settings: RouterSettings | None = None,
        **overrides: Any,
    ) -> None:
        super().__init__()
        if isinstance(model, str):
            raise ValueError(
                f"model={model!r} names a chat model for LLMToolSelectorMiddleware's selection; "
                "ToolRouterMiddleware selects with its local router and never calls a chat model. "
                "Drop model= (a trained router run goes in settings=RouterSettings(model=...) or OPENHOOF_MODEL)."
            )
        ignored = [name for name, value, default in (("model", model, None), ("system_prompt", system_prompt,
                   UPSTREAM_SYSTEM_PROMPT), ("max_retries", max_retries, 1)) if value != default]
        if ignored:
            warnings.warn(f"ToolRouterMiddleware ignores {', '.join(ignored)}: they configure "
                          "LLMToolSelectorMiddleware's selection model; the local router has none",
                          UserWarning, stacklevel=2)
        if max_tools is not None and max_tools < 1:
            raise ValueError("max_tools must be at least 1 (None: no limit)")
        if max_retries < 0:
            raise ValueError("max_retries must be >= 0")
        if not (on_parsing_failure in ("error", "none", "all", "ranked") or isinstance(on_parsing_failure, list)
                or callable(on_parsing_failure)):
            raise ValueError("on_parsing_failure must be 'error', 'none', 'all', 'ranked', a list of tool names "
                             "or a callable")
        if router is None:
            from openhoof_router.langchain.runnable import ToolRouter

            router = ToolRouter(mode="route", settings=RouterSettings.of(settings, **overrides))
        elif settings is not None or overrides:
            raise TypeError("pass router settings or a router, not both")
        self.router = router
        self.max_tools = max_tools
        self.always_include = list(always_include or [])
        self.on_parsing_failure = on_parsing_failure

    # -- selection (shared by sync and async) ------------------------------------------
    def _split(self, request: ModelRequest) -> tuple[list[Any], Turn] | None:
        """(routable tools, the human turn), or None when there is nothing to select."""
        if not request.tools:
            return None
        base = [t for t in request.tools if not isinstance(t, dict)]
        names = {t.name for t in base}
        missing = [n for n in self.always_include if n not in names]
        if missing:
            raise ValueError(f"Tools in always_include not found in request: {missing}. "
                             f"Available tools: {sorted(names)}")
        routable = [t for t in base if t.name not in self.always_include]
        if not routable:
            return None
        try:
            # The agent's run config names the conversation (LangGraph's thread_id), if any.
            turn = read_turn(request.messages, routable, self.router.service.engine.context_turns,
                             conversation_id(ensure_config()))
        except ValueError:
            return None  # no human turn: nothing to route on
        return routable, turn

    def _decide(self, routable: list[Any], turn: Turn) -> RoutingDecision | None:
        try:
            decision, _ = self.router.route_turn(turn, MIDDLEWARE_MODE)
        except ToolError as exc:  # tools the router cannot read: the agent keeps all of them
            logger.warning("ToolRouterMiddleware cannot route over these tools (%s); passing all on", exc)
            return None
        return decision

    def _selected(self, decision: RoutingDecision | None, routable: Sequence[Any]) -> list[str]:
        available = [t.name for t in routable]
        if decision is None:
            return available
        if decision.fallback:
            failure = self.on_parsing_failure
            if failure == "error":
                raise ValueError(f"ToolRouterMiddleware: no usable selection ({decision.fallback_reason}: "
                                 f"{decision.error or 'scores below the threshold'}); decision {decision.decision_id}")
            if failure == "none":
                return []
            if failure == "all":
                return available
            if failure == "ranked":
                return decision.fallback_tools or available
            return list(failure(decision) if callable(failure) else failure)
        names = decision.narrow_tools
        return names[: self.max_tools] if self.max_tools is not None else names

    def _narrow(self, request: ModelRequest, decision: RoutingDecision | None,
                routable: Sequence[Any]) -> tuple[ModelRequest, list[str]]:
        chosen = set(self._selected(decision, routable))
        selected = [t for t in routable if t.name in chosen]  # the request's order, like upstream
        kept = [t for t in request.tools if not isinstance(t, dict) and t.name in self.always_include]
        provider = [t for t in request.tools if isinstance(t, dict)]
        sent = [t.name for t in [*selected, *kept]]
        return request.override(tools=[*selected, *kept, *provider]), sent

    @staticmethod
    def _annotate(response: Any, decision: RoutingDecision | None, sent: list[str]) -> Any:
        if decision is not None:
            info = reply_summary(decision, MIDDLEWARE_MODE, sent)
            for message in getattr(response, "result", None) or [response]:
                if isinstance(message, AIMessage):
                    annotate(message, info)
        return response

    def _after_reply(self, request: ModelRequest, response: Any, routable: Sequence[Any]) -> None:
        """A final reply (no tool calls) ends the turn: read the conversation so far now, in the
        background, so the next human turn routes as fast as a first one."""
        service = self.router.service
        replies = [m for m in getattr(response, "result", None) or [response] if isinstance(m, AIMessage)]
        if not service.settings.prefetch_turns or not replies or replies[-1].tool_calls:
            return
        context = finished_turns([*request.messages, replies[-1]], service.engine.context_turns)
        if context:
            service.prefetch(routable, context)

    # -- hooks -------------------------------------------------------------------------
    def wrap_model_call(
        self,
        request: ModelRequest,
        handler: Callable[[ModelRequest], ModelResponse],
    ) -> ModelResponse | AIMessage:
        split = self._split(request)
        if split is None:
            return handler(request)
        routable, turn = split
        decision = self._decide(routable, turn)
        if decision is not None:
            trace_decision(decision, ensure_config(), MIDDLEWARE_MODE)
        narrowed, sent = self._narrow(request, decision, routable)
        response = self._annotate(handler(narrowed), decision, sent)
        self._after_reply(request, response, routable)
        return response

    async def awrap_model_call(
        self,
        request: ModelRequest,
        handler: Callable[[ModelRequest], Awaitable[ModelResponse]],
    ) -> ModelResponse | AIMessage:
        split = self._split(request)
        if split is None:
            return await handler(request)
        routable, turn = split
        config = ensure_config()
        decision = await run_in_executor(config, self._decide, routable, turn)
        if decision is not None:
            await atrace_decision(decision, config, MIDDLEWARE_MODE)
        narrowed, sent = self._narrow(request, decision, routable)
        response = self._annotate(await handler(narrowed), decision, sent)
        self._after_reply(request, response, routable)  # queues work on the router's own thread
        return response
