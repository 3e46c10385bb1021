"""``hoof-train pretrain``: rebuild the general adapter from the public corpus.

Builds the general training set (:mod:`.general`), trains one LoRA adapter from the bare
base (GPU when one is visible, else CPU), merges it into a GGUF, calibrates the continue
threshold on held-out corpus requests, evaluates it on the general gate sample and the
bundled OpenHoof held-out split, and writes a manifest with the data hashes, the figures,
the wall time and the hardware. ``--ship`` copies the adapter, its manifest and the fixed
samples derived from the corpus (gate, calibration, replay) into the package's data folder:
that is how the adapter that ships with the package is made.
"""

from __future__ import annotations

import hashlib
import json
import random
import shutil
import time
from pathlib import Path
from typing import Any

from rich.console import Console

from openhoof_router.models.base_model import resolve_base_model
from openhoof_router.models.device import hardware, training_backend
from openhoof_router.store.paths import Paths
from openhoof_router.store.runs import GENERAL_DIR, BaseModelInfo, Decoding, ModelRegistry, RunFiles, RunManifest
from openhoof_router.learning.evaluation.calibrate import fit_continue_threshold
from openhoof_router.learning.config import OPENHOOF_PASSES, SEAL_GROUPS, TrainConfig
from openhoof_router.learning.evaluation.evaluate import evaluate, summary_row
from openhoof_router.learning.data.general_corpus import SEAL_ATTRIBUTION, general_groups, load_extras, load_seal, seal_groups
from openhoof_router.learning.data.shipped_samples import CALIBRATION_FILE, GATE_FILE, REPLAY_FILE, gate_records, group_to_row, write_jsonl
from openhoof_router.learning.trainers.memory import PeakMemory
from openhoof_router.learning.run import GGUF_NAME, engine_for, general_items, held_out_items, train_with

GENERAL_DEFAULTS = TrainConfig(epochs=1, batch_size=8, lr=2e-4, seed=0, val_fraction=0.0, start_from="none",
                               replay=0)
"""The general adapter's training settings (with :data:`SEAL_GROUPS`, :data:`OPENHOOF_PASSES`, data seed 1)."""
REPLAY_GROUPS = 150


def _sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def build_samples(corpus_dir: Path, out: Path, seed: int = 0) -> dict[str, Any]:
    """The fixed samples derived from the corpus: gate, calibration and replay files."""
    corpus = load_seal(corpus_dir)
    gate, calibration = gate_records(corpus, seed=seed)
    replay = seal_groups(corpus, load_extras(), random.Random(seed + 100), REPLAY_GROUPS)
    out.mkdir(parents=True, exist_ok=True)
    counts = {
        GATE_FILE.name: write_jsonl(out / GATE_FILE.name, gate),
        CALIBRATION_FILE.name: write_jsonl(out / CALIBRATION_FILE.name, calibration),
        REPLAY_FILE.name: write_jsonl(out / REPLAY_FILE.name, (group_to_row(g) for g in replay)),
    }
    return {"files": counts, "replay_examples": sum(len(g.samples) for g in replay),
            "seal_train_requests": len(corpus.train), "seal_held_out_requests": len(corpus.held)}


def pretrain(
    corpus_dir: Path,
    *,
    paths: Paths | None = None,
    cfg: TrainConfig | None = None,
    base_model: Any = None,
    seal_groups_n: int = SEAL_GROUPS,
    openhoof_passes: int = OPENHOOF_PASSES,
    data_seed: int = 1,
    ship: bool = False,
    progress: bool = True,
    console: Console | None = None,
    checkpoint_every: int = 250,
) -> RunManifest:
    paths = paths or Paths.resolve()
    cfg = cfg or GENERAL_DEFAULTS
    console = console or Console(stderr=True)
    base = resolve_base_model(base_model, paths)
    registry = ModelRegistry(paths)
    run_dir = registry.new_run_dir("general")
    peak = PeakMemory().start()
    t0 = time.perf_counter()
    durations: dict[str, float] = {}

    console.print("[bold cyan]▸ building the general corpus[/]")
    corpus = load_seal(corpus_dir)
    samples = build_samples(corpus_dir, run_dir / "samples")
    groups = general_groups(corpus, seal_groups_n=seal_groups_n, openhoof_passes=openhoof_passes, seed=data_seed)
    digest = hashlib.sha256(json.dumps([group_to_row(g) for g in groups], ensure_ascii=False).encode()).hexdigest()
    n_examples = sum(len(g.samples) for g in groups)
    console.print(f"  {len(groups)} tool lists, {n_examples} requests ({SEAL_ATTRIBUTION} + OpenHoof data)")
    durations["data_s"] = time.perf_counter() - t0

    backend = training_backend(cfg.backend)
    console.print(f"[bold cyan]▸ training the general adapter on {backend}[/]")
    t = time.perf_counter()
    result = train_with(backend, groups, [], cfg, run_dir, base, paths, progress=progress,
                        checkpoint_every=checkpoint_every if backend == "cpu" else 0)
    durations["train_s"] = time.perf_counter() - t

    console.print("[bold cyan]▸ merging, calibrating, evaluating[/]")
    t = time.perf_counter()
    from openhoof_router.models.merge import merge_lora_gguf

    gguf = merge_lora_gguf(base.gguf, result.adapter_dir, run_dir / GGUF_NAME, name="openhoof-router general")
    engine = engine_for(gguf, base, cfg.threads)
    try:
        fit = fit_continue_threshold(engine, general_items(path=run_dir / "samples" / CALIBRATION_FILE.name),
                                     progress=progress)
        engine.continue_threshold = fit.threshold
        gate = evaluate(engine, general_items(path=run_dir / "samples" / GATE_FILE.name), progress=progress)
        held = evaluate(engine, held_out_items(), progress=progress)
    finally:
        engine.close()
    durations["evaluate_s"] = time.perf_counter() - t
    durations["total_s"] = time.perf_counter() - t0
    manifest = RunManifest(
        run_id=run_dir.name,
        kind="general",
        base_model=BaseModelInfo(name=base.name, sha256=base.sha256),
        backend=result.backend,
        hyperparameters={**cfg.model_dump(mode="json"), "seal_groups": seal_groups_n,
                         "openhoof_passes": openhoof_passes, "data_seed": data_seed},
        data={"corpus": SEAL_ATTRIBUTION,
              "corpus_sha256": {p.name: _sha256(p) for p in sorted(Path(corpus_dir).glob("*.jsonl"))},
              "groups": len(groups), "n_examples": n_examples, "groups_sha256": digest, **samples},
        files=RunFiles(peft=result.adapter_dir.name, gguf=gguf.name),
        decoding=Decoding(continue_threshold=fit.threshold),
        metrics={"general_gate": summary_row(gate), "openhoof_held_out": summary_row(held),
                 "continue_fit": {"threshold": fit.threshold, "accuracy": fit.accuracy,
                                  "greedy_accuracy": fit.greedy_accuracy}},
        train={"steps": result.steps, "examples": result.examples, "peak_rss_mb": result.peak_rss_mb,
               "peak_gpu_mb": result.peak_gpu_mb},
        durations={k: round(v, 1) for k, v in durations.items()},
        peak_rss_mb=max(peak.stop(), result.peak_rss_mb),
        hardware=hardware(),
    )
    (run_dir / "history.json").write_text(json.dumps(result.history, indent=1))
    manifest.save(run_dir)
    from openhoof_router.learning.evaluation.plots import plot_loss

    plot_loss(result.history, run_dir / "loss.png", title="general adapter: training loss")
    console.print(f"general gate sample {gate.accuracy:.1%}, OpenHoof held-out {held.accuracy:.1%}, "
                  f"continue threshold {fit.threshold}; {durations['total_s'] / 60:.1f} min")
    if ship:
        ship_general(run_dir, manifest)
        console.print(f"shipped into {GENERAL_DIR}")
    return manifest


def ship_general(run_dir: Path, manifest: RunManifest) -> None:
    """Copy a general run into the package: the adapter (float16, 2x smaller), its manifest
    (adapter only: routers merge it into a cached GGUF on first use), the corpus samples."""
    from safetensors.numpy import load_file, save_file

    GENERAL_DIR.mkdir(parents=True, exist_ok=True)
    adapter = run_dir / (manifest.files.peft or "peft")
    weights = load_file(str(adapter / "adapter_model.safetensors"))
    save_file({k: v.astype("float16") for k, v in weights.items()}, str(GENERAL_DIR / "adapter_model.safetensors"))
    config = json.loads((adapter / "adapter_config.json").read_text())
    config["base_model_name_or_path"] = manifest.base_model.name  # not this machine's cache path
    (GENERAL_DIR / "adapter_config.json").write_text(json.dumps(config, indent=2))
    shipped = manifest.model_copy(deep=True)
    shipped.files = RunFiles(peft=".")
    shipped.base_model.path = None
    shipped.save(GENERAL_DIR)
    for name in (GATE_FILE.name, CALIBRATION_FILE.name, REPLAY_FILE.name):
        shutil.copy2(run_dir / "samples" / name, GATE_FILE.parent / name)
