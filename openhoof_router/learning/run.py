"""The retraining loop behind ``hoof-train run``.

assemble data → train LoRA (continuing from the general adapter, with a replay sample of
the general corpus) → merge into a GGUF → calibrate the continue threshold → evaluate the
new run and the model in place on the same messages (the user's held-out data and the
fixed general sample) → gate (:mod:`.gate`) → promote.

Each run lives in ``runs/ID`` with ``manifest.json`` (:class:`~openhoof_router.store.runs.RunManifest`),
the adapter, ``router-q8_0.gguf``, ``history.json``, ``eval.json``, ``loss.png`` and
``confusion.png``. Results of the model in place are cached per evaluation set, so the
second run does not evaluate it again.
"""

from __future__ import annotations

import json
import math
import random
import time
from pathlib import Path
from typing import Any, Callable, Sequence

from rich.console import Console

from openhoof_router.models.base_model import BaseModelRef, resolve_base_model
from openhoof_router.models.device import hardware, training_backend
from openhoof_router.core.engine import RouterEngine
from openhoof_router.store.paths import Paths
from openhoof_router.store.runs import BaseModelInfo, Decoding, ModelRegistry, RunError, RunFiles, RunManifest, ServedRun, general_run
from openhoof_router.learning.evaluation.calibrate import fit_continue_threshold
from openhoof_router.learning.config import TrainConfig, TrainResult
from openhoof_router.learning.data.assemble import Assembled, assemble, bundled_held_out
from openhoof_router.learning.evaluation.evaluate import EvalItem, EvalReport, evaluate, load_eval_items, summary_row, to_item
from openhoof_router.learning.data.groups import Group, records_to_groups, split_records
from openhoof_router.learning.evaluation.gate import compare, decide
from openhoof_router.learning.data.shipped_samples import CALIBRATION_FILE, GATE_FILE, replay_groups
from openhoof_router.learning.trainers.memory import PeakMemory

GGUF_NAME = "router-q8_0.gguf"
CALIBRATION_GENERAL = 80
"""General-corpus records added to the run's own validation split to fit the continue threshold."""


def held_out_items(eval_file: Path | None = None) -> list[EvalItem]:
    """The user's held-out set: ``eval_file``, else the bundled single-turn and follow-up splits."""
    if eval_file is not None:
        return load_eval_items(eval_file)[0]
    return [to_item(r.model_dump()) for r in bundled_held_out()]


def general_items(limit: int | None = None, path: Path = GATE_FILE) -> list[EvalItem]:
    """The fixed general sample (``limit``: its first records; 0: none)."""
    if limit == 0 or not path.exists():
        return []
    items = load_eval_items(path)[0]
    return items[:limit] if limit is not None else items


def fits(run: ServedRun | None, base: BaseModelRef) -> bool:
    """Whether ``run`` was trained on ``base`` (another base's adapter cannot be served or continued)."""
    trained_on = run.manifest.base_model.sha256 if run is not None else None
    return run is not None and (not trained_on or not base.sha256 or trained_on == base.sha256)


def start_adapter(start_from: str | None, base: BaseModelRef) -> tuple[Path | None, str | None]:
    """The adapter a run continues from, and its name: the shipped general one, a run, or none
    (also when the general adapter was trained on another base)."""
    if not start_from or start_from == "none":
        return None, None
    if start_from == "general":
        run = general_run()
        return (run.adapter, run.run_id) if fits(run, base) else (None, None)
    run = ServedRun.open(start_from)
    if not fits(run, base):
        raise RunError(f"run {run.run_id} was trained on another base model than {base.name}")
    return run.adapter, run.run_id


def epoch_groups(train: Sequence[Any], cfg: TrainConfig) -> list[Group]:
    """The groups of every epoch (fresh tool orders each), replay mixed in, ``epochs`` may be fractional."""
    out: list[Group] = []
    for epoch in range(math.ceil(cfg.epochs)):
        groups = records_to_groups(train, group_size=cfg.group_size, seed=cfg.seed + epoch,
                                   shuffle_tools=cfg.shuffle_tools, source="user")
        groups += replay_groups(cfg.replay, seed=cfg.seed + epoch)
        random.Random(cfg.seed + epoch).shuffle(groups)
        share = min(1.0, cfg.epochs - epoch)
        out.extend(groups[: max(1, round(len(groups) * share))])
    return out


def train_with(backend: str, train: Sequence[Group], val: Sequence[Group], cfg: TrainConfig, run_dir: Path,
               base: BaseModelRef, paths: Paths, *, progress: bool, model_override: tuple | None = None,
               start_from: Path | None = None, checkpoint_every: int = 0) -> TrainResult:
    """Dispatch to the trainer backend (``cpu``, ``cuda`` or ``mlx``)."""
    if backend == "mlx":
        from openhoof_router.learning.trainers.mlx import train_mlx

        return train_mlx(train, val, cfg, run_dir, base, paths=paths, progress=progress, start_from=start_from)
    model, tokenizer = model_override or (None, None)
    if backend == "cuda":
        from openhoof_router.learning.trainers.cuda import train_cuda

        return train_cuda(train, val, cfg, run_dir, base, paths=paths, progress=progress, model=model,
                          tokenizer=tokenizer, start_from=start_from)
    from openhoof_router.learning.trainers.cpu import train_cpu

    return train_cpu(train, val, cfg, run_dir, base, paths=paths, progress=progress, model=model,
                     tokenizer=tokenizer, start_from=start_from, checkpoint_every=checkpoint_every)


def engine_for(model: Any, base: BaseModelRef, threads: int | None, paths: Paths | None = None) -> RouterEngine:
    """A llama.cpp engine over a run (its fitted continue threshold applied), a GGUF, or the base."""
    from openhoof_router.models.loading import load_backend

    engine = RouterEngine(load_backend("llama.cpp", base_model=base, model=model, n_threads=threads, paths=paths))
    if isinstance(model, ServedRun):
        engine.continue_threshold = model.manifest.decoding.continue_threshold
    return engine


def cached_eval(run: ServedRun | None, base: BaseModelRef, items: Sequence[EvalItem], paths: Paths,
                threads: int | None, progress: bool) -> EvalReport:
    """Evaluate a run (None: the base), reusing an earlier result on the very same messages."""
    from openhoof_router.learning.evaluation.evaluate import items_digest

    ident = f"{run.run_id}-{run.manifest.created_at:.0f}" if run is not None else f"base-{(base.sha256 or '')[:12]}"
    path = paths.cache_dir / "evals" / f"{ident}-{items_digest(items)}.json"
    if path.is_file():
        try:
            return EvalReport.model_validate_json(path.read_text())
        except ValueError:
            pass
    engine = engine_for(run, base, threads, paths)
    try:
        report = evaluate(engine, items, progress=progress)
    finally:
        engine.close()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(report.model_dump_json())
    return report


def incumbent(registry: ModelRegistry, base: BaseModelRef) -> ServedRun | None:
    """The model in place: the promoted run, else the general adapter (None: the bare base)."""
    try:
        current = registry.latest_run()
    except RunError:
        current = general_run()
    return current if fits(current, base) else None


def auto_check(paths: Paths, min_examples: int) -> tuple[bool, str]:
    """Whether enough examples arrived since the promoted run, and a line saying so."""
    data = assemble(paths)
    registry = ModelRegistry(paths)
    before = 0
    try:
        before = int(registry.latest_run().manifest.data.get("n_examples", 0))
    except RunError:
        pass
    new = max(0, len(data.train) - before)
    if new >= min_examples:
        return True, f"{new} new examples since the promoted run (≥ {min_examples}): training"
    return False, (f"{new} new examples since the promoted run; {min_examples - new} more needed "
                   f"before retraining (--min-examples {min_examples})")


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
    general_limit: int | None = None,
    on_stage: Callable[[str], None] | None = None,
) -> RunManifest:
    """One full run; returns its manifest (also written to ``runs/ID/manifest.json``)."""
    paths = paths or Paths.resolve()
    cfg = cfg or TrainConfig()
    console = console or Console(stderr=True)
    registry = ModelRegistry(paths)
    base = resolve_base_model(base_model, paths)
    peak = PeakMemory().start()
    t0 = time.perf_counter()
    durations: dict[str, float] = {}

    def stage(name: str) -> float:
        console.print(f"[bold cyan]▸ {name}[/]")
        if on_stage:
            on_stage(name)
        return time.perf_counter()

    t = stage("assembling data")
    data = data or assemble(paths)
    if not data.train:
        raise RuntimeError("no training examples found")
    train_recs, val_recs = split_records(data.train, cfg.val_fraction)
    groups = epoch_groups(train_recs, cfg)
    val_groups = records_to_groups(val_recs, group_size=cfg.group_size, seed=cfg.seed, source="val")
    start, start_name = start_adapter(cfg.start_from, base)
    if cfg.start_from == "general" and start is None:
        console.print("[yellow]no general adapter for this base model: training from the bare base[/]")
    console.print(f"  {len(train_recs)} train / {len(val_recs)} validation examples "
                  f"({sum(len(g.samples) for g in groups)} with replay, over {cfg.epochs} epochs); per source "
                  f"{data.counts.get('per_source', {})}; {data.skipped_lines} malformed lines skipped")
    durations["assemble_s"] = time.perf_counter() - t

    backend = training_backend(cfg.backend)
    run_dir = registry.new_run_dir()
    t = stage(f"training LoRA on {backend} from {start_name or 'the bare base'} "
              f"(rank {cfg.lora_rank}, {cfg.epochs} epochs, lr {cfg.lr})")
    result = train_with(backend, groups, val_groups, cfg, run_dir, base, paths, progress=progress,
                        model_override=model_override, start_from=start)
    durations["train_s"] = time.perf_counter() - t

    t = stage("merging the adapter into a GGUF")
    from openhoof_router.models.merge import merge_lora_gguf

    gguf = merge_lora_gguf(base.gguf, result.adapter_dir, run_dir / GGUF_NAME, name=f"openhoof-router {run_dir.name}")
    durations["export_s"] = time.perf_counter() - t

    t = stage("calibrating the continue threshold")
    engine = engine_for(gguf, base, cfg.threads)
    calib = [to_item(r.model_dump()) for r in val_recs] + general_items(
        CALIBRATION_GENERAL if general_limit is None else min(CALIBRATION_GENERAL, general_limit), CALIBRATION_FILE)
    fit = fit_continue_threshold(engine, calib, progress=progress) if calib else None
    if fit is not None:
        engine.continue_threshold = fit.threshold
        console.print(f"  continue threshold {fit.threshold} ({fit.accuracy:.1%} on {len(calib)} validation "
                      f"messages; greedy 0.5: {fit.greedy_accuracy:.1%})")
    durations["calibrate_s"] = time.perf_counter() - t

    t = stage("evaluating on the held-out data and the general sample")
    held = held_out_items(eval_file)
    general = general_items(general_limit)
    try:
        report = evaluate(engine, held, progress=progress)
        general_report = evaluate(engine, general, progress=progress) if general else None
    finally:
        engine.close()
    current = incumbent(registry, base)
    inc_report = cached_eval(current, base, held, paths, cfg.threads, progress)
    inc_general = cached_eval(current, base, general, paths, cfg.threads, progress) if general else None
    durations["eval_s"] = time.perf_counter() - t
    gate = decide(compare("held_out", report.correct, inc_report.correct),
                  compare("general", general_report.correct, inc_general.correct)
                  if general_report and inc_general else None)
    promoted = force_promote or gate.promote
    durations["total_s"] = time.perf_counter() - t0

    metrics: dict[str, Any] = {"held_out": summary_row(report),
                               "incumbent": {"run": current.run_id if current else "base", **summary_row(inc_report)}}
    if eval_file is None:  # the bundled held-out set: single turns first, then follow-ups
        n_single = len([r for r in bundled_held_out() if not r.input.context])
        metrics["single_turn_accuracy"] = sum(report.correct[:n_single]) / max(1, n_single)
        metrics["followup_accuracy"] = sum(report.correct[n_single:]) / max(1, len(report.correct) - n_single)
    if general_report is not None:
        metrics["general"] = summary_row(general_report)
        metrics["incumbent_general"] = summary_row(inc_general)
    manifest = RunManifest(
        run_id=run_dir.name,
        kind="user",
        base_model=BaseModelInfo(name=base.name, sha256=base.sha256, path=str(base.gguf or base.hf_dir)),
        start_from=start_name,
        backend=result.backend,
        hyperparameters=cfg.model_dump(mode="json"),
        data={"n_examples": len(data.train), "n_train": len(train_recs), "n_val": len(val_recs),
              "n_trained": result.examples, "hash": data.data_hash, **data.counts, "skipped_lines": data.skipped_lines},
        files=RunFiles(**{"mlx" if backend == "mlx" else "peft": result.adapter_dir.name, "gguf": gguf.name}),
        decoding=Decoding(continue_threshold=fit.threshold if fit else 0.5),
        metrics=metrics,
        gate={**gate.model_dump(), "forced": force_promote and not gate.promote},
        train={"steps": result.steps, "examples": result.examples, "peak_rss_mb": result.peak_rss_mb,
               "peak_gpu_mb": result.peak_gpu_mb, "final": result.history[-1] if result.history else None},
        durations={k: round(v, 1) for k, v in durations.items()},
        peak_rss_mb=max(peak.stop(), result.peak_rss_mb),
        hardware=hardware(),
        promoted=promoted,
    )
    (run_dir / "history.json").write_text(json.dumps(result.history, indent=1))
    (run_dir / "eval.json").write_text(report.model_dump_json(indent=1))
    manifest.save(run_dir)
    from openhoof_router.learning.evaluation.plots import plot_confusion, plot_loss

    plot_loss(result.history, run_dir / "loss.png")
    plot_confusion(report.confusion, run_dir / "confusion.png")
    if promoted:
        registry.promote(run_dir, {"accuracy": report.accuracy})
        console.print(f"[bold green]promoted[/] {run_dir.name}: {gate.reason}"
                      + (" (forced)" if force_promote and not gate.promote else ""))
    else:
        console.print(f"[bold yellow]not promoted[/] {run_dir.name}: {gate.reason} "
                      "(use --force-promote to override)")
    return manifest
