"""Turn memory per conversation, and single-flight, over the real embedded model.

A turn is keyed by its conversation (the run config's thread_id / session_id) and its
message id, the text only when neither exists; concurrent calls for one turn (asyncio,
threads) route it once and log one line."""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, HumanMessage

from openhoof_router.core.records import RoutingDecision
from openhoof_router.langchain.runnable import ToolRouter
from openhoof_router.serving.turn_memory import TurnMemory
from openhoof_router.store.logs import DecisionLog, read_joined

TEXT = "check disk space on the build server"


@pytest.fixture()
def router(engine, builtin, tmp_path):
    return ToolRouter(builtin, engine=engine, data_dir=tmp_path, threshold=0)


def lines(tmp_path):
    return DecisionLog(data_dir=tmp_path).read().records


def test_concurrent_ainvoke_for_one_turn_routes_once(router, tmp_path):
    message = HumanMessage(content=TEXT, id="msg-1")

    async def three():
        return await asyncio.gather(*(router.ainvoke([message]) for _ in range(3)))

    decisions = asyncio.run(three())
    assert len({d.decision_id for d in decisions}) == 1
    [rec] = lines(tmp_path)
    assert rec.metadata.decision_id == decisions[0].decision_id and rec.metadata.turn_key == "id:msg-1"


def test_concurrent_threads_for_one_turn_route_once(router, tmp_path):
    message = HumanMessage(content=TEXT, id="msg-2")
    with ThreadPoolExecutor(4) as pool:
        decisions = list(pool.map(lambda _: router.invoke([message]), range(4)))
    assert len({d.decision_id for d in decisions}) == 1 and len(lines(tmp_path)) == 1
    assert len(router.batch([[message]] * 3)) == 3 and len(lines(tmp_path)) == 1  # remembered


def test_conversations_that_open_alike_are_routed_logged_and_confirmed_apart(router, tmp_path):
    a = router.invoke(TEXT, {"configurable": {"thread_id": "alice"}})
    b = router.invoke(TEXT, {"configurable": {"thread_id": "bob"}})
    again = router.invoke(TEXT, {"configurable": {"thread_id": "alice"}})  # alice's agent loop
    s = router.invoke(TEXT, {"configurable": {"session_id": "s-1"}})  # RunnableWithMessageHistory
    assert a.decision_id == again.decision_id and len({a.decision_id, b.decision_id, s.decision_id}) == 3
    recs = lines(tmp_path)
    assert len(recs) == 3 and len({r.metadata.turn_key for r in recs}) == 3
    router.confirm(a.decision_id)
    status = {j.decision_id: j.status for j in read_joined(data_dir=tmp_path).items}
    assert status == {a.decision_id: "confirmed", b.decision_id: "pending", s.decision_id: "pending"}
    # Documented fallback: with no conversation and no message id, the text is the key.
    assert router.invoke(TEXT).decision_id == router.invoke(TEXT).decision_id
    assert len(lines(tmp_path)) == 4


def test_langgraph_threads_with_the_same_message_ids_are_separate_turns(router, tmp_path):
    from langgraph.checkpoint.memory import InMemorySaver
    from langgraph.graph import START, MessagesState, StateGraph

    from openhoof_router.langchain import router_node

    class State(MessagesState):
        routing: dict

    graph = StateGraph(State)
    graph.add_node("route", router_node(router))
    graph.add_edge(START, "route")
    app = graph.compile(checkpointer=InMemorySaver())
    for thread in ("t-1", "t-2"):  # clients that number messages per conversation
        out = app.invoke({"messages": [HumanMessage(content=TEXT, id="1")]},
                         {"configurable": {"thread_id": thread}})
        assert out["routing"]["decision_id"]
    recs = lines(tmp_path)
    assert len(recs) == 2 and recs[0].metadata.turn_key != recs[1].metadata.turn_key


class ScriptedModel(GenericFakeChatModel):
    """A stand-in reasoner (the router is what is under test): answers without tool calls."""

    def bind_tools(self, tools, **kwargs):
        return self


def test_middleware_keys_turns_by_the_agents_thread(engine, builtin, tmp_path):
    from langchain.agents import create_agent
    from langchain_core.tools import tool
    from langgraph.checkpoint.memory import InMemorySaver

    from openhoof_router.langchain import ToolRouterMiddleware

    @tool
    def disk_free(host: str) -> str:
        """Free disk space on a host."""
        return "12 GB free"

    @tool
    def send_page(text: str) -> str:
        """Page the on-call operator."""
        return "paged"

    middleware = ToolRouterMiddleware(router=ToolRouter(engine=engine, data_dir=tmp_path, threshold=0))
    model = ScriptedModel(messages=iter([AIMessage(content="done")] * 4))
    agent = create_agent(model=model, tools=[disk_free, send_page], middleware=[middleware],
                         checkpointer=InMemorySaver())
    for thread in ("x", "y"):
        agent.invoke({"messages": [HumanMessage(content=TEXT, id="1")]}, {"configurable": {"thread_id": thread}})
    recs = lines(tmp_path)
    assert len(recs) == 2 and len({r.metadata.turn_key for r in recs}) == 2


def test_turn_memory_single_flight_and_errors():
    memory, calls = TurnMemory(size=2), []

    def slow() -> RoutingDecision:
        calls.append(threading.get_ident())
        time.sleep(0.2)
        return RoutingDecision()

    with ThreadPoolExecutor(8) as pool:
        got = list(pool.map(lambda _: memory.route_once("k", slow), range(8)))
    assert len(calls) == 1 and len({id(d) for d in got}) == 1

    def broken() -> RoutingDecision:
        calls.append(0)
        time.sleep(0.1)
        raise RuntimeError("model fault")

    with ThreadPoolExecutor(3) as pool:
        futures = [pool.submit(memory.route_once, "bad", broken) for _ in range(3)]
        errors = [f.exception() for f in futures]
    assert all(isinstance(e, RuntimeError) for e in errors) and calls.count(0) == 1
    assert memory.route_once("bad", RoutingDecision).valid  # the next call retries
    memory.route_once("k2", RoutingDecision)
    assert len(memory) == 2  # bounded: the oldest turn was forgotten
