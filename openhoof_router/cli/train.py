"""``hoof-train``: status, generate, run, eval, calibrate, export, pretrain, and ``--auto`` for cron.

This module holds the group, the training loop's commands (``run``, ``--auto``) and
``status``; the other commands are in :mod:`openhoof_router.cli.train_commands`, the
training options (given before or after the subcommand) in
:mod:`openhoof_router.cli.train_options`. Results and tables go to stdout, progress and logs
to stderr; exit codes are those of :mod:`openhoof_router.cli.common`.
"""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path
from typing import Any

import click
from rich.table import Column, Table

from openhoof_router.cli.common import NOT_PROMOTED, Group, common_options, handle_errors
from openhoof_router.cli.console import log, out
from openhoof_router.cli.train_commands import COMMANDS
from openhoof_router.cli.train_options import config_from, merged_options, run_options
from openhoof_router.store.paths import Paths


def _do_run(paths: Paths, options: dict[str, Any]) -> int:
    from openhoof_router.learning.run import run

    cfg = config_from(options)
    manifest = run(paths, cfg, base_model=options.get("base_model"), eval_file=options.get("eval_file"),
                   force_promote=bool(options.get("force_promote")), progress=not options.get("no_progress"),
                   console=log)
    held = manifest.metrics["held_out"]
    click.echo(json.dumps({"run": manifest.run_id, "promoted": manifest.promoted, "gate": manifest.gate["reason"],
                          "held_out_accuracy": round(held["accuracy"], 4),
                          **{k: round(v, 4) for k, v in manifest.metrics.items() if k.endswith("_accuracy")},
                          "general_accuracy": round(manifest.metrics.get("general", {}).get("accuracy", 0.0), 4),
                          "prompt_format": manifest.prompt_format,
                          "decoding_fit": manifest.metrics.get("decoding_fit"),
                          "minutes": round(manifest.durations["total_s"] / 60, 1),
                          "peak_rss_mb": round(manifest.peak_rss_mb)}))
    return 0 if manifest.promoted else NOT_PROMOTED


@click.group(cls=Group, invoke_without_command=True, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--auto", is_flag=True, help="Train (run) only when enough examples arrived that the model in place "
                                           "was not trained on (vouched decisions, generated examples).")
@click.option("--min-examples", type=int, default=200, show_default=True, help="Threshold for --auto.")
@click.option("--home", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="OpenHoof home (default: $OPENHOOF_HOME or ~/.openhoof).")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), default=None)
@common_options
@run_options
@click.pass_context
@handle_errors
def main(ctx: click.Context, auto: bool, min_examples: int, home: Path | None, data_dir: Path | None,
         debug: bool, **options: Any) -> None:
    """Retrain the tool router from its logs.

    \b
    hoof-train status                     data counts, trained runs, metrics
    hoof-train generate --count 100       teacher-written examples for your tools
    hoof-train run                        assemble → train → export → calibrate → evaluate → gate → promote
    hoof-train --auto --min-examples 200  the same, only when enough new data arrived (cron)
    hoof-train eval / calibrate / export  score, fit thresholds, write a GGUF for any run
    hoof-train pretrain --corpus DIR      rebuild the general adapter from the public corpus

    Exit codes: 0 done, 1 failed, 2 usage, 3 not promoted, 4 missing package, 5 bad input.
    """
    ctx.obj = Paths.resolve(home=home, data_dir=data_dir)
    ctx.meta["run_options"] = options
    if ctx.invoked_subcommand is not None:
        return
    if not auto:
        click.echo(ctx.get_help())
        return
    from openhoof_router.learning.data.assemble import retrain_due

    should, message = retrain_due(ctx.obj, min_examples)
    log.print(message)
    if not should:
        ctx.exit(0)
    ctx.exit(_do_run(ctx.obj, merged_options(ctx, {})))


@main.command(name="run")
@run_options
@click.pass_context
@handle_errors
def run_cmd(ctx: click.Context, **options: Any) -> None:
    """Assemble data, train, export, calibrate, evaluate, promote if the gate allows.

    (``train`` is the same command: a run is always complete, evaluated and gated.)
    """
    sys.exit(_do_run(ctx.obj, merged_options(ctx, options)))


# the seed's name for ``run``: accepted, but not listed twice in --help
main.add_command(copy.copy(run_cmd), "train")
main.commands["train"].hidden = True


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_obj
@handle_errors
def status(paths: Paths, as_json: bool) -> None:
    """Data counts per source and tool, what a router would serve and why, trained runs and their metrics."""
    from openhoof_router.learning.data.assemble import assemble
    from openhoof_router.store.runs import ModelRegistry, general_run

    data = assemble(paths)
    registry = ModelRegistry(paths)
    latest = registry.latest()
    runs = registry.runs()
    general = general_run()
    serving = _serving(paths)
    if as_json:
        click.echo(json.dumps({"data_dir": str(paths.data_dir), "models_dir": str(paths.models_dir),
                               "examples": len(data.train), **data.counts, "skipped_lines": data.skipped_lines,
                               "latest": latest.model_dump() if latest else None, "serving": serving,
                               "general": general.run_id if general else None,
                               "runs": [{"run_id": m.run_id, "metrics": m.metrics, "durations": m.durations,
                                         "promoted": m.promoted} for _, m in runs]}, default=str, indent=2))
        return
    out.print(f"[bold]data[/] {paths.data_dir}: {len(data.train)} examples "
              f"({data.skipped_lines} malformed lines skipped)")
    table = Table("source", "examples")
    for name, n in data.counts["per_source"].items():
        table.add_row(name, str(n))
    out.print(table)
    table = Table("tool", "examples")
    for name, n in data.counts["per_tool"].items():
        table.add_row(name, str(n))
    out.print(table)
    live = data.counts.get("live", {})
    out.print(f"live: {live.get('decisions', 0)} decisions, {live.get('outcomes', 0)} outcomes, "
              f"{live.get('confirmed', 0)} confirmed, {live.get('corrected', 0)} corrected", markup=False)
    if not live.get("decisions"):
        out.print(f"  (routers append every decision to {paths.decisions_file}, hoof-route too unless --no-log; "
                  "none has been logged here yet)", markup=False)
    out.print(f"serving: {serving['describe']}", markup=False)
    for reason in serving["refused"]:
        out.print(f"  {reason}", markup=False)
    out.print(f"  ({serving['checked']})", markup=False)
    run_column = Column("run", no_wrap=True, min_width=max((len(m.run_id) + 2 for _, m in runs), default=3))
    table = Table(run_column, "promoted", "held-out", "in place", "general", "train s", "peak MB",
                  title="runs (★ serves)")  # run ids are never cut: the other columns give way
    for _, m in runs:
        mt = m.metrics
        table.add_row(("★ " if m.run_id == serving["run"] else "") + m.run_id, str(m.promoted),
                      f"{mt.get('held_out', {}).get('accuracy', 0):.1%}",
                      f"{mt.get('incumbent', {}).get('accuracy', 0):.1%}",
                      f"{mt.get('general', {}).get('accuracy', 0):.1%}",
                      f"{m.durations.get('train_s', 0):.0f}", f"{m.peak_rss_mb:.0f}")
    out.print(table)


def _serving(paths: Paths) -> dict[str, Any]:
    """What a router started here would serve, and why (files checked, nothing loaded)."""
    from openhoof_router.serving.selection import serve

    try:
        selection = serve(paths=paths, load=False, warn=False)
    except Exception as exc:  # a pinned model that cannot serve: the router would not start
        return {"source": None, "run": None, "refused": [str(exc)], "describe": "nothing (the router would fail "
                "to start)", "checked": "OPENHOOF_MODEL / OPENHOOF_BASE_MODEL as set in this environment"}
    return {**selection.summary(), "describe": selection.describe(),
            "checked": "files checked, not loaded: a run that fails to load or to route a probe message "
                       "is refused too, when the router starts"}


for command in COMMANDS:
    main.add_command(command)


if __name__ == "__main__":  # pragma: no cover
    main()
