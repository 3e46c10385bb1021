"""End to end with a real reasoner: llama-cpp-python's OpenAI-compatible server on loopback,
driven through langchain_openai.ChatOpenAI. Checks what each mode sends the reasoner, the
agent middleware, the LangGraph node, outcome logging of a real tool call, and a reasoner
that is down."""

from __future__ import annotations

import asyncio

import pytest
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.messages import AIMessage, AIMessageChunk, SystemMessage
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import RunnableLambda
from langchain_core.tools import tool

from openhoof_router import ToolRouter
from openhoof_router.callbacks import DECISION_EVENT
from openhoof_router.engine import RouterEngine
from openhoof_router.logs import DecisionLog, OutcomeLog
from openhoof_router.records import RoutingDecision
from openhoof_router.router import decision_info

langchain_openai = pytest.importorskip("langchain_openai")
ChatOpenAI = langchain_openai.ChatOpenAI

MESSAGE = "Check disk space on the server"
MAX_TOKENS = 6


def _free_port() -> int:
    from openhoof_router.local_server import free_port

    return free_port()


def make_reasoner(url: str, max_tokens: int = MAX_TOKENS, *, fresh_async: bool = False) -> ChatOpenAI:
    # llama-cpp-python's server ignores max_completion_tokens (what ChatOpenAI sends for
    # max_tokens): the old field goes in the body too, or a reply runs to the context's end.
    extra = {}
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


class Events(BaseCallbackHandler):
    def __init__(self):
        self.decision_ids = []

    def on_custom_event(self, name, data, *, run_id, **kw):
        if name == DECISION_EVENT:
            self.decision_ids.append(data["decision_id"])


class FixedEngine(RouterEngine):
    """The real backend with a chosen decision (the untrained model rarely says "none")."""

    def __init__(self, backend, decision: RoutingDecision) -> None:
        super().__init__(backend)
        self.decision = decision

    def route(self, message, tools, *, use_cache=True):
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
    assert rec.metadata["decision_id"] == info["decision_id"] and rec.metadata["mode"] == "narrow"
    assert rec.tool_names == call["tools"]


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
    assert rec.metadata["fallback"] is True and rec.metadata["fallback_reason"] == "low_confidence"


@pytest.mark.parametrize("mode", ["narrow", "hint"])
def test_no_tool_decision_sends_no_tools(mode, engine, reasoner, tmp_path):
    none = RoutingDecision(tool_calls=[], confidence=0.97)
    router = ToolRouter(TOOLS, mode=mode, reasoner=reasoner, engine=FixedEngine(engine.backend, none),
                        data_dir=tmp_path, threshold=0.5)
    sent = Sent()
    reply = router.invoke("thanks, that's all for today", config={"callbacks": [sent]})
    [call] = sent.calls
    assert call["tools"] is None and isinstance(reply, AIMessage)
    assert decision_info(reply)["sent_tools"] == []
    [rec] = DecisionLog(data_dir=tmp_path).read().records
    assert rec.output.tool_calls == [] and rec.metadata["tool"] == "none"


def test_stream_and_async_delegate(engine, server_url, tmp_path):
    router = ToolRouter(TOOLS, mode="narrow", reasoner=make_reasoner(server_url, fresh_async=True), engine=engine, data_dir=tmp_path, threshold=0)
    chunks = list(router.stream(MESSAGE))
    assert chunks and all(isinstance(c, AIMessageChunk) for c in chunks)
    assert decision_info(chunks[0])["mode"] == "narrow"
    sent = Sent()
    reply = asyncio.run(router.ainvoke(MESSAGE, config={"callbacks": [sent]}))
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

def _agent(reasoner, middleware):
    from langchain.agents import create_agent

    return create_agent(model=reasoner, tools=TOOLS, middleware=[middleware])


def test_agent_middleware_narrows_and_falls_back(engine, reasoner, server_url, tmp_path):
    from openhoof_router.integrations import ToolRouterMiddleware

    confident = ToolRouterMiddleware(ToolRouter(engine=engine, data_dir=tmp_path, threshold=0),
                                     max_tools=1, always_include=["list_tools"])
    sent, events = Sent(), Events()
    result = _agent(reasoner, confident).invoke({"messages": [("human", MESSAGE)]},
                                                config={"callbacks": [sent, events]})
    assert isinstance(result["messages"][-1], AIMessage)
    [rec] = DecisionLog(data_dir=tmp_path).read().records
    assert events.decision_ids == [rec.metadata["decision_id"]]  # what ties later tool runs to it
    routable = [n for n in NAMES if n != "list_tools"]
    assert rec.input.tools == routable and rec.metadata["mode"] == "middleware"
    assert sent.calls[0]["tools"] == rec.tool_names[:1] + ["list_tools"]

    unsure = ToolRouterMiddleware(ToolRouter(engine=engine, data_dir=tmp_path, threshold=1.01),
                                  always_include=["list_tools"])
    sent = Sent()
    asyncio.run(_agent(make_reasoner(server_url, fresh_async=True), unsure).ainvoke({"messages": [("human", MESSAGE)]}, config={"callbacks": [sent]}))
    assert sorted(sent.calls[0]["tools"]) == sorted(NAMES)  # awrap_model_call path, fallback
    assert DecisionLog(data_dir=tmp_path).read().records[-1].metadata["fallback"] is True

    with pytest.raises(ValueError, match="always_include"):
        _agent(reasoner, ToolRouterMiddleware(ToolRouter(engine=engine, data_dir=tmp_path),
                                              always_include=["missing"])).invoke({"messages": [("human", "hi")]})


def test_langgraph_node(engine, reasoner, tmp_path):
    from langgraph.graph import END, START, MessagesState, StateGraph
    from langgraph.prebuilt import ToolNode, tools_condition

    from openhoof_router.integrations import router_node

    router = ToolRouter(TOOLS, mode="narrow", reasoner=reasoner, engine=engine, data_dir=tmp_path, threshold=0)
    graph = StateGraph(MessagesState)
    graph.add_node("agent", router_node(router))
    graph.add_node("tools", ToolNode(TOOLS))
    graph.add_edge(START, "agent")
    graph.add_conditional_edges("agent", tools_condition, {"tools": "tools", END: END})
    graph.add_edge("tools", "agent")
    sent = Sent()
    out = graph.compile().invoke({"messages": [("human", MESSAGE)]}, config={"callbacks": [sent]})
    reply = out["messages"][-1]
    assert isinstance(reply, AIMessage) and decision_info(reply)["sent_tools"] == sent.calls[0]["tools"]


def test_openai_compatible_reasoner_helper(server_url, monkeypatch):
    from openhoof_router.integrations.reasoner import openai_compatible_reasoner

    llm = openai_compatible_reasoner(server_url, "gemma", max_tokens=4)
    assert isinstance(llm.invoke("hello"), AIMessage)
    monkeypatch.setenv("OPENHOOF_REASONER_URL", "http://gpu-box:8000/v1")
    monkeypatch.delenv("OPENHOOF_REASONER_MODEL", raising=False)
    default = openai_compatible_reasoner()
    assert default.openai_api_base == "http://gpu-box:8000/v1" and default.model_name == "qwen3:8b"
    assert openai_compatible_reasoner(server="vllm", base_url=None).model_name == "Qwen/Qwen3-8B"


def test_agent_tool_outcomes_are_tied_to_the_middleware_decision(engine, tmp_path):
    """The local gemma reasoner never calls tools in an agent loop, so this one agent model is
    scripted (the router, the agent graph, the tools and the callback are the real ones)."""
    from langchain.agents import create_agent
    from langchain_core.language_models import BaseChatModel
    from langchain_core.outputs import ChatGeneration, ChatResult

    from openhoof_router.integrations import ToolRouterMiddleware

    class CallsTwoTools(BaseChatModel):
        calls: int = 0

        @property
        def _llm_type(self) -> str:
            return "scripted"

        def bind_tools(self, tools, **kwargs):
            return self

        def _generate(self, messages, stop=None, run_manager=None, **kwargs):
            self.calls += 1
            tool_calls = [{"name": "disk_usage", "args": {"path": "/"}, "id": "c1"},
                          {"name": "send_page", "args": {"message": "disk"}, "id": "c2"}]
            message = AIMessage(content="", tool_calls=tool_calls) if self.calls == 1 else AIMessage(content="done")
            return ChatResult(generations=[ChatGeneration(message=message)])

    router = ToolRouter(engine=engine, data_dir=tmp_path, threshold=1.01)  # fallback: all tools stay
    agent = create_agent(model=CallsTwoTools(), tools=TOOLS, middleware=[ToolRouterMiddleware(router)])
    handler = router.outcome_callback()
    agent.invoke({"messages": [("human", MESSAGE)]}, config={"callbacks": [handler]})
    [decision] = DecisionLog(data_dir=tmp_path).read().records  # two model calls, one decision
    outcomes = OutcomeLog(data_dir=tmp_path).read().records
    assert sorted((o.tool, o.kind) for o in outcomes) == [("disk_usage", "tool_end"), ("send_page", "tool_end")]
    assert {o.decision_id for o in outcomes} == {decision.metadata["decision_id"]}
    assert handler.unmatched == 0
