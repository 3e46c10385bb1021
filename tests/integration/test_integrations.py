"""End to end with a real reasoner: llama-cpp-python's OpenAI-compatible server on loopback,
driven through langchain_openai.ChatOpenAI. Checks what each mode sends the reasoner, the
agent middleware (a literal swap for LLMToolSelectorMiddleware), a LangGraph agent loop
routed once per human turn, outcome logging of real tool calls, and a reasoner that is down."""

from __future__ import annotations

import asyncio
from typing import Literal

import pytest
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.messages import AIMessage, AIMessageChunk, SystemMessage
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import RunnableLambda
from langchain_core.tools import tool

from openhoof_router import ToolRouter
from openhoof_router.langchain.tracing import DECISION_ID_KEY, DECISION_RUN
from openhoof_router.core.engine import RouterEngine
from openhoof_router.store.logs import DecisionLog, OutcomeLog
from openhoof_router.core.records import PastTurn, RoutingDecision, ToolCall
from openhoof_router.langchain.tracing import decision_info

langchain_openai = pytest.importorskip("langchain_openai")
ChatOpenAI = langchain_openai.ChatOpenAI

MESSAGE = "Check disk space on the server"
MAX_TOKENS = 6


def _free_port() -> int:
    from support.loopback_server import free_port

    return free_port()


class NullContentFix:
    """llama-cpp-python's server refuses ``"content": null`` on an assistant message with tool
    calls (the OpenAI API allows it, langchain-openai sends it): send "" instead."""

    def __init__(self) -> None:
        import httpx

        self.inner = httpx.HTTPTransport()

    def handle_request(self, request):
        import json

        import httpx

        body = json.loads(request.read() or b"{}")
        for message in body.get("messages", []):
            if message.get("content") is None:
                message["content"] = ""
        fixed = httpx.Request(request.method, request.url, json=body,
                              headers={k: v for k, v in request.headers.items() if k.lower() != "content-length"})
        return self.inner.handle_request(fixed)

    def close(self) -> None:
        self.inner.close()


def make_reasoner(url: str, max_tokens: int = MAX_TOKENS, *, fresh_async: bool = False) -> ChatOpenAI:
    # llama-cpp-python's server ignores max_completion_tokens (what ChatOpenAI sends for
    # max_tokens): the old field goes in the body too, or a reply runs to the context's end.
    import httpx

    extra = {"http_client": httpx.Client(transport=NullContentFix(), timeout=120)}
    if fresh_async:  # langchain-openai caches one async client per URL; each asyncio.run has its own loop
        import httpx

        extra["http_async_client"] = httpx.AsyncClient(timeout=120)
    return ChatOpenAI(base_url=url, api_key="x", model="gemma", max_tokens=max_tokens,
                      extra_body={"max_tokens": max_tokens}, max_retries=0, timeout=120, **extra)


@pytest.fixture(scope="module")
def reasoner(server_url):
    return make_reasoner(server_url)


class Sent(BaseCallbackHandler):
    """What each chat-model call was sent: tool names and messages."""

    def __init__(self):
        self.calls = []

    def on_chat_model_start(self, serialized, messages, *, run_id, invocation_params=None, **kw):
        tools = (invocation_params or {}).get("tools")
        self.calls.append({
            "tools": None if tools is None else [t["function"]["name"] for t in tools],
            "messages": messages[0],
            "tool_choice": (invocation_params or {}).get("tool_choice"),
        })


class Decisions(BaseCallbackHandler):
    """Decision runs seen in the callback tree (what a LangSmith-style tracer records)."""

    def __init__(self):
        self.decision_ids = []

    def on_chain_start(self, serialized, inputs, *, run_id, metadata=None, **kw):
        if kw.get("name") == DECISION_RUN:
            self.decision_ids.append((metadata or {}).get(DECISION_ID_KEY))


class FixedEngine(RouterEngine):
    """The real backend with a chosen decision (the untrained model rarely says "none")."""

    def __init__(self, backend, decision: RoutingDecision) -> None:
        super().__init__(backend)
        self.decision = decision

    def route(self, message, tools, *, context=(), use_cache=True):
        self.prepare(tools)
        return self.decision.model_copy(deep=True)


@tool
def disk_usage(path: str) -> str:
    """Report how full the disk holding a path is."""
    return f"{path}: 42% used"


@tool
def restart_service(name: str) -> str:
    """Restart a system service by name."""
    raise RuntimeError(f"permission denied restarting {name}")


@tool
def list_tools() -> str:
    """List the tools this agent can use."""
    return "disk_usage, restart_service, send_page, list_tools"


@tool
def disk_free(mount: Literal["/", "/var", "/home"]) -> str:
    """How much room is left on a mount point."""
    return f"{mount}: 58% free"


@tool
def send_page(message: str) -> str:
    """Page the on-call operator with a message."""
    return "paged"


TOOLS = [disk_usage, restart_service, send_page, list_tools]
NAMES = [t.name for t in TOOLS]


def prompt():
    return ChatPromptTemplate.from_messages([("system", "You are an ops agent."), ("human", "{question}")])


def test_narrow_chain_sends_only_the_selected_tools(engine, reasoner, tmp_path):
    router = ToolRouter(TOOLS, mode="narrow", reasoner=reasoner, engine=engine, data_dir=tmp_path, threshold=0)
    sent = Sent()
    reply = (prompt() | router).invoke({"question": MESSAGE}, config={"callbacks": [sent], "tags": ["e2e"]})
    assert isinstance(reply, AIMessage)
    info = decision_info(reply)
    [call] = sent.calls
    assert call["tools"] == info["sent_tools"] == info["selected"]
    assert 1 <= len(call["tools"]) <= 3 < len(NAMES)
    assert isinstance(call["messages"][0], SystemMessage) and call["messages"][0].content == "You are an ops agent."
    [rec] = DecisionLog(data_dir=tmp_path).read().records
    assert rec.metadata.decision_id == info["decision_id"] and rec.metadata.mode == "narrow"
    assert rec.tool_names == call["tools"] and info["scores"] == rec.metadata.scores


def test_hint_chain_sends_all_tools_and_one_system_hint(engine, reasoner, tmp_path):
    router = ToolRouter(TOOLS, mode="hint", reasoner=reasoner, engine=engine, data_dir=tmp_path, threshold=0)
    sent = Sent()
    reply = (prompt() | router).invoke({"question": MESSAGE}, config={"callbacks": [sent]})
    [call] = sent.calls
    assert call["tools"] == NAMES
    system = [m for m in call["messages"] if isinstance(m, SystemMessage)]
    assert len(system) == 1 and system[0].content.startswith("You are an ops agent.")
    assert "Tool router hint" in system[0].content
    assert all(n in system[0].content for n in decision_info(reply)["selected"])


@pytest.mark.parametrize("mode", ["narrow", "hint"])
def test_low_confidence_falls_back_to_all_tools(mode, engine, reasoner, tmp_path):
    router = ToolRouter(TOOLS, mode=mode, reasoner=reasoner, engine=engine, data_dir=tmp_path, threshold=1.01)
    sent = Sent()
    reply = router.invoke([("system", "You are an ops agent."), ("human", MESSAGE)], config={"callbacks": [sent]})
    [call] = sent.calls
    assert call["tools"] == NAMES
    assert not any("Tool router hint" in m.content for m in call["messages"])  # no hint when unsure
    assert decision_info(reply)["fallback"] is True
    [rec] = DecisionLog(data_dir=tmp_path).read().records
    assert rec.metadata.fallback is True and rec.metadata.fallback_reason == "low_confidence"


@pytest.mark.parametrize("mode", ["narrow", "hint"])
def test_no_tool_decision_sends_no_tools(mode, engine, reasoner, tmp_path):
    none = RoutingDecision(tool_calls=[], confidence=0.97, no_tool_score=0.97)
    router = ToolRouter(TOOLS, mode=mode, reasoner=reasoner, engine=FixedEngine(engine.backend, none),
                        data_dir=tmp_path, threshold=0.5)
    sent = Sent()
    reply = router.invoke("thanks, that's all for today", config={"callbacks": [sent]})
    [call] = sent.calls
    assert call["tools"] is None and isinstance(reply, AIMessage)
    assert decision_info(reply)["sent_tools"] == []
    [rec] = DecisionLog(data_dir=tmp_path).read().records
    assert rec.output.tool_calls == [] and rec.metadata.tool == "none"


def test_the_safe_side_an_unsure_no_tool_gets_every_tool_and_close_calls_bind_their_neighbours(
        engine, reasoner, tmp_path):
    unsure = RoutingDecision(tool_calls=[], confidence=0.8, no_tool_score=0.8, scores={n: 0.05 for n in NAMES})
    router = ToolRouter(TOOLS, mode="narrow", reasoner=reasoner, engine=FixedEngine(engine.backend, unsure),
                        data_dir=tmp_path)  # no threshold given: "no tool" needs the safe-side default (0.9)
    sent = Sent()
    reply = router.invoke("is the disk on prod full?", config={"callbacks": [sent]})
    assert sent.calls[0]["tools"] == NAMES and decision_info(reply)["fallback_reason"] == "tool_threshold:none"
    close = RoutingDecision(tool_calls=[ToolCall(name=NAMES[0])], confidence=0.7,
                            scores={NAMES[0]: 0.7, NAMES[1]: 0.2, NAMES[2]: 0.01})
    router = ToolRouter(TOOLS, mode="narrow", reasoner=reasoner, engine=FixedEngine(engine.backend, close),
                        data_dir=tmp_path, keep_threshold=0.1)
    sent = Sent()
    reply = router.invoke("check the disk, and tell me if anything else looks off", config={"callbacks": [sent]})
    assert sent.calls[0]["tools"] == NAMES[:2] and decision_info(reply)["sent_tools"] == NAMES[:2]
    assert DecisionLog(data_dir=tmp_path).read().records[-1].metadata.extra_tools == [NAMES[1]]


def test_stream_and_async_delegate(engine, server_url, tmp_path):
    router = ToolRouter(TOOLS, mode="narrow", reasoner=make_reasoner(server_url, fresh_async=True), engine=engine, data_dir=tmp_path, threshold=0)
    chunks = list(router.stream(MESSAGE))
    assert chunks and all(isinstance(c, AIMessageChunk) for c in chunks)
    assert decision_info(chunks[0])["mode"] == "narrow"
    sent = Sent()
    reply = asyncio.run(router.ainvoke("notify the operator that the disk is fine", config={"callbacks": [sent]}))
    assert isinstance(reply, AIMessage) and sent.calls[0]["tools"] == decision_info(reply)["sent_tools"]
    assert len(DecisionLog(data_dir=tmp_path).read().records) == 2


def test_reasoner_down_raises_and_the_decision_is_logged(engine, tmp_path):
    down = make_reasoner(f"http://127.0.0.1:{_free_port()}/v1")  # nothing listens there
    router = ToolRouter(TOOLS, mode="narrow", reasoner=down, engine=engine, data_dir=tmp_path, threshold=0)
    import openai

    with pytest.raises(openai.APIConnectionError):
        router.invoke(MESSAGE)
    [rec] = DecisionLog(data_dir=tmp_path).read().records
    assert rec.input.user_message == MESSAGE


def test_real_tool_call_outcome_is_logged(engine, server_url, tmp_path):
    one = RouterEngine(engine.backend, max_tools=1)  # one tool selected → force_tool applies
    router = ToolRouter([disk_usage, restart_service], mode="narrow", reasoner=make_reasoner(server_url, 48),
                        engine=one, data_dir=tmp_path, threshold=0, force_tool=True)
    by_name = {t.name: t for t in TOOLS}

    def agent_turn(question: str, config) -> tuple[AIMessage, list]:
        reply = router.invoke(question, config)
        results = []
        for call in reply.tool_calls:
            try:
                results.append(by_name[call["name"]].invoke(call, config))
            except RuntimeError as exc:
                results.append(exc)
        return reply, results

    handler = router.outcome_callback()
    reply, results = RunnableLambda(agent_turn).invoke(MESSAGE, config={"callbacks": [handler]})
    [call] = reply.tool_calls
    assert call["name"] == decision_info(reply)["selected"][0]
    [outcome] = OutcomeLog(data_dir=tmp_path).read().records
    assert outcome.decision_id == decision_info(reply)["decision_id"] and outcome.tool == call["name"]
    assert outcome.kind == ("tool_end" if call["name"] == "disk_usage" else "tool_error")


# -- agent middleware -----------------------------------------------------------------

def test_middleware_is_a_literal_swap_for_llm_tool_selector(server_url, home):
    """The same create_agent(...) call, only the middleware class changed, against the loopback server."""
    from langchain.agents import create_agent
    from langchain.agents.middleware import LLMToolSelectorMiddleware

    from openhoof_router.langchain import ToolRouterMiddleware

    class LoopbackReasoner(ChatOpenAI):
        """llama-cpp-python's server does tool calls but not json_schema: structured output
        (what LLMToolSelectorMiddleware asks the agent's model for) goes through a tool call."""

        def with_structured_output(self, schema, *, method="function_calling", **kwargs):
            return super().with_structured_output(schema, method=method, **kwargs)

    results = {}
    for middleware_class in (LLMToolSelectorMiddleware, ToolRouterMiddleware):
        sent = Sent()
        agent = create_agent(
            model=LoopbackReasoner(base_url=server_url, api_key="x", model="gemma", max_tokens=48,
                                   extra_body={"max_tokens": 48}, max_retries=0, timeout=120),
            tools=TOOLS,
            middleware=[middleware_class(max_tools=1, always_include=["list_tools"], on_parsing_failure="all")],
        )
        out = agent.invoke({"messages": [("human", MESSAGE)]}, config={"callbacks": [sent]})
        results[middleware_class.__name__] = (out, sent)
    upstream, upstream_sent = results["LLMToolSelectorMiddleware"]
    assert isinstance(upstream["messages"][-1], AIMessage)
    assert upstream_sent.calls[-1]["tools"][-1] == "list_tools" and len(upstream_sent.calls[-1]["tools"]) <= 2
    out, sent = results["ToolRouterMiddleware"]
    [rec] = DecisionLog().read().records  # the default router logs into OPENHOOF_HOME
    info = decision_info(out["messages"][-1])
    assert info["decision_id"] == rec.metadata.decision_id and info["scores"] == rec.metadata.scores
    agent_calls = [c for c in sent.calls if c["tools"] is not None]
    routed = rec.tool_names[:1] if not rec.metadata.fallback else [n for n in NAMES if n != "list_tools"]
    assert agent_calls[-1]["tools"] == [n for n in NAMES if n in routed] + ["list_tools"]  # the request's order
    assert rec.metadata.mode == "middleware"


def test_middleware_parameters_keep_their_meaning(engine, tmp_path):
    from openhoof_router.langchain import ToolRouterMiddleware

    router = ToolRouter(engine=engine, data_dir=tmp_path)
    with pytest.raises(ValueError, match="local router"):
        ToolRouterMiddleware(model="openai:gpt-4o-mini")
    with pytest.warns(UserWarning, match="system_prompt, max_retries"):
        ToolRouterMiddleware(router=router, system_prompt="pick tools", max_retries=3)
    with pytest.raises(ValueError, match="max_tools"):
        ToolRouterMiddleware(router=router, max_tools=0)
    with pytest.raises(ValueError, match="on_parsing_failure"):
        ToolRouterMiddleware(router=router, on_parsing_failure="maybe")
    unsure = RoutingDecision(tool_calls=[], valid=False, error="no answer", fallback=True, fallback_reason="invalid")
    routable = TOOLS[:3]
    for failure, expected in (("all", [t.name for t in routable]), ("none", []), (["send_page"], ["send_page"]),
                              (lambda d: ["disk_usage"], ["disk_usage"])):
        m = ToolRouterMiddleware(router=router, on_parsing_failure=failure)
        assert m._selected(unsure, routable) == expected
    with pytest.raises(ValueError, match="no usable selection"):
        ToolRouterMiddleware(router=router, on_parsing_failure="error")._selected(unsure, routable)
    # the default: what the policy kept of a long list (here one), else every tool
    ranked = unsure.model_copy(update={"valid": True, "fallback_reason": "low_confidence",
                                       "fallback_tools": ["disk_usage"]})
    assert ToolRouterMiddleware(router=router)._selected(ranked, routable) == ["disk_usage"]
    assert ToolRouterMiddleware(router=router)._selected(unsure, routable) == [t.name for t in routable]
    assert ToolRouterMiddleware(router=router, on_parsing_failure="all")._selected(ranked, routable) == [
        t.name for t in routable]
    sure = RoutingDecision(tool_calls=[{"name": "send_page"}, {"name": "disk_usage"}])
    assert ToolRouterMiddleware(router=router, max_tools=None)._selected(sure, routable) == ["send_page", "disk_usage"]
    assert ToolRouterMiddleware(router=router, max_tools=1)._selected(sure, routable) == ["send_page"]


def _agent(reasoner, middleware):
    from langchain.agents import create_agent

    return create_agent(model=reasoner, tools=TOOLS, middleware=[middleware])


def test_agent_middleware_narrows_and_falls_back(engine, reasoner, server_url, tmp_path):
    from openhoof_router.langchain import ToolRouterMiddleware

    confident = ToolRouterMiddleware(router=ToolRouter(engine=engine, data_dir=tmp_path, threshold=0),
                                     max_tools=1, always_include=["list_tools"])
    sent, seen = Sent(), Decisions()
    result = _agent(reasoner, confident).invoke({"messages": [("human", MESSAGE)]},
                                                config={"callbacks": [sent, seen]})
    assert isinstance(result["messages"][-1], AIMessage)
    [rec] = DecisionLog(data_dir=tmp_path).read().records
    assert seen.decision_ids == [rec.metadata.decision_id]  # a child run: what ties later tool runs to it
    routable = [n for n in NAMES if n != "list_tools"]
    assert rec.input.tools == routable and rec.metadata.mode == "middleware"
    assert sent.calls[0]["tools"] == [n for n in NAMES if n in rec.tool_names[:1]] + ["list_tools"]

    unsure = ToolRouterMiddleware(router=ToolRouter(engine=engine, data_dir=tmp_path, threshold=1.01),
                                  always_include=["list_tools"])
    sent = Sent()
    asyncio.run(_agent(make_reasoner(server_url, fresh_async=True), unsure).ainvoke(
        {"messages": [("human", "page the on-call")]}, config={"callbacks": [sent]}))
    assert sorted(sent.calls[0]["tools"]) == sorted(NAMES)  # awrap_model_call path, fallback
    assert DecisionLog(data_dir=tmp_path).read().records[-1].metadata.fallback is True

    with pytest.raises(ValueError, match="always_include"):
        _agent(reasoner, ToolRouterMiddleware(router=ToolRouter(engine=engine, data_dir=tmp_path),
                                              always_include=["missing"])).invoke({"messages": [("human", "hi")]})


def test_langgraph_loop_routes_once_per_human_turn(engine, server_url, tmp_path):
    """Two tool cycles of a LangGraph agent: the reasoner (forced to call the one selected
    tool) is called three times with the same narrowed tools, and one decision is logged."""
    from langchain_core.messages import ToolMessage
    from langgraph.graph import END, START, MessagesState, StateGraph
    from langgraph.prebuilt import ToolNode

    from openhoof_router.langchain import router_node

    # the untrained base may well answer "none" here: the decision is fixed, the rest is real
    disk = FixedEngine(engine.backend, RoutingDecision(tool_calls=[{"name": "disk_free"}],
                                                       scores={"disk_free": 0.9, "send_page": 0.01}))
    # an enum argument: the server's grammar makes the small model's call valid JSON every time
    router = ToolRouter([disk_free, send_page], mode="narrow", reasoner=make_reasoner(server_url, 32), engine=disk,
                        data_dir=tmp_path, threshold=0.5, force_tool=True)

    def after_agent(state) -> str:
        cycles = sum(isinstance(m, ToolMessage) for m in state["messages"])
        return "tools" if state["messages"][-1].tool_calls and cycles < 2 else END

    graph = StateGraph(MessagesState)
    graph.add_node("agent", router_node(router))
    graph.add_node("tools", ToolNode([disk_free, send_page]))
    graph.add_edge(START, "agent")
    graph.add_conditional_edges("agent", after_agent, {"tools": "tools", END: END})
    graph.add_edge("tools", "agent")
    sent = Sent()
    out = graph.compile().invoke({"messages": [("human", MESSAGE)]}, config={"callbacks": [sent]})
    assert sum(isinstance(m, ToolMessage) for m in out["messages"]) == 2
    [rec] = DecisionLog(data_dir=tmp_path).read().records
    assert len(sent.calls) == 3 and all(c["tools"] == rec.tool_names for c in sent.calls)
    assert {decision_info(m)["decision_id"] for m in out["messages"] if isinstance(m, AIMessage)} == \
        {rec.metadata.decision_id}


def test_openai_compatible_reasoner_helper(server_url, monkeypatch):
    from openhoof_router.langchain.reasoner import openai_compatible_reasoner

    llm = openai_compatible_reasoner(server_url, "gemma", max_tokens=4)
    assert isinstance(llm.invoke("hello"), AIMessage)
    monkeypatch.setenv("OPENHOOF_REASONER_URL", "http://gpu-box:8000/v1")
    monkeypatch.delenv("OPENHOOF_REASONER_MODEL", raising=False)
    default = openai_compatible_reasoner()
    assert default.openai_api_base == "http://gpu-box:8000/v1" and default.model_name == "qwen3:8b"
    assert openai_compatible_reasoner(server="vllm", base_url=None).model_name == "Qwen/Qwen3-8B"


def scripted_model(*replies: AIMessage):
    """An agent model that gives ``replies`` in turn, then the last one again (the router, the
    agent graph and the tools around it are the real ones)."""
    from langchain_core.language_models import BaseChatModel
    from langchain_core.outputs import ChatGeneration, ChatResult

    class Scripted(BaseChatModel):
        calls: int = 0

        @property
        def _llm_type(self) -> str:
            return "scripted"

        def bind_tools(self, tools, **kwargs):
            return self

        def _generate(self, messages, stop=None, run_manager=None, **kwargs):
            message = replies[min(self.calls, len(replies) - 1)]
            self.calls += 1
            return ChatResult(generations=[ChatGeneration(message=message)])

    return Scripted()


def test_agent_tool_outcomes_are_tied_to_the_middleware_decision(engine, tmp_path):
    """The agent model is scripted here to call two tools at once (the router, the agent graph,
    the tools and the callback are the real ones)."""
    from langchain.agents import create_agent

    from openhoof_router.langchain import ToolRouterMiddleware

    tool_calls = [{"name": "disk_usage", "args": {"path": "/"}, "id": "c1"},
                  {"name": "send_page", "args": {"message": "disk"}, "id": "c2"}]
    calls_two_tools = scripted_model(AIMessage(content="", tool_calls=tool_calls), AIMessage(content="done"))
    router = ToolRouter(engine=engine, data_dir=tmp_path, threshold=1.01)  # fallback: all tools stay
    agent = create_agent(model=calls_two_tools, tools=TOOLS, middleware=[ToolRouterMiddleware(router=router)])
    handler = router.outcome_callback()
    agent.invoke({"messages": [("human", MESSAGE)]}, config={"callbacks": [handler]})
    [decision] = DecisionLog(data_dir=tmp_path).read().records  # two model calls, one decision
    outcomes = OutcomeLog(data_dir=tmp_path).read().records
    assert sorted((o.tool, o.kind) for o in outcomes) == [("disk_usage", "tool_end"), ("send_page", "tool_end")]
    assert {o.decision_id for o in outcomes} == {decision.metadata.decision_id}
    assert handler.unmatched == 0


def test_a_finished_agent_turn_is_read_ahead_for_the_next_one(engine, tmp_path):
    """When the agent's reply ends a turn, the middleware has the router read the conversation
    so far, so the next human turn's call reads only its message (the agent model is scripted)."""
    from langchain.agents import create_agent

    from openhoof_router.langchain import ToolRouterMiddleware

    backend = engine.backend
    for prefetch in (True, False):
        router = ToolRouter(engine=engine, data_dir=tmp_path / str(prefetch), prefetch_turns=prefetch)
        agent = create_agent(model=scripted_model(AIMessage(content="The root disk is 42% full.")), tools=TOOLS, middleware=[ToolRouterMiddleware(router=router)])
        first = f"{'alpha' if prefetch else 'omega'} host: how full is its root disk?"  # shares no text
        messages = agent.invoke({"messages": [("human", first)]})["messages"]
        if prefetch:
            assert router.service.last_prefetch is not None and router.service.last_prefetch.result(60) > 0
        else:
            assert router.service.last_prefetch is None
        assert [m.type for m in messages] == ["human", "ai"]
        # The next turn as the middleware routes it (routed here directly: the agent's own
        # reply to it would queue another read-ahead, racing this check of the backend).
        earlier = [PastTurn(user=first, reply="The root disk is 42% full.")]
        assert engine.route("and on the staging host?", TOOLS, context=earlier).valid
        block = len(engine.prepare(TOOLS).prefix)
        context = engine.codec.user_turn("a", earlier)
        if prefetch:
            assert backend.reused >= block + len(context) - 6  # the earlier turn came from the read-ahead state
        else:
            assert backend.reused < block + len(context) // 2  # the block and a shared opening ("Earlier:") only
