"""ToolRouter as a Runnable over the real embedded model (route mode; delegation is in
test_integrations.py with a real reasoner server). Structure, not accuracy: the base model
is untrained, so thresholds pick the path under test."""

from __future__ import annotations

import asyncio

import pytest
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import RunnableLambda
from langchain_core.tracers.run_collector import RunCollectorCallbackHandler

from openhoof_router import ToolRouter
from openhoof_router.langchain.tracing import DECISION_ID_KEY, DECISION_RUN
from openhoof_router.langchain.conversation import parse_turn
from openhoof_router.core.engine import RouterEngine
from openhoof_router.store.logs import DecisionLog
from openhoof_router.core.records import RoutingDecision
from openhoof_router.core.tools import ToolError

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

    def route(self, message, tools, *, context=(), use_cache=True):
        self.prepare(tools)  # still validates the tool list
        return self.decision.model_copy(deep=True)


def test_route_mode_returns_and_logs_the_decision(router, tmp_path, builtin):
    d = router.invoke(MESSAGE)
    assert isinstance(d, RoutingDecision) and d.valid and not d.fallback
    assert set(d.tool_names) <= {t.name for t in builtin}
    [rec] = logged(tmp_path)
    meta = rec.metadata
    assert rec.input.user_message == MESSAGE and rec.tool_names == d.tool_names
    assert meta.decision_id == d.decision_id and meta.source == "live" and meta.mode == "route"
    assert meta.confidence == d.confidence and meta.latency_ms > 0 and meta.scores == d.scores
    assert meta.model.startswith("gemma-3-270m") and meta.turn_key
    assert rec.input.tool_schemas is None  # built-in tools: the names suffice


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
    decisions = [router.invoke(value) for value in inputs] + [(prompt | router).invoke({"q": "check disk"})]
    assert all(isinstance(d, RoutingDecision) for d in decisions)
    # one decision per human turn: the same turn (text and earlier turns) is routed and logged once
    ids = [d.decision_id for d in decisions]
    assert ids[0] == ids[1] == ids[5] and ids[2] == ids[3] and len(set(ids)) == 3
    recs = logged(tmp_path)
    assert [(r.input.user_message, [t.user for t in r.input.context]) for r in recs] == [
        ("check disk", []), ("what about the disk?", ["what is on the server?"]),
        ("check disk", ["what is on the server?"])]
    assert recs[1].input.context[0].reply == "Several services."
    turn = parse_turn({"messages": history})
    assert turn.messages[0].content == "You are an ops agent." and turn.text == "what about the disk?"
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


def decision_runs(run):
    found = [run] if run.name == DECISION_RUN else []
    for child in run.child_runs:
        found += decision_runs(child)
    return found


def test_decisions_are_child_runs_in_the_trace(router):
    collector = RunCollectorCallbackHandler()
    bound = router.with_config(tags=["routing"], metadata={"user": "u1"}, run_name="route-turn")
    d = bound.invoke(MESSAGE, config={"callbacks": [collector]})
    [run] = collector.traced_runs
    assert run.name == "route-turn" and "routing" in run.tags and run.extra["metadata"]["user"] == "u1"
    assert run.outputs and run.error is None
    [child] = decision_runs(run)
    meta = child.extra["metadata"]
    assert child.parent_run_id == run.id
    assert meta[DECISION_ID_KEY] == d.decision_id and meta["openhoof_selected"] == d.tool_names
    assert meta["openhoof_scores"] == d.scores and meta["openhoof_confidence"] == d.confidence
    assert meta["openhoof_latency_ms"] > 0 and meta["openhoof_model"].startswith("gemma-3-270m")

    async def traced():
        collector = RunCollectorCallbackHandler()
        await router.ainvoke("notify the operator", config={"callbacks": [collector]})
        return collector.traced_runs

    [arun] = asyncio.run(traced())
    assert len(decision_runs(arun)) == 1  # the async path records it too


def test_thresholds_choose_the_fallback(engine, builtin, tmp_path):
    follow = ToolRouter(builtin, engine=engine, data_dir=tmp_path, threshold=0)
    first = follow.invoke(MESSAGE)
    assert not first.fallback and first.fallback_reason is None
    never = ToolRouter(builtin, engine=engine, data_dir=tmp_path, threshold=1.01)
    d = never.invoke(MESSAGE)
    assert d.fallback and d.fallback_reason == "low_confidence"
    # 10 tools: the fallback keeps the best-scored half (fallback_share 0.5), logged with it
    assert d.fallback_tools == sorted(d.scores, key=lambda n: -d.scores[n])[:5] and d.tool_names[0] in d.fallback_tools
    every = ToolRouter(builtin, engine=engine, data_dir=tmp_path / "every", threshold=1.01, fallback_share=1.0)
    assert every.invoke(MESSAGE).fallback_tools == []  # 1: every tool
    # Per-tool thresholds: the same (deterministic) decision, now guarded by its own tool.
    guarded = ToolRouter(builtin, engine=engine, data_dir=tmp_path, threshold=0,
                         tool_thresholds={(first.tool_names or ["none"])[0]: 1.01})
    g = guarded.invoke(MESSAGE)
    assert g.tool_names == first.tool_names and g.fallback
    lenient = ToolRouter(builtin, engine=engine, data_dir=tmp_path, threshold=1.01,
                         tool_thresholds={n: 0.0 for n in [t.name for t in builtin] + ["none"]})
    assert not lenient.invoke(MESSAGE).fallback  # per-tool thresholds may also be lower
    recs = logged(tmp_path)
    assert [r.metadata.fallback for r in recs] == [False, True, True, False]
    assert recs[1].metadata.threshold == 1.01 and recs[1].metadata.fallback_reason == "low_confidence"
    assert recs[1].metadata.fallback_tools == d.fallback_tools
    assert recs[2].metadata.fallback_reason.startswith("tool_threshold:")


def test_invalid_decision_is_a_logged_fallback(engine, builtin, tmp_path):
    broken = RoutingDecision(valid=False, error="unreadable answer", confidence=0.99)
    router = ToolRouter(builtin, engine=FixedEngine(engine.backend, broken), data_dir=tmp_path, threshold=0)
    d = router.invoke(MESSAGE)
    assert d.fallback and d.fallback_reason == "invalid"
    [rec] = logged(tmp_path)
    assert rec.metadata.valid is False and rec.metadata.fallback is True


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
    assert rec.input.user_message == "Check" and rec.metadata.truncated
