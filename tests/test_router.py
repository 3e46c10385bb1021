"""ToolRouter as a Runnable over the real embedded model (route mode; delegation is in
test_integrations.py with a real reasoner server). Structure, not accuracy: the base model
is untrained, so thresholds pick the path under test."""

from __future__ import annotations

import asyncio

import pytest
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import RunnableLambda
from langchain_core.tracers.run_collector import RunCollectorCallbackHandler

from openhoof_router import ToolRouter
from openhoof_router.callbacks import DECISION_EVENT
from openhoof_router.engine import RouterEngine
from openhoof_router.logs import DecisionLog
from openhoof_router.records import RoutingDecision
from openhoof_router.router import parse_turn
from openhoof_router.tools import ToolError

MESSAGE = "Check disk space on the server"


@pytest.fixture()
def router(engine, builtin, tmp_path):
    schemas = [t.openai_schema() for t in builtin]  # OpenAI function schemas as input
    return ToolRouter(schemas, engine=engine, data_dir=tmp_path, threshold=0)


def logged(tmp_path):
    return DecisionLog(data_dir=tmp_path).read().records


class FixedEngine(RouterEngine):
    """The real backend, a chosen decision: for paths the untrained model will not take."""

    def __init__(self, backend, decision: RoutingDecision) -> None:
        super().__init__(backend)
        self.decision = decision

    def route(self, message, tools, *, use_cache=True):
        self.prepare(tools)  # still validates the tool list
        return self.decision.model_copy(deep=True)


def test_route_mode_returns_and_logs_the_decision(router, tmp_path, builtin):
    d = router.invoke(MESSAGE)
    assert isinstance(d, RoutingDecision) and d.valid and not d.fallback
    assert set(d.tool_names) <= {t.name for t in builtin}
    [rec] = logged(tmp_path)
    assert rec.input.user_message == MESSAGE and rec.tool_names == d.tool_names
    assert rec.metadata["decision_id"] == d.decision_id
    assert rec.metadata["source"] == "live" and rec.metadata["mode"] == "route"
    assert rec.metadata["confidence"] == d.confidence and rec.metadata["latency_ms"] > 0
    assert rec.metadata["model"].startswith("gemma-3-270m")
    assert "tool_schemas" not in rec.input.model_extra  # built-in tools: the names suffice


def test_inputs_route_on_the_latest_human_turn(router, tmp_path):
    history = [SystemMessage(content="You are an ops agent."), HumanMessage(content="what is on the server?"),
               AIMessage(content="Several services."), HumanMessage(content="what about the disk?")]
    prompt = ChatPromptTemplate.from_messages([("system", "Be brief."), ("human", "{q}")])
    inputs = [
        "check disk",
        HumanMessage(content="check disk"),
        history,
        {"messages": history},
        {"input": "check disk", "chat_history": history[:3]},
    ]
    for value in inputs:
        assert isinstance(router.invoke(value), RoutingDecision)
    (prompt | router).invoke({"q": "check disk"})
    routed = [r.input.user_message for r in logged(tmp_path)]
    assert routed == ["check disk", "check disk", "what about the disk?", "what about the disk?",
                      "check disk", "check disk"]
    assert parse_turn({"messages": history}).messages[0].content == "You are an ops agent."
    with pytest.raises(ValueError, match="no human turn"):
        router.invoke([SystemMessage(content="only a system message")])


def test_runnable_protocol(router):
    chain = RunnableLambda(lambda x: x["q"]) | router | RunnableLambda(lambda d: d.tool_names)
    assert isinstance(chain.invoke({"q": MESSAGE}), list)
    assert all(isinstance(d, RoutingDecision) for d in router.batch([MESSAGE, "notify ops"]))
    assert isinstance(asyncio.run(router.ainvoke(MESSAGE)), RoutingDecision)
    assert len(asyncio.run(router.abatch([MESSAGE, "notify ops"]))) == 2
    [streamed] = list(router.stream(MESSAGE))
    assert isinstance(streamed, RoutingDecision)

    async def astream():
        return [c async for c in router.astream(MESSAGE)]

    assert isinstance(asyncio.run(astream())[0], RoutingDecision)


class Events(BaseCallbackHandler):
    def __init__(self):
        self.chains, self.events = [], []

    def on_chain_start(self, serialized, inputs, *, run_id, tags=None, metadata=None, **kw):
        self.chains.append((kw.get("name"), tags, metadata))

    def on_custom_event(self, name, data, *, run_id, **kw):
        self.events.append((name, data, run_id))


def test_own_run_in_tracing_with_config_tags_and_callbacks(router):
    collector, events = RunCollectorCallbackHandler(), Events()
    bound = router.with_config(tags=["routing"], metadata={"user": "u1"}, run_name="route-turn")
    d = bound.invoke(MESSAGE, config={"callbacks": [collector, events]})
    [run] = collector.traced_runs
    assert run.name == "route-turn" and "routing" in run.tags and run.extra["metadata"]["user"] == "u1"
    assert run.outputs and run.error is None
    [(name, data, run_id)] = events.events
    assert name == DECISION_EVENT and data["decision_id"] == d.decision_id and run_id == run.id
    plain = RunCollectorCallbackHandler()
    router.invoke(MESSAGE, config={"callbacks": [plain]})
    assert plain.traced_runs[0].name == "ToolRouter"


def test_thresholds_choose_the_fallback(engine, builtin, tmp_path):
    follow = ToolRouter(builtin, engine=engine, data_dir=tmp_path, threshold=0)
    first = follow.invoke(MESSAGE)
    assert not first.fallback and first.fallback_reason is None
    never = ToolRouter(builtin, engine=engine, data_dir=tmp_path, threshold=1.01)
    d = never.invoke(MESSAGE)
    assert d.fallback and d.fallback_reason == "low_confidence"
    # Per-tool thresholds: the same (deterministic) decision, now guarded by its own tool.
    guarded = ToolRouter(builtin, engine=engine, data_dir=tmp_path, threshold=0,
                         tool_thresholds={(first.tool_names or ["none"])[0]: 1.01})
    g = guarded.invoke(MESSAGE)
    assert g.tool_names == first.tool_names and g.fallback
    lenient = ToolRouter(builtin, engine=engine, data_dir=tmp_path, threshold=1.01,
                         tool_thresholds={n: 0.0 for n in [t.name for t in builtin] + ["none"]})
    assert not lenient.invoke(MESSAGE).fallback  # per-tool thresholds may also be lower
    recs = logged(tmp_path)
    assert [r.metadata["fallback"] for r in recs] == [False, True, True, False]
    assert recs[1].metadata["threshold"] == 1.01 and recs[1].metadata["fallback_reason"] == "low_confidence"


def test_invalid_decision_is_a_logged_fallback(engine, builtin, tmp_path):
    broken = RoutingDecision(valid=False, error="unreadable answer", confidence=0.99)
    router = ToolRouter(builtin, engine=FixedEngine(engine.backend, broken), data_dir=tmp_path, threshold=0)
    d = router.invoke(MESSAGE)
    assert d.fallback and d.fallback_reason == "invalid"
    [rec] = logged(tmp_path)
    assert rec.metadata["valid"] is False and rec.metadata["fallback"] is True


def test_bad_tool_lists_and_options(engine, builtin, tmp_path):
    with pytest.raises(ToolError, match="empty"):
        ToolRouter([], engine=engine, data_dir=tmp_path)
    with pytest.raises(ToolError, match="duplicate"):
        ToolRouter(["exec", "exec"], engine=engine, data_dir=tmp_path)
    with pytest.raises(ValueError, match="mode"):
        ToolRouter(builtin, engine=engine, data_dir=tmp_path, mode="guess")
    per_call = ToolRouter(engine=engine, data_dir=tmp_path, threshold=0)
    with pytest.raises(ToolError, match="no tools"):
        per_call.invoke(MESSAGE)
    with pytest.raises(ToolError, match="reserved"):
        per_call.invoke({"input": MESSAGE, "tools": ["none"]})
    d = per_call.invoke({"input": MESSAGE, "tools": ["exec", "notify"]})
    assert set(d.tool_names) <= {"exec", "notify"}
    router = ToolRouter(builtin, engine=engine, data_dir=tmp_path)
    with pytest.raises(ToolError, match="does not offer"):
        router.correct(d.decision_id, ["rm_rf"])
    assert router.correct(d.decision_id, ["exec"]).correct_tools == ["exec"]


def test_logging_can_be_off_or_capped(engine, builtin, tmp_path):
    ToolRouter(builtin, engine=engine, data_dir=tmp_path / "off", log_decisions=False).invoke(MESSAGE)
    assert not (tmp_path / "off" / "training_data.jsonl").exists()
    ToolRouter(builtin, engine=engine, data_dir=tmp_path, max_logged_chars=5).invoke(MESSAGE)
    [rec] = logged(tmp_path)
    assert rec.input.user_message == "Check" and rec.metadata["truncated"]
