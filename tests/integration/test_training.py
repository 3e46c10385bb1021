"""Training on a tiny Gemma 3 built with the real tokenizer: the trainer's tokens are llama.cpp's,
the shared-prefix loss, determinism, the same loss and training on a CUDA GPU (where one is
visible), the whole run (loss falls, export → llama.cpp routes, calibration, gate), --auto
thresholds, and CLI options. Real files, real processes. (The paired gate and the loop's
progress lines are unit tests.)"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from openhoof_router.core.prompt import PROMPT_FORMAT  # noqa: E402
from openhoof_router.learning.config import TrainConfig  # noqa: E402
from openhoof_router.learning.data.assemble import Assembled, curated_eval, curated_train  # noqa: E402
from openhoof_router.learning.data.groups import record_tools, records_to_groups  # noqa: E402
from openhoof_router.learning.evaluation.safe_side import OWN_RECALL, RECALL  # noqa: E402
from openhoof_router.models.base_model import BaseModelRef, float_checkpoint  # noqa: E402
from openhoof_router.serving.settings import DEFAULT_NO_TOOL_THRESHOLD  # noqa: E402
from openhoof_router.store.paths import Paths  # noqa: E402
from openhoof_router.store.runs import ModelRegistry, ServedRun  # noqa: E402

pytestmark = pytest.mark.slow


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
def codec(tokenizer):
    from openhoof_router.core.prompt import PromptCodec
    from openhoof_router.models.hf import HFTokenizer

    return PromptCodec(HFTokenizer(tokenizer))


@pytest.fixture(scope="module")
def tiny_gguf(base_ref, tmp_path_factory) -> BaseModelRef:
    """A random tiny Gemma 3 written as GGUF with the real tokenizer: a base for fast runs."""
    from support.tiny_gguf import write_tiny_gguf
    from transformers import Gemma3ForCausalLM

    from openhoof_router.models.base_model import sha256_file

    torch.manual_seed(0)
    model = Gemma3ForCausalLM(tiny_config())
    path = write_tiny_gguf(model, base_ref.gguf, tmp_path_factory.mktemp("tiny") / "tiny.gguf")
    return BaseModelRef("tiny-gemma3", gguf=path, sha256=sha256_file(path))


def tiny_model():
    from transformers import Gemma3ForCausalLM

    torch.manual_seed(0)
    return Gemma3ForCausalLM(tiny_config())


def groups(n: int = 16, size: int = 4, seed: int = 0):
    return records_to_groups(curated_train()[:n], group_size=size, seed=seed)


def test_shared_prefix_loss_equals_full_forward_loss(codec):
    """The verdict loss read from one tool-block pass per group (padded requests, two rows of
    the output head) equals the same loss read from a full forward pass over each prompt."""
    from torch.nn.functional import softplus

    from openhoof_router.learning.data.groups import encode_groups
    from openhoof_router.learning.trainers.torch_lora import LISTWISE_WEIGHT, group_loss

    model = tiny_model().eval()
    [group, *_] = encode_groups(codec, groups(4, 4), max_tokens=2048)[0]
    assert len(group.items) > 1 and len({len(it.ids) for it in group.items}) > 1  # padding is exercised
    with torch.no_grad():
        shared = group_loss(model, group, codec.yes_id, codec.no_id).item()
        total = 0.0
        for item in group.items:
            logits = model(input_ids=torch.tensor([list(group.prefix) + list(item.ids)])).logits[0]
            rows = logits[[len(group.prefix) + p for p in item.positions]]
            margins = rows[:, codec.yes_id] - rows[:, codec.no_id]
            needed = torch.tensor(item.labels, dtype=torch.bool)
            total += (softplus(-margins[needed]).mean() + softplus(margins[~needed]).mean()
                      - LISTWISE_WEIGHT * torch.log_softmax(margins, 0)[needed].mean()).item()
    assert shared == pytest.approx(total, rel=1e-4)


def test_pieces_reading_one_tool_block_pass_give_the_whole_groups_gradient(codec):
    """A group split into pieces (to bound memory) runs its tool block once: the pieces read a
    detached copy and the sum of their gradients goes back through the pass once. Every
    weight's gradient equals the one of the whole group in one batch; leaving out the way
    back through the pass (the tool block's share) makes it differ."""
    from openhoof_router.learning.data.groups import encode_groups, split_group
    from openhoof_router.learning.trainers.torch_lora import ToolBlockState, group_loss

    model = tiny_model()
    [group, *_] = encode_groups(codec, groups(8, 8), max_tokens=2048)[0]
    pieces = split_group(group, 3 * max(len(it.ids) for it in group.items))
    assert len(pieces) > 1 and sum(len(p.items) for p in pieces) == len(group.items)

    def grads(split: bool, through_prefix: bool = True) -> dict[str, torch.Tensor]:
        model.zero_grad(set_to_none=True)
        if not split:
            group_loss(model, group, codec.yes_id, codec.no_id).backward()
        else:
            state = ToolBlockState(model, group.prefix, detach=True)
            for piece in pieces:
                group_loss(model, piece, codec.yes_id, codec.no_id, state=state).backward()
            if through_prefix:
                state.backward()
        return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    whole, split, cut = grads(False), grads(True), grads(True, through_prefix=False)
    assert whole.keys() == split.keys() and "model.layers.0.self_attn.k_proj.weight" in whole
    for name, grad in whole.items():
        assert (split[name] - grad).abs().max() <= 1e-5 * grad.abs().max(), name  # float32 summation order
    assert not torch.allclose(cut["model.layers.0.self_attn.k_proj.weight"],
                              whole["model.layers.0.self_attn.k_proj.weight"], rtol=1e-3)


def test_training_is_deterministic_for_a_seed(tokenizer, tmp_path):
    from safetensors.numpy import load_file

    from openhoof_router.learning.trainers.torch_lora import train_torch

    cfg = TrainConfig(max_steps=3, batch_size=4, lr=1e-3, threads=2, start_from="none")
    outs = []
    for i, seed in enumerate((0, 0, 1)):
        result = train_torch(groups(), [], cfg.model_copy(update={"seed": seed}), tmp_path / str(i), None,
                           progress=False, model=tiny_model(), tokenizer=tokenizer)
        outs.append(load_file(str(result.adapter_dir / "adapter_model.safetensors")))
    assert outs[0].keys() == outs[1].keys()
    assert all((outs[0][k] == outs[1][k]).all() for k in outs[0])  # bit for bit
    assert any((outs[0][k] != outs[2][k]).any() for k in outs[0])  # another seed, another adapter


def test_training_examples_are_the_routers_tokens(codec, engine):
    """What the torch trainer reads (the transformers tokenizer's encoding) is, token for token,
    what llama.cpp serves: the tool block, the user turn, the verdict marks, and a label at
    each mark."""
    from openhoof_router.learning.data.groups import encode_groups

    served = engine.codec  # the router's codec over llama.cpp's tokenizer
    encoded, _ = encode_groups(codec, groups(8, 4), max_tokens=2048)
    for group, enc in zip(groups(8, 4), encoded, strict=True):
        assert enc.prefix == served.tool_block(group.tools)
        segment = served.segment(group.tools)
        for sample, item in zip(group.samples, enc.items, strict=True):
            user = served.user_turn(sample.message, sample.context)
            assert item.ids == (*user, *segment.ids)
            assert item.positions == tuple(len(user) + p for p in segment.positions)
            wanted = set(sample.answer)
            assert item.labels == (*(int(t.name in wanted) for t in group.tools), int(not wanted))


gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (run on the device machine)")


@gpu
def test_gpu_verdict_loss_equals_the_cpu_loss(codec):
    from openhoof_router.learning.data.groups import encode_groups
    from openhoof_router.learning.trainers.torch_lora import group_loss

    encoded = encode_groups(codec, groups(8, 4), max_tokens=2048)[0]
    on_cpu, on_gpu = tiny_model().eval(), tiny_model().eval().to("cuda")
    with torch.no_grad():
        for group in encoded:
            cpu_loss = group_loss(on_cpu, group, codec.yes_id, codec.no_id).item()
            gpu_loss = group_loss(on_gpu, group, codec.yes_id, codec.no_id).item()
            assert gpu_loss == pytest.approx(cpu_loss, rel=1e-3)


@gpu
def test_gpu_training_learns_and_checkpoints(tokenizer, tmp_path):
    from openhoof_router.learning.trainers.torch_lora import train_torch

    cfg = TrainConfig(max_steps=12, batch_size=4, lr=3e-3, start_from="none")
    result = train_torch(groups(), groups(4, 4, seed=1), cfg, tmp_path, None, device="cuda", progress=False,
                         model=tiny_model(), tokenizer=tokenizer, checkpoint_every=5)
    losses = [r["loss"] for r in result.history]
    assert result.steps == 12 and result.backend == "cuda-given" and result.peak_gpu_mb
    assert sum(losses[-3:]) < sum(losses[:3])
    assert (result.adapter_dir / "adapter_model.safetensors").exists()
    assert (tmp_path / "checkpoints" / "step-000010" / "optimizer.pt").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA GPU is visible")
def test_cuda_backend_without_a_gpu_says_so(tokenizer, tmp_path):
    from openhoof_router.learning.trainers.torch_lora import train_torch

    with pytest.raises(RuntimeError, match="sees no CUDA GPU"):
        train_torch(groups(4), [], TrainConfig(max_steps=1, start_from="none"), tmp_path, None, device="cuda",
                    progress=False, model=tiny_model(), tokenizer=tokenizer)


@pytest.fixture(scope="module")
def tiny_run(tiny_gguf, tokenizer, tmp_path_factory):
    """One whole hoof-train run on the tiny model: (paths, manifest, held-out file)."""
    from openhoof_router.learning.run import run

    root = tmp_path_factory.mktemp("tiny-home")
    paths = Paths.resolve(home=root)
    cfg = TrainConfig(max_steps=12, batch_size=4, group_size=4, lr=3e-3, threads=2, val_fraction=0.25,
                      start_from="none", replay=8)
    data = Assembled(train=curated_train()[:32])
    eval_file = root / "held_out.jsonl"
    eval_file.write_text("".join(r.model_dump_json() + "\n" for r in curated_eval()[:12]))
    manifest = run(paths, cfg, base_model=tiny_gguf, eval_file=eval_file, progress=False,
                   model_override=(tiny_model(), tokenizer), data=data, general_limit=10)
    return paths, manifest, eval_file


def test_tiny_run_end_to_end(tiny_run, tiny_gguf):
    from openhoof_router.core.engine import RouterEngine

    paths, manifest, _ = tiny_run
    run_dir = paths.runs_dir / manifest.run_id
    history = json.loads((run_dir / "history.json").read_text())
    losses = [r["loss"] for r in history]
    assert len(losses) == 12 and sum(losses[-3:]) / 3 < sum(losses[:3]) / 3
    for name in ("manifest.json", "router-q8_0.gguf", "peft/adapter_config.json", "loss.png", "confusion.png"):
        assert (run_dir / name).exists(), name
    served = ServedRun.open(run_dir)
    assert served.manifest.base_model.sha256 == tiny_gguf.sha256 and served.file("gguf").name == "router-q8_0.gguf"
    assert manifest.data["n_examples"] == 32 and manifest.hyperparameters["lora_rank"] == 16
    assert manifest.metrics["held_out"]["n"] == 12 and manifest.metrics["general"]["n"] == 10
    assert manifest.prompt_format == PROMPT_FORMAT and manifest.decoding.top_threshold is not None
    safe = manifest.metrics["safe_side"]  # narrow mode's safe side, fitted on the same calibration pass
    assert manifest.decoding.keep_threshold == safe["keep_threshold"] and 0 <= safe["turn_recall"] <= 1
    fitted = safe["no_tool_threshold"]  # None when too few no-tool decisions to fit it on: the default then
    assert manifest.decoding.tool_thresholds == ({} if fitted is None else {"none": fitted})
    # turns offering tools outside the user's: fitted on the 10 general calibration messages (corpus tools)
    # and the 10 of the general sample the run is gated on
    trained = {t.name for r in curated_train()[:32] for t in record_tools(r)}
    assert manifest.decoding.known_tools == sorted(trained) and trained
    unseen = manifest.metrics["safe_side_unseen"]
    assert unseen["n"] == 20 and unseen["no_tool_threshold"] > 1
    assert manifest.decoding.unseen_keep_threshold == unseen["keep_threshold"]
    assert (safe["target_recall"], unseen["target_recall"]) == (OWN_RECALL, RECALL)  # own turns: trained beside
    assert manifest.gate["user"]["n"] == 12 and manifest.gate["general"]["n"] == 10
    assert manifest.hardware["cpus"] and manifest.durations["train_s"] > 0
    assert set(manifest.durations) == {"assemble_s", "train_s", "export_s", "calibrate_s", "eval_s", "total_s"}
    assert set(manifest.train) == {"steps", "examples", "peak_rss_mb", "peak_gpu_mb", "final"}
    engine = RouterEngine.load(backend="llama.cpp", base_model=tiny_gguf, model=run_dir, n_threads=2)
    decision = engine.route("check disk space", ["exec", "notify"])
    assert decision.valid and decision.adapter == manifest.run_id
    engine.close()


def test_calibrate_writes_thresholds_that_routers_use(tiny_run, tiny_gguf):
    from openhoof_router.learning.evaluation.calibrate_run import calibrate_run
    from openhoof_router.serving.service import RouterService

    paths, manifest, eval_file = tiny_run
    run_dir = paths.runs_dir / manifest.run_id
    result = calibrate_run(paths, run_dir, eval_file, target=0.9, threads=2, progress=False, base_model=tiny_gguf,
                           plot=run_dir / "thresholds.png")
    assert result["n"] == 12 and (run_dir / "thresholds.png").exists()
    rates = [row["fallback_rate"] for row in result["tradeoff"]]
    assert rates == sorted(rates) and rates[0] <= rates[-1]  # higher thresholds: more fallbacks
    decoding = ServedRun.open(run_dir).manifest.decoding
    assert (decoding.top_threshold, decoding.extra_threshold) == (result["top_threshold"], result["extra_threshold"])
    assert decoding.tool_thresholds == result["tool_thresholds"]
    service = RouterService(model=run_dir, base_model=tiny_gguf, paths=paths, log_decisions=False, n_threads=2)
    try:
        assert (service.engine.rule.top_threshold, service.engine.rule.extra_threshold) == (
            decoding.top_threshold, decoding.extra_threshold)
        # a no-tool threshold the safe side could not fit is the served default ("no tool" needs more)
        assert service.policy.per_tool == {"none": DEFAULT_NO_TOOL_THRESHOLD, **decoding.tool_thresholds}
        assert decoding.keep_threshold == result["safe_side"]["keep_threshold"] == service.policy.keep
        assert decoding.tool_thresholds.get("none") == result["safe_side"]["no_tool_threshold"]
        explicit = RouterService(engine=service.engine, paths=paths, log_decisions=False, tool_thresholds={"exec": 0.7})
        assert explicit.policy.per_tool == {"exec": 0.7, "none": DEFAULT_NO_TOOL_THRESHOLD}
    finally:
        service.close()


def test_pretraining_is_the_run_procedure_with_its_own_data_and_no_gate(tiny_gguf, tmp_path):
    """Pretraining on a slice of the corpus leaves the run folder and manifest a user run does,
    plus the corpus samples it was built with, and is never promoted."""
    from support import SHARED

    from openhoof_router.learning.data.shipped_samples import SAMPLE_FILES
    from openhoof_router.learning.pretrain import GENERAL_DEFAULTS, pretrain
    from openhoof_router.store.runs import RunLayout

    corpus = SHARED / "corpora" / "seal_tools"
    if not corpus.is_dir():
        pytest.skip("the Seal-Tools corpus is not in shared/corpora")
    paths = Paths.resolve(home=tmp_path / "home")
    cfg = GENERAL_DEFAULTS.model_copy(update={"max_steps": 2, "batch_size": 4, "group_size": 4, "threads": 2})
    extra = [(Path(__file__).parents[2] / "training" / "corpora" / "metatool", 2)]  # a second corpus mixed in
    manifest = pretrain(corpus, paths=paths, cfg=cfg, base_model=tiny_gguf, seal_groups_n=4, openhoof_passes=0,
                        extra_corpora=extra, progress=False, checkpoint_every=1)
    layout = RunLayout(root=paths.runs_dir / manifest.run_id)
    assert manifest.kind == "general" and manifest.gate == {} and not manifest.promoted
    assert ModelRegistry(paths).latest() is None
    for path in (layout.manifest, layout.gguf, layout.history, layout.eval_report, layout.loss_plot,
                 layout.confusion_plot, layout.adapter("cpu"), layout.checkpoint(1)):
        assert path.exists(), path
    assert sorted(p.name for p in layout.samples.iterdir()) == sorted(f.name for f in SAMPLE_FILES)
    assert ServedRun.open(layout.root).file("gguf") == layout.gguf
    assert manifest.metrics["general_gate"]["n"] == manifest.data["files"]["general_gate.jsonl"]
    assert manifest.data["groups"] == 6 and manifest.hyperparameters["seal_groups"] == 4
    assert [(c["name"], c["groups"]) for c in manifest.data["extra_corpora"]] == [("metatool", 2)]
    assert "MIT" in manifest.data["extra_corpora"][0]["attribution"]
    # the procedure's own records, as in a user run (test_tiny_run_end_to_end)
    assert set(manifest.train) == {"steps", "examples", "peak_rss_mb", "peak_gpu_mb", "final"}
    assert manifest.train["steps"] == 2 and manifest.data["n_trained"] == manifest.train["examples"]
    assert set(manifest.durations) == {"data_s", "train_s", "export_s", "calibrate_s", "eval_s", "total_s"}

    # --resume: only a folder with checkpoints, only with what it was started with (the trainer's
    # resumed result equals an uninterrupted run's: test_training_resume.py)
    from openhoof_router.store.runs import RunError

    with pytest.raises(RunError, match="no training checkpoint"):
        pretrain(corpus, paths=paths, cfg=cfg, base_model=tiny_gguf, seal_groups_n=4, openhoof_passes=0,
                 progress=False, resume=tmp_path)
    with pytest.raises(RunError, match="train differ"):
        pretrain(corpus, paths=paths, cfg=cfg.model_copy(update={"lr": 1e-3}), base_model=tiny_gguf, seal_groups_n=4,
                 openhoof_passes=0, extra_corpora=extra, progress=False, resume=layout.root)
    with pytest.raises(RunError, match="groups_sha256 differ"):
        pretrain(corpus, paths=paths, cfg=cfg, base_model=tiny_gguf, seal_groups_n=4, openhoof_passes=0,
                 progress=False, resume=layout.root)  # without the second corpus
    with pytest.raises(RunError, match="groups_sha256 differ"):
        pretrain(corpus, paths=paths, cfg=cfg, base_model=tiny_gguf, seal_groups_n=4, openhoof_passes=0,
                 extra_corpora=extra, adjacent_share=0.5, progress=False, resume=layout.root)  # other lists
    weights = (layout.adapter("cpu") / "adapter_model.safetensors").read_bytes()
    again = pretrain(corpus, paths=paths, cfg=cfg, base_model=tiny_gguf, seal_groups_n=4, openhoof_passes=0,
                     extra_corpora=extra, progress=False,
                     resume=layout.root)  # from its step-2 checkpoint: nothing left to train
    assert again.run_id == manifest.run_id and again.train["steps"] == 2
    assert (layout.adapter("cpu") / "adapter_model.safetensors").read_bytes() == weights


def test_promotion_refuses_a_worse_model(tiny_gguf, tokenizer, home, tmp_path):
    """The incumbent (the bare tiny base) scores 100 % by construction (labels are its own
    answers); a model trained to always answer one other tool is significantly worse."""
    from openhoof_router.core.engine import RouterEngine
    from openhoof_router.core.records import TrainingRecord
    from openhoof_router.learning.run import run

    paths = Paths.resolve()
    tools = ["exec", "notify", "shared_log"]
    incumbent = RouterEngine.load(backend="llama.cpp", base_model=tiny_gguf, n_threads=2)
    messages = [r.input.user_message for r in curated_eval()[:40]]
    labelled = [(m, incumbent.route(m, tools).tool_names) for m in messages]
    incumbent.close()
    labelled = [(m, t) for m, t in labelled if t != ["shared_log"]][:20]
    assert len(labelled) >= 10
    eval_file = tmp_path / "incumbent_labels.jsonl"
    eval_file.write_text("".join(TrainingRecord.make(m, tools, t, "test").model_dump_json() + "\n"
                                 for m, t in labelled))
    skewed = Assembled(train=[TrainingRecord.make(r.input.user_message, tools, ["shared_log"], "test")
                              for r in curated_train()[:16]])
    cfg = TrainConfig(max_steps=15, batch_size=4, group_size=4, lr=2e-2, threads=2, val_fraction=0.0,
                      start_from="none", replay=0)
    manifest = run(paths, cfg, base_model=tiny_gguf, eval_file=eval_file, progress=False,
                   model_override=(tiny_model(), tokenizer), data=skewed, general_limit=0)
    assert manifest.metrics["incumbent"]["accuracy"] == 1.0
    assert manifest.metrics["held_out"]["accuracy"] < 1.0
    assert manifest.gate["user"]["verdict"] == "worse" and manifest.promoted is False
    assert ModelRegistry(paths).latest() is None


def _cli(home: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "openhoof_router.cli.train", "--home", str(home), *args],
                          capture_output=True, text=True, timeout=900)


def test_auto_below_and_above_threshold(tiny_gguf, home):
    below = _cli(home, "--auto", "--min-examples", "100000")
    assert below.returncode == 0, below.stderr
    assert "more needed" in below.stderr and below.stdout == ""
    assert not Paths.resolve().latest_pointer.exists()

    from openhoof_router.core.records import TrainingRecord
    from openhoof_router.store.jsonl import append_jsonl

    # the bundled examples are not new (the general adapter learnt them): ten generated ones are
    append_jsonl(Paths.resolve().synthetic_file, [TrainingRecord.make(f"generated request {i}", ["exec", "notify"],
                                                                      ["exec"], "synthetic") for i in range(10)])
    above = _cli(home, "--auto", "--min-examples", "10", "--base-model", str(tiny_gguf.gguf), "--max-steps", "2",
                 "--threads", "2", "--no-progress", "--force-promote", "--start-from", "none", "--replay", "0")
    assert above.returncode == 0, above.stderr[-3000:]
    assert "training" in above.stderr and "promoted" in above.stderr
    result = json.loads(above.stdout)  # results on stdout, as one JSON line
    assert result["promoted"] is True and result["run"]
    latest = ModelRegistry(Paths.resolve()).latest()
    assert latest and Path(latest.path, "router-q8_0.gguf").exists()

    again = _cli(home, "--auto", "--min-examples", "10")  # nothing new since the promoted run
    assert again.returncode == 0 and "0 new examples" in again.stderr


def test_cli_conventions(home, tmp_path):
    version = _cli(home, "--version")
    assert version.returncode == 0 and "openhoof-router" in version.stdout
    clash = _cli(home, "--epochs", "5", "run", "--epochs", "2")
    assert clash.returncode == 2 and "given twice" in clash.stderr
    fmt = _cli(home, "run", "--format", "instruction")
    assert fmt.returncode == 2 and "instruction" in fmt.stderr
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    tools = subprocess.run([sys.executable, "-m", "openhoof_router.cli.route", "hi", "--tools", str(bad)],
                           capture_output=True, text=True, timeout=300)
    assert tools.returncode == 5 and tools.stderr.count("\n") == 1 and "not valid JSON" in tools.stderr
    debug = subprocess.run([sys.executable, "-m", "openhoof_router.cli.route", "hi", "--tools", str(bad), "--debug"],
                           capture_output=True, text=True, timeout=300)
    assert debug.returncode == 1 and "Traceback" in debug.stderr
    missing = _cli(home, "eval", "--data", str(bad))
    assert missing.returncode in (1, 5) and "Traceback" not in missing.stderr


def test_a_general_run_fits_its_rule_and_never_follows_no_tool_and_user_runs_start_from_it(tiny_gguf, tmp_path):
    """Pretraining on the tiny model fits the verdict rule and the safe side on the same
    pass; a router serves the run with that rule (a score for every offered tool); its
    "no tool" is never followed in narrow mode, also after ``calibrate --safe-side-only``; a
    user run starts from it; a run in another prompt format is refused, saying what to do."""
    from support import SHARED

    from openhoof_router.learning.evaluation.calibrate_run import calibrate_run
    from openhoof_router.learning.evaluation.safe_side import NEVER
    from openhoof_router.learning.pretrain import GENERAL_DEFAULTS, pretrain
    from openhoof_router.learning.run import run
    from openhoof_router.serving.service import RouterService

    corpus = SHARED / "corpora" / "seal_tools"
    if not corpus.is_dir():
        pytest.skip("the Seal-Tools corpus is not in shared/corpora")
    paths = Paths.resolve(home=tmp_path / "home")
    cfg = GENERAL_DEFAULTS.model_copy(update={"max_steps": 2, "batch_size": 4, "group_size": 4, "threads": 2})
    general = pretrain(corpus, paths=paths, cfg=cfg, base_model=tiny_gguf, seal_groups_n=4, openhoof_passes=0,
                       progress=False)
    fit = general.metrics["decoding_fit"]
    assert general.prompt_format == PROMPT_FORMAT and set(fit) >= {"top_threshold", "extra_threshold"}
    assert (general.decoding.top_threshold, general.decoding.extra_threshold) == (fit["top_threshold"],
                                                                                 fit["extra_threshold"])
    assert general.decoding.keep_threshold == general.metrics["safe_side"]["keep_threshold"]
    assert general.decoding.tool_thresholds == {"none": NEVER}  # a general run's "no tool" always falls back
    run_dir = paths.runs_dir / general.run_id
    service = RouterService(model=run_dir, base_model=tiny_gguf, paths=paths, log_decisions=False, n_threads=2)
    try:
        engine = service.engine
        assert (engine.rule.top_threshold, engine.rule.extra_threshold) == (fit["top_threshold"],
                                                                            fit["extra_threshold"])
        decision = service.route("check disk space", ["exec", "notify", "memory_read"])
        assert decision.valid and list(decision.scores) == ["exec", "notify", "memory_read"]
    finally:
        service.close()
    eval_file = tmp_path / "held_out.jsonl"
    eval_file.write_text("".join(r.model_dump_json() + "\n" for r in curated_eval()[:8]))
    again = calibrate_run(paths, run_dir, eval_file, threads=2, progress=False, base_model=tiny_gguf,
                          safe_side_only=True)
    assert again["safe_side"]["no_tool_threshold"] == NEVER
    assert ServedRun.open(run_dir).manifest.decoding.tool_thresholds["none"] == NEVER

    user_cfg = TrainConfig(max_steps=2, batch_size=4, group_size=4, threads=2, val_fraction=0.25,
                           start_from=str(run_dir), replay=0)
    user = run(paths, user_cfg, base_model=tiny_gguf, eval_file=eval_file, progress=False,
               data=Assembled(train=curated_train()[:16]), general_limit=0, force_promote=True)
    assert user.prompt_format == PROMPT_FORMAT and user.start_from == general.run_id
    assert user.decoding.top_threshold is not None

    from openhoof_router.learning.run import start_adapter
    from openhoof_router.store.runs import RunError, RunManifest

    old = RunManifest.load(run_dir).model_copy(update={"prompt_format": "openhoof-v2"})
    old.save(run_dir)
    with pytest.raises(RunError, match="retrain it"):
        start_adapter(str(run_dir), tiny_gguf)
