"""Training on a tiny Gemma 3 built with the real tokenizer: loss falls, export → llama.cpp
routes, --auto thresholds, and promotion refuses a worse model. Real files, real processes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from openhoof_router.base_model import BaseModelRef, float_checkpoint  # noqa: E402
from openhoof_router.paths import Paths  # noqa: E402
from openhoof_router.registry import ModelRegistry  # noqa: E402
from openhoof_router.training.config import TrainConfig  # noqa: E402
from openhoof_router.training.dataset import Assembled, curated_eval, curated_train, to_examples  # noqa: E402


def tiny_config():
    from transformers import Gemma3TextConfig

    return Gemma3TextConfig(vocab_size=262144, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                            num_attention_heads=2, num_key_value_heads=1, head_dim=256, query_pre_attn_scalar=256,
                            max_position_embeddings=2048, initializer_range=0.02)


@pytest.fixture(scope="module")
def tokenizer(base_ref, cache_dir):
    from transformers import AutoTokenizer

    folder = float_checkpoint(base_ref, Paths(cache_dir, cache_dir, cache_dir, cache_dir))
    return AutoTokenizer.from_pretrained(folder)


@pytest.fixture(scope="module")
def tiny_gguf(base_ref, tmp_path_factory) -> BaseModelRef:
    """A random tiny Gemma 3 written as GGUF with the real tokenizer: a base for fast runs."""
    from transformers import Gemma3ForCausalLM

    from openhoof_router.base_model import sha256_file
    from openhoof_router.training.export import write_gguf

    torch.manual_seed(0)
    model = Gemma3ForCausalLM(tiny_config())
    path = write_gguf(model, model.config, base_ref.gguf, tmp_path_factory.mktemp("tiny") / "tiny.gguf", dtype="f32")
    return BaseModelRef("tiny-gemma3", gguf=path, sha256=sha256_file(path))


def tiny_model():
    from transformers import Gemma3ForCausalLM

    torch.manual_seed(0)
    return Gemma3ForCausalLM(tiny_config())


def test_shared_prefix_loss_equals_full_forward_loss(tokenizer):
    from openhoof_router.training.cpu_trainer import batch_loss, make_batches

    model = tiny_model().eval()
    batch = make_batches(to_examples(curated_train()[:4], group_size=4), tokenizer, 4)[0]
    prefix, items = batch
    with torch.no_grad():
        shared = batch_loss(model, batch).item()
        total, count = 0.0, 0
        for user, answer in items:
            logits = model(input_ids=torch.tensor([prefix + user + answer])).logits[0]
            start = len(prefix) + len(user) - 1
            total += torch.nn.functional.cross_entropy(logits[start : start + len(answer)], torch.tensor(answer),
                                                       reduction="sum").item()
            count += len(answer)
    assert shared == pytest.approx(total / count, rel=1e-4)


def test_tiny_training_loss_falls_and_export_routes(tiny_gguf, tokenizer, home, tmp_path):
    from openhoof_router.engine import RouterEngine
    from openhoof_router.training.pipeline import run

    paths = Paths.resolve()
    cfg = TrainConfig(max_steps=12, batch_size=4, lr=3e-3, threads=2, val_fraction=0.25)
    data = Assembled(train=curated_train()[:32])
    eval_file = tmp_path / "held_out.jsonl"
    eval_file.write_text("".join(r.model_dump_json() + "\n" for r in curated_eval()[:12]))
    manifest = run(paths, cfg, base_model=tiny_gguf, eval_file=eval_file, progress=False,
                   model_override=(tiny_model(), tokenizer), data=data)
    run_dir = Path(manifest["path"]) if "path" in manifest else paths.runs_dir / manifest["run_id"]
    losses = [r["loss"] for r in json.loads((run_dir / "history.json").read_text()) if "loss" in r]
    assert len(losses) == 12
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3
    for name in ("manifest.json", "router-q8_0.gguf", "peft/adapter_config.json", "loss.png", "confusion.png"):
        assert (run_dir / name).exists(), name
    assert manifest["base_model"]["sha256"] == tiny_gguf.sha256
    assert manifest["data"]["n_examples"] == 32 and manifest["hyperparameters"]["lora_rank"] == 16
    assert manifest["metrics"]["held_out"]["n"] == 12
    engine = RouterEngine.load(backend="llama.cpp", base_model=tiny_gguf, model=run_dir, n_threads=2)
    decision = engine.route("check disk space", ["exec", "notify"])
    assert decision.valid and decision.adapter == run_dir.name
    engine.close()


def _cli(home: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "openhoof_router.training.cli", "--home", str(home), *args],
                          capture_output=True, text=True, timeout=900)


def test_auto_below_and_above_threshold(tiny_gguf, home):
    below = _cli(home, "--auto", "--min-examples", "100000")
    assert below.returncode == 0, below.stderr
    assert "more needed" in below.stderr
    assert not Paths.resolve().latest_pointer.exists()

    above = _cli(home, "--auto", "--min-examples", "10", "--base-model", str(tiny_gguf.gguf), "--max-steps", "2",
                 "--threads", "2", "--no-progress", "--force-promote")
    assert above.returncode == 0, above.stderr[-3000:]
    assert "training" in above.stderr and "promoted" in above.stderr
    latest = ModelRegistry(Paths.resolve()).latest()
    assert latest and Path(latest["path"], "router-q8_0.gguf").exists()

    again = _cli(home, "--auto", "--min-examples", "10")  # nothing new since the promoted run
    assert again.returncode == 0 and "0 new examples" in again.stderr


def test_promotion_refuses_a_worse_model(tiny_gguf, tokenizer, home, tmp_path):
    """The incumbent scores 100 % by construction (labels are its own answers); a model
    trained to always answer one other tool scores lower and must not be promoted."""
    from openhoof_router.engine import RouterEngine
    from openhoof_router.records import TrainingRecord
    from openhoof_router.training.pipeline import run

    paths = Paths.resolve()
    tools = ["exec", "notify", "shared_log"]
    incumbent = RouterEngine.load(backend="llama.cpp", base_model=tiny_gguf, n_threads=2)
    messages = [r.input.user_message for r in curated_eval()[:20]]
    labelled = [(m, incumbent.route(m, tools).tool_names) for m in messages]
    incumbent.close()
    labelled = [(m, t) for m, t in labelled if t != ["shared_log"]][:10]
    assert labelled
    eval_file = tmp_path / "incumbent_labels.jsonl"
    eval_file.write_text("".join(TrainingRecord.make(m, tools, t, "test").model_dump_json() + "\n" for m, t in labelled))
    skewed = Assembled(train=[TrainingRecord.make(r.input.user_message, tools, ["shared_log"], "test")
                              for r in curated_train()[:16]])
    cfg = TrainConfig(max_steps=15, batch_size=4, lr=2e-2, threads=2, val_fraction=0.0)
    manifest = run(paths, cfg, base_model=tiny_gguf, eval_file=eval_file, progress=False,
                   model_override=(tiny_model(), tokenizer), data=skewed)
    assert manifest["metrics"]["incumbent"]["accuracy"] == 1.0
    assert manifest["metrics"]["held_out"]["accuracy"] < 1.0
    assert manifest["promoted"] is False
    assert ModelRegistry(paths).latest() is None
