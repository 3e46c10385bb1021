"""The user run behind ``hoof-train run``: its data, its start adapter and its gate.

assemble data → train LoRA (continuing from the general adapter, with a replay sample of
the general corpus) → merge into a GGUF → calibrate the verdict rule and the safe side → evaluate the
new run and the model in place on the same messages (the user's held-out data and the
fixed general sample) → gate (:mod:`.gate`) → promote. The steps after the data are the
one run procedure (:mod:`.procedure`), which also writes the run folder
(:class:`~openhoof_router.store.runs.RunLayout`) and its manifest. Results of the model in
place are cached per evaluation set, so the second run does not evaluate it again.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from rich.console import Console

from openhoof_router.learning.config import TrainConfig
from openhoof_router.learning.data import DataError
from openhoof_router.learning.data.assemble import Assembled, assemble, bundled_held_out
from openhoof_router.learning.data.groups import Group, record_tools, records_to_groups, split_records
from openhoof_router.learning.data.shipped_samples import CALIBRATION_FILE, GATE_FILE, replay_groups
from openhoof_router.learning.evaluation.evaluate import (
    EvalItem,
    EvalReport,
    evaluate,
    load_eval_items,
    summary_row,
    to_item,
)
from openhoof_router.learning.evaluation.gate import compare, decide
from openhoof_router.learning.procedure import Judge, Judgement, RunClock, RunPlan, carry_out
from openhoof_router.models.base_model import BaseModelRef, resolve_base_model
from openhoof_router.models.loading import BackendError, check_base
from openhoof_router.models.lora import ADAPTER_CONFIG
from openhoof_router.serving.selection import engine_for, serve
from openhoof_router.serving.settings import RouterSettings
from openhoof_router.store.paths import Paths, resolve_paths
from openhoof_router.store.runs import MANIFEST, ModelRegistry, RunError, RunManifest, ServedRun, general_run

CALIBRATION_GENERAL = 80
"""General-corpus records added to the run's own validation split to fit the verdict rule and the safe side."""


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
    """Whether ``run`` was trained on ``base`` (:func:`~openhoof_router.models.loading.check_base`)."""
    if run is None:
        return False
    try:
        check_base(run, base)
    except BackendError:
        return False
    return True


def start_run(start_from: str | None) -> ServedRun | None:
    """The run ``start_from`` names: the shipped general one or a run folder; None for none,
    a missing general adapter, or a bare PEFT adapter folder (its weights only)."""
    if not start_from or start_from == "none":
        return None
    if start_from == "general":
        return general_run()
    folder = Path(start_from).expanduser()
    if (folder / ADAPTER_CONFIG).is_file() and not (folder / MANIFEST).is_file():
        return None
    return ServedRun.open(start_from)


def start_adapter(start_from: str | None, base: BaseModelRef) -> tuple[Path | None, str | None]:
    """The adapter a run continues from, and its name: the shipped general one, a run, a bare
    PEFT adapter folder (its weights only: any prompt format), or none (also when the general
    adapter was trained on another base)."""
    if not start_from or start_from == "none":
        return None, None
    run = start_run(start_from)
    if start_from == "general":
        return (run.adapter, run.run_id) if run is not None and fits(run, base) else (None, None)
    if run is None:
        folder = Path(start_from).expanduser()
        return folder, folder.name
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


def cached_eval(run: ServedRun | None, base: BaseModelRef, items: Sequence[EvalItem], paths: Paths,
                threads: int | None, progress: bool) -> EvalReport:
    """Evaluate a run (None: the base), reusing an earlier result on the very same messages."""
    from openhoof_router.learning.evaluation.evaluate import items_digest

    ident = f"{run.run_id}-{run.manifest.created_at:.0f}" if run is not None else f"base-{(base.sha256 or '')[:12]}"
    path = paths.eval_cache / f"{ident}-{items_digest(items)}.json"
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
    """The model in place: the run a router would serve on ``base`` (promoted, else general;
    None: the bare base), its files checked, not loaded (:func:`~openhoof_router.serving.selection.serve`)."""
    settings = RouterSettings.of(None, base_model=base).model_copy(update={"model": None})  # no OPENHOOF_MODEL pin
    return serve(settings, paths=registry.paths, load=False).run


def user_judge(registry: ModelRegistry, base: BaseModelRef, paths: Paths, cfg: TrainConfig, progress: bool,
               held: list[EvalItem], general: list[EvalItem], n_single: int | None) -> Judge:
    """The user run's gate: the candidate against the model in place on the very same messages
    (:mod:`.gate`); ``n_single``: the held-out set's leading single-turn messages (None: unknown)."""

    def judge(reports: dict[str, EvalReport]) -> Judgement:
        current = incumbent(registry, base)
        in_place = cached_eval(current, base, held, paths, cfg.threads, progress)
        in_place_general = cached_eval(current, base, general, paths, cfg.threads, progress) if general else None
        report, general_report = reports["held_out"], reports.get("general")
        gate = decide(compare("held_out", report.correct, in_place.correct),
                      compare("general", general_report.correct, in_place_general.correct)
                      if general_report and in_place_general else None)
        metrics: dict[str, Any] = {"incumbent": {"run": current.run_id if current else "base", **summary_row(in_place)}}
        if in_place_general is not None:
            metrics["incumbent_general"] = summary_row(in_place_general)
        if n_single is not None:
            metrics["single_turn_accuracy"] = sum(report.correct[:n_single]) / max(1, n_single)
            metrics["followup_accuracy"] = sum(report.correct[n_single:]) / max(1, len(report.correct) - n_single)
        return Judgement(gate=gate, metrics=metrics)

    return judge


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
    """One full user run (:func:`~openhoof_router.learning.procedure.carry_out`); returns its
    manifest (also written to ``runs/ID/manifest.json``). ``data``: train on these records
    instead of the assembled ones; ``general_limit``: use only the first N general-sample
    messages (0: none) for calibration and the gate."""
    paths = resolve_paths(paths)
    cfg = cfg or TrainConfig()
    base = resolve_base_model(base_model, paths)
    registry = ModelRegistry(paths)
    with RunClock(console, on_stage) as clock:
        with clock.stage("assembling data", "assemble_s"):
            data = data or assemble(paths)
            if not data.train:
                raise DataError(f"no training examples in {paths.data_dir} or the bundled data")
            train_recs, val_recs = split_records(data.train, cfg.val_fraction)
            groups = epoch_groups(train_recs, cfg)
            start, start_name = start_adapter(cfg.start_from, base)
            if cfg.start_from == "general" and start is None:
                clock.console.print("[yellow]no general adapter for this base model: training from the bare base[/]")
            clock.console.print(f"  {len(train_recs)} train / {len(val_recs)} validation examples "
                                f"({sum(len(g.samples) for g in groups)} with replay, over {cfg.epochs} epochs); "
                                f"per source {data.counts.get('per_source', {})}; {data.skipped_lines} malformed "
                                "lines skipped")
            held, general = held_out_items(eval_file), general_items(general_limit)
            n_calib = CALIBRATION_GENERAL if general_limit is None else min(CALIBRATION_GENERAL, general_limit)
            # the bundled held-out set lists single turns first, then follow-ups
            n_single = None if eval_file else len([r for r in bundled_held_out() if not r.input.context])
        plan = RunPlan(
            kind="user", run_dir=registry.new_run_dir(), cfg=cfg, base=base, train=groups,
            val=records_to_groups(val_recs, group_size=cfg.group_size, seed=cfg.seed, source="val"),
            start_from=start, start_name=start_name,
            calibration=[to_item(r.model_dump()) for r in val_recs] + general_items(n_calib, CALIBRATION_FILE),
            known_tools=frozenset(t.name for r in data.train for t in record_tools(r)),
            evaluations={"held_out": held, **({"general": general} if general else {})},
            unseen_also=("general",),
            judge=user_judge(registry, base, paths, cfg, progress, held, general, n_single),
            data={"n_examples": len(data.train), "n_train": len(train_recs), "n_val": len(val_recs),
                  "hash": data.data_hash, **data.counts, "skipped_lines": data.skipped_lines},
            model_override=model_override,
        )
        return carry_out(plan, paths, clock, progress=progress, force_promote=force_promote)
