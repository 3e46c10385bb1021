"""The router as a LangGraph node.

With a delegating router (``narrow`` / ``hint``) the node *is* the agent's model node: it
routes the latest human turn, calls the reasoner with the chosen tools and appends the
reply to ``messages``; LangGraph's ``ToolNode`` + ``tools_condition`` run the tool calls::

    graph = StateGraph(MessagesState)
    graph.add_node("agent", router_node(ToolRouter(tools, mode="narrow", reasoner=llm)))
    graph.add_node("tools", ToolNode(tools))
    graph.add_edge(START, "agent")
    graph.add_conditional_edges("agent", tools_condition)
    graph.add_edge("tools", "agent")

With ``mode="route"`` the node writes the decision (as a dict) to ``state["routing"]``
and leaves the model call to your own node; :func:`selected_tools` reads it back.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from langchain_core.runnables import Runnable, RunnableConfig, RunnableLambda

from openhoof_router.core.records import RoutingDecision
from openhoof_router.core.tools import to_spec
from openhoof_router.serving.settings import RouterSettings

DECISION_KEY = "routing"


def router_node(
    router: Any = None,
    *,
    tools: Sequence[Any] | None = None,
    settings: RouterSettings | None = None,
    messages_key: str = "messages",
    decision_key: str = DECISION_KEY,
) -> Runnable:
    """A node (sync and async) over a ``ToolRouter``; callbacks and tags flow through ``config``,
    and so does the graph's ``thread_id``, which keys the router's turn memory (one decision
    per human turn of each thread).

    ``router``: the :class:`~openhoof_router.langchain.runnable.ToolRouter` to run; default: a
    ``route``-mode one over ``tools`` with ``settings``
    (:class:`~openhoof_router.serving.settings.RouterSettings`; default: from the environment).
    """
    if router is None:
        from openhoof_router.langchain.runnable import ToolRouter

        router = ToolRouter(tools, mode="route", settings=settings)
    elif tools is not None or settings is not None:
        raise TypeError("pass a router, or tools and settings for a new one, not both")

    def node(state: dict[str, Any], config: RunnableConfig) -> dict[str, Any]:
        out = router.invoke({"messages": state[messages_key]}, config)
        if isinstance(out, RoutingDecision):
            return {decision_key: out.model_dump(mode="json")}
        return {messages_key: [out]}

    async def anode(state: dict[str, Any], config: RunnableConfig) -> dict[str, Any]:
        out = await router.ainvoke({"messages": state[messages_key]}, config)
        if isinstance(out, RoutingDecision):
            return {decision_key: out.model_dump(mode="json")}
        return {messages_key: [out]}

    return RunnableLambda(node, afunc=anode, name=getattr(router, "name", None) or "ToolRouter")


def selected_tools(state: dict[str, Any], tools: Sequence[Any], *, decision_key: str = DECISION_KEY) -> list[Any]:
    """The tools to bind after a ``route``-mode node: the selection, or all on fallback / no decision."""
    decision = state.get(decision_key)
    if not decision or decision.get("fallback") or not decision.get("valid", True):
        return list(tools)
    chosen = {call["name"] for call in decision.get("tool_calls", [])}
    return [t for t in tools if to_spec(t).name in chosen]
