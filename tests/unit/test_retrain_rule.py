"""The one "when to retrain" rule (``retrain_due``), on real data folders: it counts what a run
would train on that the model in place has not seen, and ``hoof-train --auto`` and
``examples/auto_retrain.py`` both apply it."""

from __future__ import annotations

import json
import subprocess
import sys

from support import ROOT

from openhoof_router.core.records import OutcomeRecord, TrainingRecord
from openhoof_router.learning.data.assemble import assemble, curated_eval, curated_train, retrain_due
from openhoof_router.store.jsonl import append_jsonl
from openhoof_router.store.runs import BaseModelInfo, ModelRegistry, RunLayout, RunManifest

TOOLS = ["exec", "notify", "memory_write"]


def generated(paths, *messages: str) -> None:
    """Teacher-written examples, as ``hoof-train generate`` appends them."""
    append_jsonl(paths.synthetic_file, [TrainingRecord.make(m, TOOLS, ["exec"], "synthetic") for m in messages])


def promote_run(paths, n_examples: int) -> str:
    """A promoted run that was trained on ``n_examples`` examples."""
    registry = ModelRegistry(paths)
    layout = RunLayout(root=registry.new_run_dir())
    layout.adapter("cpu").mkdir()
    layout.gguf.write_bytes(b"GGUF")
    RunManifest(run_id=layout.root.name, base_model=BaseModelInfo(name="gemma-3-270m"), data={"n_examples": n_examples},
                files=layout.files(layout.adapter("cpu"), layout.gguf)).save(layout.root)
    registry.promote(layout.root)
    return layout.root.name


def test_a_fresh_install_has_nothing_the_general_adapter_has_not_seen(paths):
    assert len(assemble(paths).train) > 500  # the bundled examples: trained on, but not new
    due, why = retrain_due(paths, 1)
    assert not due and why.startswith("0 new examples since the general adapter") and "1 more needed" in why


def test_vouched_decisions_and_generated_examples_count_tool_runs_alone_do_not(paths):
    append_jsonl(paths.decisions_file, [
        TrainingRecord.make(f"decision number {i}", TOOLS, ["exec"], "live", decision_id=f"d{i}") for i in range(5)])
    append_jsonl(paths.outcomes_file, [
        OutcomeRecord(decision_id="d0", kind="confirm"),
        OutcomeRecord(decision_id="d1", kind="correct", correct_tools=["notify"]),
        OutcomeRecord(decision_id="d2", kind="tool_end", tool="exec"),  # ran fine: vouches for nothing
        OutcomeRecord(decision_id="d3", kind="tool_error", tool="exec"),
    ])  # d4: no outcome at all
    generated(paths, "archive the nightly report", "rotate the proxy logs",
              curated_train()[0].input.user_message,  # already in the training data: not new
              curated_eval()[0].input.user_message)  # held out, never trained on: not new
    assert retrain_due(paths, 4) == (True, "4 new examples since the general adapter (≥ 4): training")
    due, why = retrain_due(paths, 5)
    assert not due and "1 more needed before retraining (--min-examples 5)" in why


def test_the_promoted_run_is_the_baseline(paths):
    generated(paths, *(f"generated request {i}" for i in range(6)))
    run_id = promote_run(paths, len(assemble(paths).train))
    due, why = retrain_due(paths, 1)
    assert not due and why.startswith(f"0 new examples since the promoted run {run_id}")
    generated(paths, "compress last week's traces", "email the on-call summary")
    assert retrain_due(paths, 2) == (True, f"2 new examples since the promoted run {run_id} (≥ 2): training")


def test_the_cli_and_the_example_apply_the_same_rule(paths):
    generated(paths, "archive the nightly report", "rotate the proxy logs", "restart the cache tier")
    cli = subprocess.run([sys.executable, "-m", "openhoof_router.cli.train", "--auto", "--min-examples", "5"],
                         capture_output=True, text=True, timeout=300)
    example = subprocess.run([sys.executable, str(ROOT / "examples" / "auto_retrain.py"), "--min-examples", "5"],
                             capture_output=True, text=True, timeout=300)
    assert cli.returncode == 0 and example.returncode == 0, cli.stderr + example.stderr
    report = json.loads(example.stdout.split("\n\ncron line")[0])
    assert report["would_train"] is False and report["why"] == retrain_due(paths, 5)[1]
    assert "3 new examples since the general adapter; 2 more needed" in " ".join(cli.stderr.split())
