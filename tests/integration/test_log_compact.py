"""Compact, whole decision-log lines: tool lists stored once by hash (a line's size does
not grow with the tools offered), read back by training and ``hoof-train status``; old
lines with inline schemas still read; writers killed with SIGKILL mid-append of large
lines leave at most a torn last line, which readers skip and count and the next append
moves aside."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import signal
import time

from click.testing import CliRunner

from openhoof_router.core.records import LoggedDecision, RoutingDecision, ToolCall
from openhoof_router.core.tools import normalize_tools
from openhoof_router.learning.data.assemble import live_examples
from openhoof_router.store.jsonl import append_jsonl, read_jsonl
from openhoof_router.store.logs import DecisionLog, OutcomeLog, read_joined
from openhoof_router.store.paths import Paths


def _tools(n: int):
    return normalize_tools([{
        "type": "function",
        "function": {"name": f"svc_tool_{i}", "description": f"Operates service {i}: restarts, checks and reports "
                     f"its state with all the details an operator needs {'x' * 300}",
                     "parameters": {"type": "object", "properties": {
                         "host": {"type": "string", "description": "the host " * 20},
                         "mode": {"type": "string", "enum": ["fast", "full", "dry"]}}}}}
        for i in range(n)])


def _decision(tools, chosen: int = 3) -> RoutingDecision:
    scores = {t.name: round(1 / (i + 2), 6) for i, t in enumerate(tools)}  # every tool scored
    return RoutingDecision(tool_calls=[ToolCall(name=tools[chosen].name)], confidence=0.8, scores=scores,
                           latency_ms=20.0, model="m", backend="llama.cpp")


def test_a_decision_line_does_not_grow_with_the_tool_count(tmp_path, record_property):
    sizes = {}
    for n in (10, 160):
        data = tmp_path / f"n{n}"
        tools = _tools(n)
        log = DecisionLog(data_dir=data)
        for _ in range(3):  # the list is written once, however many decisions name it
            log.record(_decision(tools), "restart the billing service", tools, mode="route")
        lines = (data / "training_data.jsonl").read_bytes().splitlines()
        sizes[n] = max(len(line) for line in lines)
        inline = len(json.dumps([t.openai_schema() for t in tools]))
        assert len(list((data / "toolsets").iterdir())) == 1
        records = log.read().records
        assert len(records) == 3 and records[0].input.tools == [t.name for t in tools]
        assert records[0].input.tool_schemas == [t.openai_schema() for t in tools]  # custom tools: schemas back
        sizes[f"inline_schemas_{n}"] = inline
    figures = {"line_bytes_10_tools": sizes[10], "line_bytes_160_tools": sizes[160],
               "schemas_bytes_160_tools": sizes["inline_schemas_160"]}
    print("decision line figures:", json.dumps(figures))
    record_property("line_size", json.dumps(figures))
    assert sizes[160] - sizes[10] <= 300  # the scores kept are capped; nothing else depends on n
    assert sizes[160] < 2_000 < sizes["inline_schemas_160"]


def test_training_and_status_read_tool_lists_back_and_old_lines_still_read(tmp_path):
    paths = Paths.resolve(home=tmp_path / "home")
    tools = _tools(40)
    log, outcomes = DecisionLog(paths), OutcomeLog(paths)
    new = _decision(tools, chosen=7)
    log.record(new, "restart service seven", tools, mode="route")
    outcomes.confirm(new.decision_id)
    old = LoggedDecision.make("restart service nine (an old line)", [t.name for t in tools], ["svc_tool_9"], "live",
                              tool_schemas=[t.openai_schema() for t in tools], decision_id="old-1")
    append_jsonl(paths.decisions_file, old)  # written before toolsets existed: inline schemas
    outcomes.correct("old-1", ["svc_tool_9"])
    examples, stats = live_examples(paths)
    assert stats["decisions"] == 2 and stats["confirmed"] == 1 and stats["corrected"] == 1
    for example in examples:
        assert example.input.tools == [t.name for t in tools]
        assert [s["function"]["name"] for s in example.input.tool_schemas] == example.input.tools
    assert read_joined(paths).skipped_decisions == 0

    from openhoof_router.cli.train import main

    out = CliRunner().invoke(main, ["--home", str(paths.home), "status", "--json"], catch_exceptions=False).output
    status = json.loads(out[out.index("{"):])
    assert status["live"]["decisions"] == 2 and status["per_source"]["live"] == 2
    assert status["per_tool"]["svc_tool_7"] == status["per_tool"]["svc_tool_9"] == 1

    # a tool list that went missing: its decisions are skipped and counted, never a crash
    for stored in (paths.data_dir / "toolsets").iterdir():
        stored.unlink()
    joined = read_joined(paths)
    assert joined.skipped_decisions == 1 and [j.decision_id for j in joined.items] == ["old-1"]


# -- writers killed mid-append ------------------------------------------------------------------

BIG = "z" * 170_000  # the size of a decision line at 160 tools before tool lists were stored once


def _big_writer(path: str, worker: int, ready) -> None:
    ready.set()
    i = 0
    while True:  # until killed
        append_jsonl(path, {"decision_id": f"w{worker}-{i}", "pad": BIG})
        i += 1


def test_writers_killed_mid_append_of_large_lines_never_leave_a_torn_line_behind(tmp_path, record_property):
    ctx = mp.get_context("spawn")
    path = tmp_path / "training_data.jsonl"
    kills, torn_seen = 10, 0
    for kill in range(kills):
        ready = ctx.Event()
        proc = ctx.Process(target=_big_writer, args=(str(path), kill, ready))
        proc.start()
        assert ready.wait(60)
        start = path.stat().st_size if path.exists() else 0
        deadline = time.monotonic() + 30
        grow = 1_000_000 + kill * 77_777  # kill at varied points of the write loop
        while (not path.exists() or path.stat().st_size < start + grow) and time.monotonic() < deadline:
            time.sleep(0.0005)
        os.kill(proc.pid, signal.SIGKILL)
        proc.join(30)
        assert proc.exitcode == -signal.SIGKILL
        result = read_jsonl(path)
        # whole lines everywhere, except possibly the last one, which the reader flags
        assert result.skipped == result.torn <= 1
        torn_seen += result.torn
    append_jsonl(path, {"decision_id": "after"})
    final = read_jsonl(path)
    moved = path.with_name(path.name + ".torn")
    moved_lines = len(moved.read_bytes().splitlines()) if moved.exists() else 0
    figures = {"kills": kills, "torn_tails_seen": torn_seen, "moved_aside": moved_lines,
               "whole_lines": len(final), "skipped_after": final.skipped}
    print("kill figures:", json.dumps(figures))
    record_property("kills", json.dumps(figures))
    assert final.skipped == 0 and final.records[-1]["decision_id"] == "after"
    assert moved_lines == torn_seen  # each torn tail was moved aside by the append after it
    assert path.read_bytes().endswith(b"\n")
