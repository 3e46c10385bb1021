"""``hoof-train calibrate``: fit a run's serving thresholds and write them into its manifest.

The data: the held-out records (the bundled splits, or ``--data``) and every decision in
the outcome log that feedback vouched for (confirmed or corrected), re-routed by the run
being calibrated. See :mod:`.calibrate` for what is fitted, and :mod:`.safe_side` for the
no-tool and keep thresholds of ``narrow`` mode (the no-tool threshold it fits replaces the
one :mod:`.calibrate` would: "no tool" is held to a higher precision than a tool choice).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from openhoof_router.core.records import NO_TOOL
from openhoof_router.learning.data.groups import record_tools
from openhoof_router.learning.evaluation.calibrate import (
    MIN_SUPPORT,
    fit_tool_thresholds,
    fit_verdict_rule,
    out_of_reach,
    support,
    tradeoff,
)
from openhoof_router.learning.evaluation.evaluate import EvalItem, load_eval_items
from openhoof_router.learning.evaluation.safe_side import fit_safe_side, scored_of
from openhoof_router.learning.run import engine_for, held_out_items
from openhoof_router.models.base_model import resolve_base_model
from openhoof_router.store.paths import Paths
from openhoof_router.store.runs import ModelRegistry, ServedRun


def feedback_items(paths: Paths) -> list[EvalItem]:
    """Logged decisions a person confirmed or corrected, as evaluation items."""
    from openhoof_router.store.logs import read_joined

    out = []
    for item in read_joined(paths).items:
        label = item.label
        if label is not None:
            rec = item.decision
            out.append(EvalItem(rec.input.user_message, record_tools(rec), frozenset(label), list(rec.input.context),
                                item.decision_id))
    return out


def calibrate_run(paths: Paths, run_dir: Path | None, data_file: Path | None, *, target: float = 0.9,
                  threads: int | None = None, progress: bool = True, write: bool = True,
                  plot: Path | None = None, base_model: Any = None, safe_side_only: bool = False) -> dict[str, Any]:
    """Fit and (``write``) store the run's serving thresholds; ``safe_side_only`` writes only the
    no-tool and keep thresholds (for a run whose calibration tools are not the user's, such as
    the shipped general adapter: its per-tool thresholds would name tools no user has). Such a
    run, and any general run, never follows "no tool" (:func:`.safe_side.fit_safe_side`)."""
    run = ServedRun.open(run_dir) if run_dir else ModelRegistry(paths).latest_run()
    items = load_eval_items(data_file)[0] if data_file else held_out_items()
    items += feedback_items(paths)
    engine = engine_for(run, resolve_base_model(base_model, paths), threads, paths)
    try:
        fit = fit_verdict_rule(engine, items, progress=progress)
    finally:
        engine.close()
    scored = scored_of(fit, items)
    default, per_tool = fit_tool_thresholds(scored, target=target)
    # a general run's held-out requests are the corpus's, not the user's: its "no tool" is never followed
    safe = fit_safe_side(scored, trust_no_tool=run.manifest.kind != "general" and not safe_side_only)
    if safe.no_tool_threshold is not None:  # "no tool" is held to the safe side's precision, not the target
        per_tool[NO_TOOL] = safe.no_tool_threshold
    counts = support(scored)
    # what was *not* fitted, and on how few decisions: said in the output and kept in the manifest
    fit_notes = {"target": target, "min_support": MIN_SUPPORT, "decisions": len(scored), "support": counts,
                 "not_fitted": {name: n for name, n in sorted(counts.items()) if name not in per_tool},
                 "default_fitted": default is not None,
                 "out_of_reach": out_of_reach(scored, target, MIN_SUPPORT)}
    table = tradeoff(scored, per_tool, default or 0.0)
    fit_notes["fallback_rate"] = next(row["fallback_rate"] for row in table if row["scale"] == 1.0)
    if plot is not None:
        from openhoof_router.learning.evaluation.plots import plot_tradeoff

        plot_tradeoff(scored, per_tool, default or 0.0, plot)
    if write:
        manifest = run.manifest
        manifest.decoding.keep_threshold = safe.keep_threshold
        if safe_side_only:
            manifest.decoding.tool_thresholds = {**manifest.decoding.tool_thresholds,
                                                 **safe.decoding()["tool_thresholds"]}
        else:
            for key, value in fit.decoding.items():
                setattr(manifest.decoding, key, value)
            manifest.decoding.threshold = default
            manifest.decoding.tool_thresholds = per_tool
            manifest.metrics["calibration"] = fit_notes
        manifest.metrics["safe_side"] = safe.as_dict()
        manifest.save(run.path)
    return {"run_id": run.run_id, "n": len(items), **fit.decoding, "decoding_accuracy": fit.accuracy,
            "decoding_fit": fit.headline(),
            "threshold": default, "tool_thresholds": per_tool, "tradeoff": table, "written": write,
            "safe_side": safe.as_dict(), "safe_side_only": safe_side_only, **fit_notes}
