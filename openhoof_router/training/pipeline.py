"""The retraining loop: assemble data → train LoRA → export GGUF → evaluate → promote.

Each run lives in ``runs/ID`` with ``manifest.json`` (base model and checksum, data hash
and counts, hyperparameters, metrics, durations, peak memory), the PEFT or MLX adapter,
the merged ``router-q8_0.gguf`` the llama.cpp backend serves, ``history.json`` and the
``loss.png`` / ``confusion.png`` plots. Promotion switches ``latest.json`` atomically and
only when the new run is not worse than the model in place on the held-out set.
"""

from __future__ import annotations

import json
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from rich.console import Console

from ..base_model import BaseModelRef, resolve_base_model
from ..engine import RouterEngine
from ..paths import Paths
from ..registry import ModelRegistry
from .config import TrainConfig, TrainResult
from .dataset import Assembled, assemble, split, to_examples
from .evaluate import EvalItem, EvalReport, evaluate, load_eval_items, to_item
from .memory import PeakMemory

GGUF_NAME = "router-q8_0.gguf"


def resolve_train_backend(name: str) -> str:
    """``auto`` → cuda when a GPU is visible, mlx on Apple Silicon, else cpu."""
    if name != "auto":
        return name
    if platform.system() == "Darwin" and platform.machine() == "arm64":
        return "mlx"
    from .cuda_trainer import default_device

    return default_device()


def held_out_items(eval_file: Path | None = None) -> list[EvalItem]:
    if eval_file is not None:
        return load_eval_items(eval_file)[0]
    from .dataset import curated_eval

    return [to_item(r.model_dump()) for r in curated_eval()]


@dataclass
class AutoCheck:
    should_train: bool
    new_examples: int
    needed: int
    message: str


def auto_check(paths: Paths, min_examples: int) -> AutoCheck:
    """How many examples arrived since the promoted run, and whether that is enough."""
    data = assemble(paths)
    latest = ModelRegistry(paths).latest_dir()
    before = 0
    if latest is not None:
        try:
            before = json.loads((latest / "manifest.json").read_text())["data"]["n_examples"]
        except (OSError, ValueError, KeyError):
            before = 0
    new = max(0, len(data.train) - before)
    if new >= min_examples:
        return AutoCheck(True, new, min_examples, f"{new} new examples since the promoted run (≥ {min_examples}): training")
    return AutoCheck(False, new, min_examples,
                     f"{new} new examples since the promoted run; {min_examples - new} more needed "
                     f"before retraining (--min-examples {min_examples})")


def _train(backend: str, train, val, cfg: TrainConfig, run_dir: Path, base: BaseModelRef, paths: Paths,
           progress: bool, model_override: tuple | None) -> TrainResult:
    if backend == "mlx":
        from .mlx_trainer import train_mlx

        return train_mlx(train, val, cfg, run_dir, base, paths=paths, progress=progress)
    model, tokenizer = model_override or (None, None)
    if backend == "cuda":
        from .cuda_trainer import train_cuda

        return train_cuda(train, val, cfg, run_dir, base, paths=paths, progress=progress,
                          model=model, tokenizer=tokenizer)
    from .cpu_trainer import train_cpu

    return train_cpu(train, val, cfg, run_dir, base, paths=paths, progress=progress,
                     model=model, tokenizer=tokenizer)


def _export(result: TrainResult, base: BaseModelRef, run_dir: Path) -> Path:
    from .export import export_router_gguf, write_gguf

    out = run_dir / GGUF_NAME
    if result.merged_dir is not None:  # MLX fuses to float safetensors; convert those
        from transformers import AutoConfig
        from safetensors.torch import load_file

        state: dict[str, Any] = {}
        for shard in sorted(result.merged_dir.glob("*.safetensors")):
            state.update(load_file(str(shard)))
        return write_gguf(state, AutoConfig.from_pretrained(result.merged_dir), base.gguf, out)
    return export_router_gguf(result.adapter_dir, base.gguf, out)


def _engine_for(run_dir: Path | None, base: BaseModelRef, threads: int | None) -> RouterEngine:
    return RouterEngine.load(backend="llama.cpp", base_model=base, model=run_dir, n_threads=threads)


def evaluate_model(run_dir: Path | None, base: BaseModelRef, items: list[EvalItem], threads: int | None = None,
                   progress: bool = True) -> EvalReport:
    engine = _engine_for(run_dir, base, threads)
    try:
        return evaluate(engine, items, progress=progress)
    finally:
        engine.close()


def _summary(report: EvalReport) -> dict[str, Any]:
    return report.model_dump(exclude={"errors", "confusion"})


def run(
    paths: Paths | None = None,
    cfg: TrainConfig | None = None,
    *,
    base_model: str | BaseModelRef | None = None,
    eval_file: Path | None = None,
    force_promote: bool = False,
    progress: bool = True,
    console: Console | None = None,
    model_override: tuple | None = None,
    data: Assembled | None = None,
    on_stage: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """One full run; returns the manifest (also written to ``runs/ID/manifest.json``)."""
    paths = paths or Paths.resolve()
    cfg = cfg or TrainConfig()
    console = console or Console(stderr=True)
    registry = ModelRegistry(paths)
    base = base_model if isinstance(base_model, BaseModelRef) else resolve_base_model(base_model, paths)
    peak = PeakMemory().start()
    t0 = time.perf_counter()
    durations: dict[str, float] = {}

    def stage(name: str) -> None:
        console.print(f"[bold cyan]▸ {name}[/]")
        if on_stage:
            on_stage(name)

    stage("assembling data")
    data = data or assemble(paths)
    if not data.train:
        raise RuntimeError("no training examples found")
    train_recs, val_recs = split(data.train, cfg.val_fraction, cfg.seed)
    train = to_examples(train_recs, shuffle_tools=cfg.shuffle_tools, seed=cfg.seed, group_size=cfg.batch_size)
    val = to_examples(val_recs, shuffle_tools=False)
    console.print(f"  {len(train)} train / {len(val)} validation examples; per source {data.counts.get('per_source', {})}; "
                  f"{data.skipped_lines} malformed lines skipped")

    backend = resolve_train_backend(cfg.backend)
    run_dir = registry.new_run_dir()
    stage(f"training LoRA on {backend} (rank {cfg.lora_rank}, {cfg.epochs} epochs, lr {cfg.lr})")
    t = time.perf_counter()
    result = _train(backend, train, val, cfg, run_dir, base, paths, progress, model_override)
    durations["train_s"] = time.perf_counter() - t

    stage("exporting GGUF")
    t = time.perf_counter()
    gguf = _export(result, base, run_dir)
    durations["export_s"] = time.perf_counter() - t

    stage("evaluating on the held-out set")
    t = time.perf_counter()
    items = held_out_items(eval_file)
    report = evaluate_model(run_dir, base, items, cfg.threads, progress)
    incumbent_dir = registry.latest_dir()
    incumbent = evaluate_model(incumbent_dir, base, items, cfg.threads, progress)
    durations["eval_s"] = time.perf_counter() - t

    promoted = force_promote or report.accuracy >= incumbent.accuracy
    durations["total_s"] = time.perf_counter() - t0
    manifest = {
        "run_id": run_dir.name,
        "created_at": time.time(),
        "base_model": {"name": base.name, "sha256": base.sha256, "path": str(base.gguf or base.hf_dir)},
        "backend": result.backend,
        "format": cfg.format,
        "hyperparameters": cfg.model_dump(mode="json"),
        "data": {"n_examples": len(data.train), "n_train": len(train), "n_val": len(val),
                 "hash": data.data_hash, **data.counts, "skipped_lines": data.skipped_lines},
        "files": {"gguf": gguf.name, "adapter": str(result.adapter_dir.relative_to(run_dir))},
        "metrics": {"held_out": _summary(report),
                    "incumbent": {"run": incumbent_dir.name if incumbent_dir else "base", **_summary(incumbent)}},
        "train": {"steps": result.steps, "peak_rss_mb": result.peak_rss_mb, "peak_gpu_mb": result.peak_gpu_mb,
                  "final": result.history[-1] if result.history else None},
        "durations": durations,
        "peak_rss_mb": max(peak.stop(), result.peak_rss_mb),
        "promoted": promoted,
    }
    (run_dir / "history.json").write_text(json.dumps(result.history, indent=1))
    (run_dir / "eval.json").write_text(report.model_dump_json(indent=1))
    (run_dir / "manifest.json").write_text(json.dumps(manifest, indent=2, default=str))
    from .plots import plot_confusion, plot_loss

    plot_loss(result.history, run_dir / "loss.png")
    plot_confusion(report.confusion, run_dir / "confusion.png")
    if promoted:
        registry.promote(run_dir, {"accuracy": report.accuracy})
        console.print(f"[bold green]promoted[/] {run_dir.name}: accuracy {report.accuracy:.1%} "
                      f"(was {incumbent.accuracy:.1%})")
    else:
        console.print(f"[bold yellow]not promoted[/] {run_dir.name}: accuracy {report.accuracy:.1%} "
                      f"< {incumbent.accuracy:.1%} of the model in place (use --force-promote to override)")
    return manifest
