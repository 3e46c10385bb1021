"""A LangChain user's first day with the real embedded model: quiet by default (one line for
the first merge, nothing else beside the JSON), ``--debug`` shows the libraries' output,
hoof-route logs by default and ``status`` says so, whole run ids, samples across classes and
tools, calibration that refuses thin tools, feedback on unknown decisions refused."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from openhoof_router.cli.train import main as train_main
from openhoof_router.learning.evaluation.calibrate import MIN_SUPPORT
from openhoof_router.learning.evaluation.evaluate import sample_items
from openhoof_router.learning.run import held_out_items
from openhoof_router.serving.service import RouterService, UnknownDecisionError
from openhoof_router.store.paths import Paths
from openhoof_router.store.runs import GENERAL_DIR, RunManifest

MESSAGE = "Check disk space on the server"


def _env(home: Path, cache: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENHOOF_")}
    return {**env, "OPENHOOF_HOME": str(home), "OPENHOOF_CACHE_DIR": str(cache), "OPENHOOF_THREADS": "1"}


def _cli(module: str, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", f"openhoof_router.cli.{module}", *args], capture_output=True,
                          text=True, timeout=900, env=env)


def _fresh_cache(tmp_path: Path, base_ref) -> Path:
    """A cache holding only the base GGUF (linked, with its checksum file): nothing merged yet."""
    cache = tmp_path / "fresh-cache"
    (cache / "base").mkdir(parents=True)
    (cache / "base" / base_ref.gguf.name).symlink_to(base_ref.gguf)
    sidecar = base_ref.gguf.with_name(base_ref.gguf.name + ".sha256.json")
    shutil.copy(sidecar, cache / "base" / sidecar.name)
    return cache


def test_the_first_route_in_a_fresh_cache_says_it_merges_the_general_adapter(tmp_path, base_ref):
    env = _env(tmp_path / "home", _fresh_cache(tmp_path, base_ref))
    first = _cli("route", MESSAGE, "--no-log", env=env)
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout)["serving"]["source"] == "general"
    [notice] = first.stderr.splitlines()  # one line, and only because the merge is done now
    assert notice.startswith("openhoof-router: merging general-") and "once" in notice
    again = _cli("route", MESSAGE, "--no-log", env=env)
    assert again.returncode == 0 and again.stderr == "" and json.loads(again.stdout)


def test_plain_hoof_route_prints_json_only_logs_by_default_and_debug_shows_the_rest(tmp_path, cache_dir):
    home = tmp_path / "home"
    env = _env(home, cache_dir)
    plain = _cli("route", MESSAGE, "--model", "base", "--json", env=env)
    assert plain.returncode == 0, plain.stderr
    assert plain.stderr == ""  # nothing but the JSON (llama.cpp's load log used to print here)
    [line] = plain.stdout.splitlines()
    assert json.loads(line)["message"] == MESSAGE
    decisions = Paths.resolve(home=home).decisions_file
    assert len(decisions.read_text().splitlines()) == 1  # logged by default, as the README says

    debug = _cli("route", MESSAGE, "--model", "base", "--debug", "--no-log", env=env)
    assert debug.returncode == 0 and json.loads(debug.stdout)
    assert "llama_" in debug.stderr  # llama.cpp's own log, hidden unless asked for
    assert len(decisions.read_text().splitlines()) == 1


def test_status_shows_whole_run_ids_and_says_why_live_is_zero(home):
    run_id = "20261201-101010-a-long-run-id-that-a-narrow-table-would-cut"
    run_dir = Paths.resolve().runs_dir / run_id
    run_dir.mkdir(parents=True)
    manifest = RunManifest.load(GENERAL_DIR).model_copy(update={"run_id": run_id, "kind": "user"})
    manifest.save(run_dir)
    result = CliRunner().invoke(train_main, ["status"])
    assert result.exit_code == 0, result.output
    assert run_id in result.stdout
    live = result.stdout[result.stdout.index("live: 0 decisions"):]
    assert "hoof-route too unless --no-log" in " ".join(live.split())


def test_feedback_on_an_unknown_decision_is_refused_and_writes_nothing(engine, builtin, paths):
    service = RouterService(engine=engine, paths=paths)
    decision = service.route(MESSAGE, builtin)
    service.confirm(decision.decision_id)
    with pytest.raises(UnknownDecisionError, match="does-not-exist"):
        service.confirm("does-not-exist")
    with pytest.raises(UnknownDecisionError):
        service.correct("does-not-exist", ["exec"])
    later = RouterService(engine=engine, paths=paths, log_decisions=False)  # another process, after a restart
    later.correct(decision.decision_id, ["exec"])  # found in the decision log
    kinds = [json.loads(line)["kind"] for line in paths.outcomes_file.read_text().splitlines()]
    assert kinds == ["confirm", "correct"]


def test_eval_limit_evaluates_a_sample_across_classes_and_tools(tmp_path, cache_dir):
    proc = _cli("train", "eval", "--limit", "20", "--seed", "1", "--json", "--no-progress",
                env=_env(tmp_path / "home", cache_dir))
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(proc.stdout)
    assert report["n"] == 20 and report["sampled_from"] == len(held_out_items())
    assert set(report["per_class"]) == {"none", "one", "two+"}
    assert len([t for t, s in report["per_tool"].items() if s["support"]]) >= 8


def test_calibrate_on_few_records_fits_no_thin_threshold_and_says_so(tmp_path, cache_dir):
    run_dir = tmp_path / "runs" / "general-copy"
    shutil.copytree(GENERAL_DIR, run_dir)  # same run id and adapter: the merged GGUF is cached already
    # what is tested is the fit's bookkeeping on a user's run (a general run never trusts "no tool")
    RunManifest.load(run_dir).model_copy(update={"kind": "user"}).save(run_dir)
    data = tmp_path / "24.jsonl"
    data.write_text("".join(json.dumps({"messages": [{"role": "user", "content": it.message}],
                                        "tools": [t.openai_schema() for t in it.tools],
                                        "expected_tools": sorted(it.expected)}) + "\n"
                            for it in sample_items(held_out_items(), 24, seed=0)))
    env = _env(tmp_path / "home", cache_dir)
    proc = _cli("train", "calibrate", "--run", str(run_dir), "--data", str(data), "--json", "--no-progress", env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    fit = json.loads(proc.stdout)  # JSON only: no table around it
    assert fit["n"] == 24 and fit["min_support"] == MIN_SUPPORT
    assert fit["not_fitted"] and "none" in fit["not_fitted"] and not fit["tool_thresholds"]
    assert RunManifest.load(run_dir).metrics["calibration"]["not_fitted"] == fit["not_fitted"]

    table = _cli("train", "calibrate", "--run", str(run_dir), "--data", str(data), "--dry-run", "--no-progress",
                 env=env)
    assert table.returncode == 0 and "{" not in table.stdout  # the table only, never both
    assert f"not fitted, fewer than {MIN_SUPPORT} decisions" in table.stdout and "dry run" in table.stdout
    # a target out of reach sets thresholds to the top: said in both outputs, with what it costs
    assert 0 <= fit["fallback_rate"] <= 1
    warned = "warning: no threshold reaches the target 90%" in " ".join(table.stdout.split())
    assert warned == bool(fit["out_of_reach"])


def test_transformers_backend_is_quiet_and_can_skip_the_float_copy(tmp_path, base_ref):
    import torch
    from support.tiny_gguf import write_tiny_gguf
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    # a tiny random Gemma 3 with the real tokenizer: the same loading path, a fraction of the work
    torch.manual_seed(0)
    tiny = Gemma3ForCausalLM(Gemma3TextConfig(
        vocab_size=262144, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=1, head_dim=256, query_pre_attn_scalar=256, max_position_embeddings=2048))
    gguf = write_tiny_gguf(tiny, base_ref.gguf, tmp_path / "tiny.gguf")
    script = (
        "import sys\nfrom pathlib import Path\n"
        "from openhoof_router.core.engine import RouterEngine\nfrom openhoof_router.core.tools import builtin_tools\n"
        "from openhoof_router.models.base_model import BaseModelRef\nfrom openhoof_router.store.paths import Paths\n"
        "from openhoof_router.models.transformers_backend import TransformersBackend\n"
        "cache = Path(sys.argv[1])\nbase = BaseModelRef('tiny', gguf=Path(sys.argv[2]), sha256='0' * 64)\n"
        "backend = TransformersBackend(base, paths=Paths(cache, cache, cache, cache), n_threads=1, cache_float=False)\n"
        "engine = RouterEngine(backend)\n"
        "decisions = [engine.route(m, builtin_tools()) for m in ('check disk space', 'and on staging?')]\n"
        "print(len(decisions), *(type(d).__name__ for d in decisions))\n")
    cache = tmp_path / "cache"
    proc = subprocess.run([sys.executable, "-c", script, str(cache), str(gguf)], capture_output=True, text=True,
                          timeout=900, env=_env(tmp_path / "home", cache))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.split() == ["2", "RoutingDecision", "RoutingDecision"]  # a random model: any answer
    assert proc.stderr == ""  # no conversion or weight-loading bar, no past_key_values deprecation warning
    assert not cache.exists() or not any(cache.rglob("*.safetensors"))  # no float copy written
