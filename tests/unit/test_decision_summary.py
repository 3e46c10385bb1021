"""One serialisation of a routing decision: the decision log's metadata, the trace's decision
run and a delegated reply's ``response_metadata`` all show ``RoutingDecision.summary``."""

from __future__ import annotations

import json

from langchain_core.messages import AIMessage

from openhoof_router.core.records import (
    LIVE_SOURCE,
    SUMMARY_FIELDS,
    DecisionMetadata,
    RoutingDecision,
    ToolCall,
)
from openhoof_router.core.tools import ToolSpec
from openhoof_router.langchain.tracing import (
    DECISION_ID_KEY,
    annotate,
    decision_info,
    decision_metadata,
    reply_summary,
)
from openhoof_router.store.logs import DecisionLog
from openhoof_router.store.paths import Paths


def decision() -> RoutingDecision:
    return RoutingDecision(
        tool_calls=[ToolCall(name="exec"), ToolCall(name="notify")], confidence=0.42,
        scores={"exec": 0.9, "notify": 0.6, "read": 0.01}, no_tool_score=0.05, latency_ms=12.34567,
        notes=["message cut to fit"], model="gemma-3-270m@abc", adapter="run-1", backend="llama.cpp",
        fallback=True, fallback_reason="low_confidence", raw="exec,notify",
    )


def test_summary_holds_the_shared_fields_and_what_the_view_adds() -> None:
    d = decision()
    summary = d.summary(mode="narrow")
    assert set(summary) == SUMMARY_FIELDS | {"selected", "mode"}
    assert summary["selected"] == ["exec", "notify"] and summary["latency_ms"] == 12.346
    assert summary["scores"] == d.scores and summary["fallback_reason"] == "low_confidence"
    json.dumps(summary)  # plain JSON: traces and reply metadata serialise it as it is


def test_every_summary_field_is_a_logged_field() -> None:
    assert SUMMARY_FIELDS <= set(DecisionMetadata.model_fields)


def test_the_log_line_carries_the_summary(tmp_path) -> None:
    d = decision()
    log = DecisionLog(Paths(home=tmp_path, data_dir=tmp_path / "data", models_dir=tmp_path, cache_dir=tmp_path))
    log.record(d, "restart the web tier and tell me", [ToolSpec(name=n) for n in ("exec", "notify", "read")],
               mode="narrow", threshold=0.5, turn_key="id:m1")
    log.close()
    [line] = log.path.read_text().splitlines()
    meta = json.loads(line)["metadata"]
    summary = d.summary()
    assert meta["tool"] == ",".join(summary.pop("selected")) and meta["source"] == LIVE_SOURCE
    assert {k: meta[k] for k in summary} == summary
    assert (meta["mode"], meta["threshold"], meta["turn_key"], meta["truncated"]) == ("narrow", 0.5, "id:m1", False)
    assert "selected" not in meta  # the seed's line format keeps its ``tool`` key only
    assert log.read().records[0].metadata.decision_id == d.decision_id


def test_trace_metadata_is_the_prefixed_summary() -> None:
    d = decision()
    meta = decision_metadata(d, "hint")
    assert meta == {f"openhoof_{k}": v for k, v in d.summary(mode="hint").items()}
    assert meta[DECISION_ID_KEY] == d.decision_id and meta["openhoof_selected"] == ["exec", "notify"]


def test_reply_metadata_is_the_summary_with_the_tools_sent() -> None:
    d = decision()
    reply = annotate(AIMessage(content="done"), reply_summary(d, "narrow", ("exec", "notify", "read")))
    assert decision_info(reply) == {**d.summary(mode="narrow"), "sent_tools": ["exec", "notify", "read"]}
    assert decision_info(AIMessage(content="not routed")) is None
