"""Agent middleware: LangChain's ``LLMToolSelectorMiddleware`` job, done by the local router.

Swapping it in is one line::

    from langchain.agents import create_agent
    from openhoof_router.integrations import ToolRouterMiddleware

    agent = create_agent(
        model=reasoner,
        tools=tools,
        # middleware=[LLMToolSelectorMiddleware(model="openai:gpt-4o-mini", max_tools=3, always_include=["notify"])],
        middleware=[ToolRouterMiddleware(max_tools=3, always_include=["notify"])],
    )

Like the original it narrows ``request.tools`` before each model call (sync and async),
honours ``max_tools`` (``always_include`` tools do not count against it) and keeps
provider tool dicts. Unlike it, nothing leaves the machine, each human turn is routed
once (the model calls that follow tool results reuse the decision), the decision is
logged, and a decision the router is unsure of falls back to all tools instead of failing.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from typing import TYPE_CHECKING, Any, Awaitable, Callable

from langchain.agents.middleware.types import AgentMiddleware, ModelRequest, ModelResponse
from langchain_core.callbacks import adispatch_custom_event, dispatch_custom_event
from langchain_core.messages import AIMessage, HumanMessage
from langchain_core.runnables.config import run_in_executor

from ..callbacks import DECISION_EVENT
from ..records import RoutingDecision
from ..tools import ToolError

if TYPE_CHECKING:
    from ..router import ToolRouter

logger = logging.getLogger(__name__)

MIDDLEWARE_MODE = "middleware"


class ToolRouterMiddleware(AgentMiddleware):
    """Selects the tools for each model call of an agent with the local ToolRouter.

    Args:
        router: the router to use (its own ``tools`` are ignored: the request's are routed
            over). Default: ``ToolRouter(**router_options)``.
        max_tools: keep at most this many selected tools (router order); ``None``: the
            router's own cap (``max_tools`` of the engine, 3 by default).
        always_include: tool names always passed on; not routed over, not counted.
        router_options: arguments for the default ``ToolRouter`` (``threshold``,
            ``tool_thresholds``, ``data_dir``, ``model``, ...).
    """

    def __init__(
        self,
        router: "ToolRouter | None" = None,
        *,
        max_tools: int | None = None,
        always_include: list[str] | None = None,
        cache_size: int = 256,
        **router_options: Any,
    ) -> None:
        super().__init__()
        if max_tools is not None and max_tools < 1:
            raise ValueError("max_tools must be at least 1")
        if router is None:
            from ..router import ToolRouter

            router_options.setdefault("max_tools", max_tools or 3)
            router = ToolRouter(mode="route", **router_options)
        elif router_options:
            raise TypeError("pass router options or a router, not both")
        self.router = router
        self.max_tools = max_tools
        self.always_include = list(always_include or [])
        self._decisions: OrderedDict[tuple[Any, ...], RoutingDecision] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()

    # -- selection (shared by sync and async) ------------------------------------------
    def _split(self, request: ModelRequest) -> tuple[list[Any], list[Any], list[Any]] | None:
        """(routable tools, always-included tools, provider dicts), or None: nothing to do."""
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
        kept = [t for t in base if t.name in self.always_include]
        return routable, kept, [t for t in request.tools if isinstance(t, dict)]

    @staticmethod
    def _last_human(request: ModelRequest) -> HumanMessage | None:
        for message in reversed(request.messages):
            if isinstance(message, HumanMessage):
                return message
        return None

    def _key(self, human: HumanMessage, routable: list[Any]) -> tuple[Any, ...]:
        # The agent calls the model again after every tool result: same human turn, same
        # decision (routed and logged once).
        return (human.id or human.text, tuple(t.name for t in routable))

    def _cached(self, key: tuple[Any, ...]) -> RoutingDecision | None:
        with self._lock:
            return self._decisions.get(key)

    def _store(self, key: tuple[Any, ...], decision: RoutingDecision) -> None:
        with self._lock:
            self._decisions[key] = decision
            while len(self._decisions) > self._cache_size:
                self._decisions.popitem(last=False)

    def _decide(self, text: str, routable: list[Any]) -> RoutingDecision | None:
        try:
            return self.router.decide(text, routable, mode=MIDDLEWARE_MODE)
        except ToolError as exc:  # tools the router cannot read: the agent keeps all of them
            logger.warning("ToolRouterMiddleware cannot route over these tools (%s); passing all on", exc)
            return None

    def _narrow(self, request: ModelRequest, decision: RoutingDecision | None,
                routable: list[Any], kept: list[Any], provider: list[Any]) -> ModelRequest:
        if decision is None or decision.fallback:
            return request
        names = decision.tool_names[: self.max_tools] if self.max_tools else decision.tool_names
        selected = [t for name in names for t in routable if t.name == name]
        return request.override(tools=[*selected, *kept, *provider])

    @staticmethod
    def _event(decision: RoutingDecision) -> dict[str, Any]:
        return {"decision_id": decision.decision_id, "tools": decision.tool_names,
                "fallback": decision.fallback, "confidence": decision.confidence,
                "mode": MIDDLEWARE_MODE}

    # -- hooks -------------------------------------------------------------------------
    def wrap_model_call(
        self,
        request: ModelRequest,
        handler: Callable[[ModelRequest], ModelResponse],
    ) -> ModelResponse | AIMessage:
        split = self._split(request)
        human = self._last_human(request)
        if split is None or human is None:
            return handler(request)
        routable, kept, provider = split
        key = self._key(human, routable)
        decision = self._cached(key)
        if decision is None:
            decision = self._decide(human.text, routable)
            if decision is not None:
                self._store(key, decision)
        if decision is not None:
            try:  # ties tool outcomes to this decision (OutcomeCallbackHandler)
                dispatch_custom_event(DECISION_EVENT, self._event(decision))
            except RuntimeError:
                pass  # not inside a traced run: nobody to tell
        return handler(self._narrow(request, decision, routable, kept, provider))

    async def awrap_model_call(
        self,
        request: ModelRequest,
        handler: Callable[[ModelRequest], Awaitable[ModelResponse]],
    ) -> ModelResponse | AIMessage:
        split = self._split(request)
        human = self._last_human(request)
        if split is None or human is None:
            return await handler(request)
        routable, kept, provider = split
        key = self._key(human, routable)
        decision = self._cached(key)
        if decision is None:
            decision = await run_in_executor(None, self._decide, human.text, routable)
            if decision is not None:
                self._store(key, decision)
        if decision is not None:
            try:
                await adispatch_custom_event(DECISION_EVENT, self._event(decision))
            except RuntimeError:
                pass
        return await handler(self._narrow(request, decision, routable, kept, provider))
