"""Decision / outcome logs: the record format, faults, the join, process concurrency (and
a writer killed mid-append), random input to the reader. Outcome logging from real LangChain
tool runs through a router is in tests/integration/test_outcome_callbacks.py."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import signal
import threading
import time

from hypothesis import given, settings
from hypothesis import strategies as st

from openhoof_router.core.records import LoggedDecision, OutcomeRecord, RoutingDecision, ToolCall, TrainingRecord
from openhoof_router.core.tools import normalize_tools
from openhoof_router.store.jsonl import read_jsonl
from openhoof_router.store.logs import DecisionLog, OutcomeLog, join_logs, read_joined


def _decision(*names: str, confidence: float = 0.9, **kw) -> RoutingDecision:
    return RoutingDecision(tool_calls=[ToolCall(name=n) for n in names], confidence=confidence,
                           latency_ms=12.5, model="m", adapter="run-1", backend="llama.cpp", **kw)


def test_decision_record_is_the_seed_format(tmp_path, builtin):
    log = DecisionLog(data_dir=tmp_path)
    d = _decision("exec")
    log.record(d, "Check disk space", builtin, mode="narrow", threshold=0.5)
    [line] = (tmp_path / "training_data.jsonl").read_text().splitlines()
    raw = json.loads(line)
    assert set(raw) == {"input", "output", "metadata"}
    # the tool list is stored once beside the log and named by hash; reading fills it back in
    assert raw["input"] == {"user_message": "Check disk space", "toolset": raw["input"]["toolset"]}
    assert (tmp_path / "toolsets" / f"{raw['input']['toolset']}.json").is_file()
    assert log.read().records[0].input.tools == [t.name for t in builtin]
    assert raw["output"] == {"tool_calls": [{"name": "exec", "arguments": {}}]}
    meta = raw["metadata"]
    assert meta["source"] == "live" and meta["tool"] == "exec"
    assert meta["decision_id"] == d.decision_id and meta["mode"] == "narrow"
    for key in ("timestamp", "model", "adapter", "latency_ms", "confidence", "threshold", "fallback", "valid"):
        assert key in meta
    assert TrainingRecord.model_validate(raw).tool_names == ["exec"]


def test_custom_tools_travel_with_the_record_and_messages_are_capped(tmp_path):
    custom = normalize_tools([{"name": "get_weather", "description": "Weather for a city",
                               "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}])
    log = DecisionLog(data_dir=tmp_path, max_message_chars=10)
    log.record(_decision(), "what about Texas? " * 20, custom, mode="route")
    rec = log.read().records[0]
    assert rec.input.user_message == "what about" and rec.metadata.truncated is True
    assert rec.output.tool_calls == [] and rec.metadata.tool == "none"
    assert rec.input.tool_schemas[0]["function"]["name"] == "get_weather"


def test_logging_off_writes_nothing_and_checks_nothing(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    log = DecisionLog(data_dir=blocker / "data", enabled=False)  # would be unwritable
    assert log.record(_decision("exec"), "m", normalize_tools(["exec"]), mode="route") is None
    assert not (blocker / "data").exists()


def test_env_var_moves_the_data_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENHOOF_DATA_DIR", str(tmp_path / "elsewhere"))
    log = DecisionLog()
    assert log.path == tmp_path / "elsewhere" / "training_data.jsonl"
    monkeypatch.delenv("OPENHOOF_DATA_DIR")
    monkeypatch.setenv("OPENHOOF_HOME", str(tmp_path / "home"))
    assert OutcomeLog().path == tmp_path / "home" / "data" / "function_pipeline" / "outcomes.jsonl"


def test_torn_and_corrupt_lines_are_skipped_and_counted(tmp_path, builtin):
    log, outcomes = DecisionLog(data_dir=tmp_path), OutcomeLog(data_dir=tmp_path)
    first = _decision("exec")
    log.record(first, "one", builtin, mode="route")
    with open(log.path, "a") as fh:
        fh.write("not json at all\n{\"input\": 3}\n[1, 2]\n")
        fh.write('{"input": {"user_message": "torn')  # a writer died mid-line
    second = _decision("notify")
    log.record(second, "two", builtin, mode="route")  # moves the torn tail aside first
    assert (tmp_path / "training_data.jsonl.torn").read_text() == '{"input": {"user_message": "torn\n'
    outcomes.confirm(first.decision_id)
    with open(outcomes.path, "a") as fh:
        fh.write('{"decision_id": "x", "kind": "exploded"}\n{"decision_id": "ab')
    result = log.read()
    assert [r.input.user_message for r in result] == ["one", "two"]
    assert result.skipped == 3 and result.errors and not result.torn
    joined = read_joined(data_dir=tmp_path)
    assert joined.skipped_decisions == 3 and joined.skipped_outcomes == 2  # the outcomes' torn tail
    assert read_jsonl(outcomes.path).torn == 1
    assert joined.by_id()[first.decision_id].status == "confirmed"


def test_feedback_and_join(tmp_path, builtin):
    log, outcomes = DecisionLog(data_dir=tmp_path), OutcomeLog(data_dir=tmp_path)
    ok, wrong, fell_back, ran = _decision("exec"), _decision("notify"), _decision("exec"), _decision("exec")
    fell_back.fallback = True
    for i, d in enumerate([ok, wrong, fell_back, ran]):
        log.record(d, f"message {i}", builtin, mode="narrow")
    outcomes.confirm(ok.decision_id)
    outcomes.correct(wrong.decision_id, ["shared_search", "notify"])
    outcomes.confirm(fell_back.decision_id)
    outcomes.tool_end(ran.decision_id, "exec", "ok")
    outcomes.tool_end("not-logged", "exec")
    joined = read_joined(data_dir=tmp_path)
    by_id = joined.by_id()
    assert by_id[ok.decision_id].label == ["exec"]
    assert by_id[wrong.decision_id].status == "corrected"
    assert by_id[wrong.decision_id].label == ["shared_search", "notify"]
    assert by_id[fell_back.decision_id].label is None  # the router's answer was not followed
    assert by_id[ran.decision_id].status == "tools_ok" and by_id[ran.decision_id].label is None  # runs alone vouch for nothing
    assert [o.decision_id for o in joined.orphans] == ["not-logged"]
    outcomes.correct(ok.decision_id, [])  # "no tool was needed"
    again = join_logs(log.read(), outcomes.read()).by_id()
    assert again[ok.decision_id].label == []


# -- several processes appending at once ----------------------------------------------

N_PROCESSES, N_APPENDS, N_THREADS = 4, 200, 2


def _append_worker(data_dir: str, worker: int, count: int, threads: int, go) -> None:
    log = DecisionLog(data_dir=data_dir)
    tools = normalize_tools(["exec", "notify", "memory_read"])
    go.wait()

    def run(thread: int) -> None:
        for i in range(thread, count, threads):
            d = RoutingDecision(decision_id=f"w{worker}-{i}", tool_calls=[ToolCall(name="exec")],
                                confidence=0.9)
            log.record(d, f"process {worker} append {i} " + "x" * 300, tools, mode="route")

    pool = [threading.Thread(target=run, args=(t,)) for t in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()


def test_concurrent_appends_from_processes(tmp_path, record_property):
    ctx = mp.get_context("spawn")  # real, fresh processes
    go = ctx.Event()
    procs = [ctx.Process(target=_append_worker, args=(str(tmp_path), w, N_APPENDS, N_THREADS, go))
             for w in range(N_PROCESSES)]
    for p in procs:
        p.start()
    time.sleep(1.0)  # let them all import and reach the start line
    started = time.perf_counter()
    go.set()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    seconds = time.perf_counter() - started
    lines = (tmp_path / "training_data.jsonl").read_text().splitlines()
    result = read_jsonl(tmp_path / "training_data.jsonl", LoggedDecision)
    ids = [r.metadata.decision_id for r in result]
    expected = {f"w{w}-{i}" for w in range(N_PROCESSES) for i in range(N_APPENDS)}
    figures = {"processes": N_PROCESSES, "threads_per_process": N_THREADS, "appends_per_process": N_APPENDS,
               "expected": len(expected), "lines_found": len(lines), "valid": len(result),
               "skipped": result.skipped, "seconds": round(seconds, 2)}
    print("concurrency figures:", json.dumps(figures))
    record_property("concurrency", json.dumps(figures))
    assert result.skipped == 0 and len(lines) == len(expected)
    assert len(ids) == len(set(ids)) and set(ids) == expected


def _endless_writer(data_dir: str, worker: int, ready) -> None:
    log = DecisionLog(data_dir=data_dir)
    tools = normalize_tools(["exec", "notify"])
    ready.set()
    i = 0
    while True:  # until killed
        d = RoutingDecision(decision_id=f"k{worker}-{i}", tool_calls=[ToolCall(name="exec")])
        log.record(d, f"writer {worker} line {i} " + "y" * (50 + (i * 37) % 3000), tools, mode="route")
        i += 1


def test_a_writer_killed_mid_append_leaves_only_whole_lines(tmp_path):
    """Each append is one write(): lines never interleave, and only the last line can be torn
    (Linux may cut a write short on SIGKILL); the next append moves such a tail aside."""
    ctx = mp.get_context("spawn")
    readies = [ctx.Event() for _ in range(3)]
    procs = [ctx.Process(target=_endless_writer, args=(str(tmp_path), w, readies[w])) for w in range(3)]
    for p in procs:
        p.start()
    for ready in readies:
        assert ready.wait(60)
    path = tmp_path / "training_data.jsonl"
    deadline = time.monotonic() + 30
    while (not path.exists() or path.stat().st_size < 200_000) and time.monotonic() < deadline:
        time.sleep(0.02)
    os.kill(procs[0].pid, signal.SIGKILL)  # one writer dies mid-stream, the others go on
    time.sleep(0.3)
    for p in procs[1:]:
        os.kill(p.pid, signal.SIGKILL)
    for p in procs:
        p.join(30)
    assert all(p.exitcode == -signal.SIGKILL for p in procs)
    data = path.read_bytes()
    result = read_jsonl(path, LoggedDecision)
    assert result.skipped == result.torn and len(result) == data.count(b"\n") > 100
    DecisionLog(data_dir=tmp_path).record(_decision("exec"), "after the kill", normalize_tools(["exec"]),
                                          mode="route")
    after = read_jsonl(path, LoggedDecision)
    assert after.skipped == 0 and after.records[-1].input.user_message == "after the kill"


@settings(max_examples=60, deadline=None)
@given(st.lists(st.one_of(st.binary(max_size=300), st.text(max_size=300),
                          st.just(b'{"input": {"user_message": "x"}}'), st.just(b"\xff\xfe{")), max_size=20))
def test_the_reader_never_raises_on_random_bytes(tmp_path_factory, chunks):
    path = tmp_path_factory.mktemp("fuzz") / "log.jsonl"
    path.write_bytes(b"\n".join(c if isinstance(c, bytes) else c.encode("utf-8", "surrogatepass") for c in chunks))
    for model in (None, LoggedDecision, TrainingRecord, OutcomeRecord):
        result = read_jsonl(path, model)
        assert len(result) + result.skipped <= len(path.read_bytes().splitlines()) + 1


def test_outcome_record_roundtrip(tmp_path):
    log = OutcomeLog(data_dir=tmp_path, max_detail_chars=5)
    log.tool_error("d1", "exec", "a very long traceback")
    [rec] = read_jsonl(log.path, OutcomeRecord).records
    assert rec.kind == "tool_error" and rec.detail == "a ver"
