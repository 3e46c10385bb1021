"""The one run procedure: train → merge → calibrate → evaluate → judge → manifest → files → promote.

A user run (:func:`openhoof_router.learning.run.run`) and pretraining the general adapter
(:func:`openhoof_router.learning.pretrain.pretrain`) differ only in their :class:`RunPlan`:
the data, the adapter they start from, the messages they calibrate and evaluate on, and
the judge that decides promotion (pretraining has none: its runs are shipped, not promoted).

Every run folder gets the same files (:class:`~openhoof_router.store.runs.RunLayout`: the
adapter, the merged GGUF, ``history.json``, ``eval.json`` and the confusion plot of the
first evaluation set, ``loss.png``) and a manifest with the same fields:

- ``hyperparameters``: the :class:`TrainConfig` and the plan's extras (pretraining: corpus sizes, data seed);
- ``data``: the plan's description of its data, plus ``n_trained`` (examples the trainer saw);
- ``metrics``: a summary row per evaluation set (user runs: ``held_out``, ``general``;
  pretraining: ``general_gate``, ``openhoof_held_out``), ``decoding_fit`` when the verdict
  rule was fitted, and the judge's
  rows (user runs: ``incumbent``, ``incumbent_general``, ``single_turn_accuracy``,
  ``followup_accuracy``);
- ``gate``: the judge's decision, with ``forced`` when ``force_promote`` overrode a refusal
  (empty without a judge); ``promoted``;
- ``train``: steps, examples, peak memory, the last history row;
- ``durations``: the plan's data step (``assemble_s`` / ``data_s``), ``train_s``, ``export_s``,
  ``calibrate_s``, ``eval_s``, ``total_s``; ``peak_rss_mb``; ``hardware``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from rich.console import Console

from openhoof_router.learning.config import TrainConfig, TrainResult
from openhoof_router.learning.data.groups import Group
from openhoof_router.learning.evaluation.calibrate import RuleFit, Scored, fit_verdict_rule
from openhoof_router.learning.evaluation.evaluate import EvalItem, EvalReport, route_all, score_decisions, summary_row
from openhoof_router.learning.evaluation.gate import GateDecision
from openhoof_router.learning.evaluation.safe_side import (
    OWN_RECALL,
    RECALL,
    SafeSide,
    fit_safe_side,
    fit_unseen_side,
    scored_of,
)
from openhoof_router.learning.trainers.memory import PeakMemory
from openhoof_router.models.allocator import release_memory
from openhoof_router.models.base_model import BaseModelRef
from openhoof_router.models.device import hardware, training_backend
from openhoof_router.serving.selection import engine_for
from openhoof_router.store.paths import Paths
from openhoof_router.store.runs import BaseModelInfo, Decoding, ModelRegistry, RunError, RunLayout, RunManifest


class Judgement(BaseModel):
    """What a judge says about a candidate: the promotion decision and the figures behind it."""

    gate: GateDecision
    metrics: dict[str, Any] = Field(default_factory=dict)
    """Added to the manifest's metrics (e.g. the model in place's scores on the same messages)."""


Judge = Callable[[dict[str, EvalReport]], Judgement]
"""Decides from the candidate's reports (by evaluation set name) whether it replaces the model in place."""


class RunPlan(BaseModel):
    """Everything one run is made of; :func:`carry_out` does the rest the same way for every kind."""

    model_config = ConfigDict(arbitrary_types_allowed=True)
    kind: Literal["user", "general"]
    run_dir: Path
    cfg: TrainConfig
    base: BaseModelRef
    train: list[Group]
    val: list[Group] = Field(default_factory=list)
    start_from: Path | None = None
    """The adapter folder training continues from (None: the bare base)."""
    start_name: str | None = None
    """Its run id, written to the manifest."""
    calibration: list[EvalItem] = Field(default_factory=list)
    """Messages the verdict rule and the safe side are fitted on (none: the defaults)."""
    known_tools: frozenset[str] = frozenset()
    """A user run's own tools: the safe side fitted on the calibration turns holds for turns
    offering only these; the others get :func:`.safe_side.fit_unseen_side` (empty: every tool)."""
    unseen_also: tuple[str, ...] = ()
    """Evaluation sets whose routed turns :func:`.safe_side.fit_unseen_side` fits on too, beside
    the calibration turns (the general sample: routed for the gate anyway, it triples the turns
    the unseen side's keep threshold is fitted on at no routing cost; on 80 turns it moved from
    0.5 to 0.003 between seeds, benchmarks/README)."""
    evaluations: dict[str, list[EvalItem]]
    """Named evaluation sets; the first is the run's headline (``eval.json``, the confusion plot)."""
    judge: Judge | None = None
    """None: never promoted (pretraining)."""
    data: dict[str, Any] = Field(default_factory=dict)
    hyperparameters: dict[str, Any] = Field(default_factory=dict)
    """Settings beside :class:`TrainConfig` that made the data."""
    model_override: tuple | None = None
    """(model, tokenizer) to train instead of the base's (tests use a tiny model)."""
    checkpoint_every: int = 0
    resume: bool = False
    """Continue CPU training from the run folder's latest checkpoint (the same result as an
    uninterrupted run)."""
    loss_title: str = "LoRA training loss"


class RunClock:
    """Stage lines, per-stage durations and the peak memory of one run, from its first stage on."""

    def __init__(self, console: Console | None = None, on_stage: Callable[[str], None] | None = None) -> None:
        self.console = console or Console(stderr=True)
        self.on_stage = on_stage
        self.started = time.perf_counter()
        self.durations: dict[str, float] = {}
        self.peak = PeakMemory().start()

    @contextmanager
    def stage(self, title: str, key: str) -> Iterator[None]:
        """Announce a stage and add its wall time to ``durations[key]``."""
        self.console.print(f"[bold cyan]▸ {title}[/]")
        if self.on_stage:
            self.on_stage(title)
        t = time.perf_counter()
        try:
            yield
        finally:
            self.durations[key] = self.durations.get(key, 0.0) + time.perf_counter() - t

    def __enter__(self) -> RunClock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.peak.stop()


def train_with(backend: str, train: Sequence[Group], val: Sequence[Group], cfg: TrainConfig, run_dir: Path,
               base: BaseModelRef, paths: Paths, *, progress: bool, model_override: tuple | None = None,
               start_from: Path | None = None, checkpoint_every: int = 0, resume: bool = False) -> TrainResult:
    """Dispatch to the trainer backend: ``cpu`` and ``cuda`` (one torch trainer, checkpoints and
    resume), or ``mlx``."""
    if backend == "mlx":
        from openhoof_router.learning.trainers.mlx import train_mlx

        return train_mlx(train, val, cfg, run_dir, base, paths=paths, progress=progress, start_from=start_from)
    from openhoof_router.learning.trainers.torch_lora import train_torch

    model, tokenizer = model_override or (None, None)
    return train_torch(train, val, cfg, run_dir, base, device=backend, paths=paths, progress=progress, model=model,
                       tokenizer=tokenizer, start_from=start_from, checkpoint_every=checkpoint_every, resume=resume)


def carry_out(plan: RunPlan, paths: Paths, clock: RunClock, *, progress: bool = True,
              force_promote: bool = False) -> RunManifest:
    """Run ``plan``; returns its manifest (also saved in the run folder) and promotes it if judged so."""
    from openhoof_router.models.merge import merge_lora_gguf

    cfg, base, layout, console = plan.cfg, plan.base, RunLayout(root=plan.run_dir), clock.console
    backend = training_backend(cfg.backend)
    with clock.stage(f"training LoRA on {backend} from {plan.start_name or 'the bare base'} "
                     f"(rank {cfg.lora_rank}, {cfg.epochs} epochs, lr {cfg.lr})", "train_s"):
        result = train_with(backend, plan.train, plan.val, cfg, layout.root, base, paths, progress=progress,
                            model_override=plan.model_override, start_from=plan.start_from,
                            checkpoint_every=plan.checkpoint_every if backend != "mlx" else 0,
                            resume=plan.resume and backend != "mlx")
    release_memory()  # the trainer's model and activations: not carried into merge and evaluation
    if base.gguf is None:
        raise RunError(f"base model {base.name} has no GGUF to merge the adapter into")
    with clock.stage("merging the adapter into a GGUF", "export_s"):
        gguf = merge_lora_gguf(base.gguf, result.adapter_dir, layout.gguf, name=f"openhoof-router {layout.root.name}")

    engine = engine_for(gguf, base_model=base, n_threads=cfg.threads, paths=paths)
    try:
        safe: SafeSide | None = None
        unseen: SafeSide | None = None
        fit: RuleFit | None = None
        scored: list[Scored] = []
        with clock.stage("calibrating the verdict rule and the safe side", "calibrate_s"):
            if plan.calibration:
                fit = fit_verdict_rule(engine, plan.calibration, progress=progress)
                engine.use_decoding(Decoding(**fit.decoding))
                scored = scored_of(fit, plan.calibration)
                safe = fit_safe_side(scored, trust_no_tool=plan.kind != "general",
                                     recall=OWN_RECALL if plan.kind == "user" else RECALL)
                console.print(f"  {fit.headline()}; {safe.headline()}")
        with clock.stage(f"evaluating on {', '.join(plan.evaluations)}", "eval_s"):
            reports, routed = {}, []
            for name, items in plan.evaluations.items():
                decisions = route_all(engine, items, progress=progress)
                reports[name] = score_decisions(items, decisions)
                if name in plan.unseen_also:
                    routed += [Scored.of(d, item.expected) for d, item in zip(decisions, items, strict=True)]
        if fit is not None and plan.known_tools:
            unseen = fit_unseen_side(scored + routed, plan.known_tools)
            console.print(f"  other tools: {unseen.headline()}")
    finally:
        engine.close()
    judgement = None
    if plan.judge is not None:
        with clock.stage("comparing with the model in place", "eval_s"):
            judgement = plan.judge(reports)
    gate = judgement.gate if judgement else None
    promoted = gate is not None and (force_promote or gate.promote)
    clock.durations["total_s"] = time.perf_counter() - clock.started

    metrics: dict[str, Any] = {name: summary_row(report) for name, report in reports.items()}
    if fit is not None:
        metrics["decoding_fit"] = {**fit.decoding, "accuracy": fit.accuracy, "headline": fit.headline()}
    if safe is not None:
        metrics["safe_side"] = safe.as_dict()
    if unseen is not None:
        metrics["safe_side_unseen"] = unseen.as_dict()
    decoding = Decoding(**fit.decoding, **safe.decoding()) if fit and safe else Decoding()
    if unseen is not None:
        decoding.known_tools, decoding.unseen_keep_threshold = sorted(plan.known_tools), unseen.keep_threshold
    manifest = RunManifest(
        run_id=layout.root.name,
        kind=plan.kind,
        base_model=BaseModelInfo(name=base.name, sha256=base.sha256, path=str(base.gguf or base.hf_dir)),
        start_from=plan.start_name,
        backend=result.backend,
        hyperparameters={**cfg.model_dump(mode="json"), **plan.hyperparameters},
        data={**plan.data, "n_trained": result.examples},
        files=layout.files(result.adapter_dir, gguf),
        decoding=decoding,
        metrics={**metrics, **(judgement.metrics if judgement else {})},
        gate={**gate.model_dump(), "forced": force_promote and not gate.promote} if gate else {},
        train={"steps": result.steps, "examples": result.examples, "peak_rss_mb": result.peak_rss_mb,
               "peak_gpu_mb": result.peak_gpu_mb, "final": result.history[-1] if result.history else None},
        durations={k: round(v, 1) for k, v in clock.durations.items()},
        peak_rss_mb=max(clock.peak.stop(), result.peak_rss_mb),
        hardware=hardware(),
        promoted=promoted,
    )
    write_files(layout, manifest, result, reports, plan.loss_title)
    headline = next(iter(reports.values()), None)
    console.print("  " + ", ".join(f"{name} {r.accuracy:.1%}" for name, r in reports.items())
                  + (f"; {fit.headline()}" if fit else "") + "; "
                    f"{clock.durations['total_s'] / 60:.1f} min")
    if gate is None:
        console.print(f"[bold]written[/] {layout.root.name} (a {plan.kind} run: not gated, never promoted)")
    elif promoted:
        ModelRegistry(paths).promote(layout.root, {"accuracy": headline.accuracy if headline else None})
        console.print(f"[bold green]promoted[/] {layout.root.name}: {gate.reason}"
                      + (" (forced)" if not gate.promote else ""))
    else:
        console.print(f"[bold yellow]not promoted[/] {layout.root.name}: {gate.reason} "
                      "(use --force-promote to override)")
    return manifest


def write_files(layout: RunLayout, manifest: RunManifest, result: TrainResult,
                reports: dict[str, EvalReport], loss_title: str) -> None:
    """The manifest, the loss history and plot, the headline report and its confusion plot."""
    from openhoof_router.learning.evaluation.plots import plot_confusion, plot_loss

    layout.history.write_text(json.dumps(result.history, indent=1))
    headline = next(iter(reports.values()), None)
    if headline is not None:
        layout.eval_report.write_text(headline.model_dump_json(indent=1))
    manifest.save(layout.root)
    plot_loss(result.history, layout.loss_plot, title=loss_title)
    if headline is not None:
        plot_confusion(headline.confusion, layout.confusion_plot)
