"""``hoof-train``: status, generate, run, eval, calibrate, export, pretrain, and ``--auto`` for cron.

Training options exist once (:data:`RUN_OPTIONS`, defaults from ``TrainConfig``) and are
accepted both before and after the subcommand: ``hoof-train --epochs 5 run`` and
``hoof-train run --epochs 5`` do the same; giving two different values is an error.
Results and tables go to stdout, progress and logs to stderr; exit codes are those of
:mod:`openhoof_router.cli.common`.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Callable

import click
from rich.console import Console
from rich.table import Table

from openhoof_router.cli.common import NOT_PROMOTED, common_options, handle_errors
from openhoof_router.store.paths import Paths
from openhoof_router.learning.config import OPENHOOF_PASSES, SEAL_GROUPS, TrainConfig

log = Console(stderr=True)
out = Console()

_FIELDS = TrainConfig.model_fields


def _train_option(name: str, **kwargs: Any) -> Callable:
    info = _FIELDS[name]
    default = info.default
    help_text = (info.description or "") + (f" [default: {default}]" if default is not None else "")
    return click.option(f"--{name.replace('_', '-')}", name, default=None, help=help_text.strip(), **kwargs)


RUN_OPTIONS: list[Callable] = [
    _train_option("epochs", type=float),
    _train_option("lr", type=float),
    _train_option("batch_size", type=int),
    _train_option("group_size", type=int),
    _train_option("lora_rank", type=int),
    _train_option("lora_alpha", type=int),
    _train_option("backend", type=click.Choice(["auto", "cpu", "cuda", "mlx"])),
    _train_option("max_steps", type=int),
    _train_option("seed", type=int),
    _train_option("threads", type=int),
    _train_option("start_from", type=str),
    _train_option("replay", type=int),
    _train_option("dtype", type=click.Choice(["auto", "float32", "bfloat16"])),
    _train_option("val_fraction", type=float),
    click.option("--format", "fmt", type=click.Choice(["chat"]), default=None,
                 help="The seed's flag; the router has one prompt format ('chat', FunctionGemma's turns)."),
    click.option("--base-model", default=None, envvar="OPENHOOF_BASE_MODEL",
                 help="'embedded' (default), a .gguf file or a Hugging Face folder."),
    click.option("--eval-file", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
                 help="Held-out records to gate promotion on (default: the bundled held-out splits)."),
    click.option("--force-promote", is_flag=True, default=None, help="Promote even when the gate refuses."),
    click.option("--no-progress", is_flag=True, default=None, help="No progress bars (they are off anyway "
                                                                    "when stderr is not a terminal)."),
]
_RUN_KEYS = [*[n for n in _FIELDS if n in {"epochs", "lr", "batch_size", "group_size", "lora_rank", "lora_alpha",
                                             "backend", "max_steps", "seed", "threads", "start_from", "replay",
                                             "dtype", "val_fraction"}],
             "fmt", "base_model", "eval_file", "force_promote", "no_progress"]


def run_options(fn: Callable) -> Callable:
    for option in reversed(RUN_OPTIONS):
        fn = option(fn)
    return fn


def merged_options(ctx: click.Context, local: dict[str, Any]) -> dict[str, Any]:
    """Options given before the subcommand (``ctx.obj``) and after it, as one set."""
    outer = (ctx.find_root().meta.get("run_options") or {})
    merged = {}
    for key in _RUN_KEYS:
        a, b = outer.get(key), local.get(key)
        if a is not None and b is not None and a != b:
            raise click.UsageError(f"--{key.replace('_', '-')} given twice with different values ({a} and {b})")
        merged[key] = b if b is not None else a
    return merged


def config_from(options: dict[str, Any]) -> TrainConfig:
    values = {k: v for k, v in options.items() if k in _FIELDS and v is not None}
    try:
        return TrainConfig(**values)
    except ValueError as exc:
        raise click.UsageError(str(exc).splitlines()[-1] if "\n" in str(exc) else str(exc)) from None


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
                          "continue_threshold": manifest.decoding.continue_threshold,
                          "minutes": round(manifest.durations["total_s"] / 60, 1),
                          "peak_rss_mb": round(manifest.peak_rss_mb)}))
    return 0 if manifest.promoted else NOT_PROMOTED


@click.group(invoke_without_command=True, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--auto", is_flag=True, help="Train (run) only if enough new examples arrived since the promoted run.")
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
    from openhoof_router.learning.run import auto_check

    should, message = auto_check(ctx.obj, min_examples)
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


main.add_command(run_cmd, "train")


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_obj
@handle_errors
def status(paths: Paths, as_json: bool) -> None:
    """Data counts per source and tool, trained runs and their metrics."""
    from openhoof_router.store.runs import ModelRegistry, general_run
    from openhoof_router.learning.data.assemble import assemble

    data = assemble(paths)
    registry = ModelRegistry(paths)
    latest = registry.latest()
    runs = registry.runs()
    general = general_run()
    if as_json:
        click.echo(json.dumps({"data_dir": str(paths.data_dir), "models_dir": str(paths.models_dir),
                               "examples": len(data.train), **data.counts, "skipped_lines": data.skipped_lines,
                               "latest": latest.model_dump() if latest else None,
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
              f"{live.get('confirmed', 0)} confirmed, {live.get('corrected', 0)} corrected")
    out.print(f"serving: {latest.run_id if latest else 'the general adapter' if general else 'the bare base'}")
    table = Table("run", "promoted", "held-out", "in place", "general", "train s", "peak MB", title="runs")
    for _, m in runs:
        mt = m.metrics
        table.add_row(("★ " if latest and m.run_id == latest.run_id else "") + m.run_id, str(m.promoted),
                      f"{mt.get('held_out', {}).get('accuracy', 0):.1%}",
                      f"{mt.get('incumbent', {}).get('accuracy', 0):.1%}",
                      f"{mt.get('general', {}).get('accuracy', 0):.1%}",
                      f"{m.durations.get('train_s', 0):.0f}", f"{m.peak_rss_mb:.0f}")
    out.print(table)


def _model_target(paths: Paths, model: str | None) -> Any:
    """``--model``: a run folder, ``base``, ``general``, or (default) what a router would serve."""
    from openhoof_router.models.loading import resolve_run
    from openhoof_router.store.runs import ModelRegistry, RunError, general_run

    if model == "base":
        return None
    if model:
        return resolve_run(model)
    try:
        return ModelRegistry(paths).latest_run()
    except RunError:
        return general_run()


@main.command(name="eval")
@click.option("--data", "data_file", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Records to evaluate on (seed format, or records with their own tools, e.g. BFCL-derived).")
@click.option("--model", default=None, help="Run folder, 'general', or 'base' (default: what the router serves).")
@click.option("--base-model", default=None, envvar="OPENHOOF_BASE_MODEL")
@click.option("--threads", type=int, default=None)
@click.option("--limit", type=int, default=None, help="Evaluate on the first N records only.")
@click.option("--json", "as_json", is_flag=True)
@click.option("--plot", type=click.Path(dir_okay=False, path_type=Path), default=None, help="Write the confusion matrix PNG.")
@click.option("--no-progress", is_flag=True)
@click.pass_obj
@handle_errors
def eval(paths: Paths, data_file: Path | None, model: str | None, base_model: str | None, threads: int | None,
         limit: int | None, as_json: bool, plot: Path | None, no_progress: bool) -> None:  # noqa: A001
    """Evaluate any model on any file of records."""
    from openhoof_router.models.base_model import resolve_base_model
    from openhoof_router.learning.evaluation.evaluate import evaluate, load_eval_items
    from openhoof_router.learning.run import engine_for, held_out_items

    items, skipped = load_eval_items(data_file) if data_file is not None else (held_out_items(), 0)
    items = items[:limit] if limit else items
    if not items:
        raise click.ClickException("no usable records to evaluate")
    target = _model_target(paths, model)
    engine = engine_for(target, resolve_base_model(base_model, paths), threads, paths)
    try:
        report = evaluate(engine, items, progress=not no_progress, skipped=skipped)
    finally:
        engine.close()
    if plot:
        from openhoof_router.learning.evaluation.plots import plot_confusion

        plot_confusion(report.confusion, plot)
    if as_json:
        click.echo(report.model_dump_json(indent=2, exclude={"correct"}))
        return
    name = getattr(target, "run_id", None) or (str(target) if target else "base")
    out.print(f"model: {name}  records: {report.n} ({skipped} skipped)")
    out.print(f"exact tool-set accuracy: [bold]{report.accuracy:.1%}[/]   per class: "
              + ", ".join(f"{k} {v['accuracy']:.1%} (n={v['n']:.0f})" for k, v in report.per_class.items())
              + f"   invalid: {report.invalid}   no-tool false positives: "
              + (f"{report.no_tool_false_positive_rate:.1%}" if report.no_tool_false_positive_rate is not None else "n/a"))
    out.print(f"latency p50 {report.latency_p50_ms:.1f} ms  p95 {report.latency_p95_ms:.1f} ms")
    table = Table("tool", "precision", "recall", "F1", "support")
    for tool, s in report.per_tool.items():
        table.add_row(tool, f"{s.precision:.2f}", f"{s.recall:.2f}", f"{s.f1:.2f}", str(s.support))
    out.print(table)


@main.command()
@click.option("--run", "run_dir", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="Run folder to calibrate (default: the promoted run).")
@click.option("--data", "data_file", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Held-out records (default: the bundled held-out splits).")
@click.option("--target", type=float, default=0.9, show_default=True,
              help="Accuracy the decisions kept by a tool's threshold must reach.")
@click.option("--plot", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the fallback-rate / kept-accuracy trade-off as a PNG.")
@click.option("--threads", type=int, default=None)
@click.option("--base-model", default=None, envvar="OPENHOOF_BASE_MODEL")
@click.option("--dry-run", is_flag=True, help="Show the fit; leave the manifest as it is.")
@click.option("--no-progress", is_flag=True)
@click.pass_obj
@handle_errors
def calibrate(paths: Paths, run_dir: Path | None, data_file: Path | None, target: float, plot: Path | None,
              threads: int | None, base_model: str | None, dry_run: bool, no_progress: bool) -> None:
    """Fit the run's continue threshold and per-tool thresholds on the held-out split and the
    confirmed / corrected decisions of the outcome log; write them into its manifest."""
    from openhoof_router.learning.evaluation.calibrate_run import calibrate_run

    result = calibrate_run(paths, run_dir, data_file, target=target, threads=threads, progress=not no_progress,
                           write=not dry_run, plot=plot, base_model=base_model)
    table = Table("threshold scale", "fallback rate", "accuracy of decisions kept", "overall accuracy",
                  title=f"run {result['run_id']}: thresholds fitted on {result['n']} decisions")
    for row in result["tradeoff"]:
        table.add_row(f"{row['scale']:.1f}x", f"{row['fallback_rate']:.1%}", f"{row['kept_accuracy']:.1%}",
                      f"{row['overall_accuracy']:.1%}")
    out.print(table)
    click.echo(json.dumps({k: result[k] for k in ("continue_threshold", "tool_thresholds", "written")}))


@main.command()
@click.option("--run", "run_dir", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="Run folder (default: the promoted run).")
@click.option("--dtype", type=click.Choice(["q8_0", "f16", "f32"]), default="q8_0", show_default=True)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None)
@click.option("--base-model", default=None, envvar="OPENHOOF_BASE_MODEL")
@click.pass_obj
@handle_errors
def export(paths: Paths, run_dir: Path | None, dtype: str, out: Path | None, base_model: str | None) -> None:
    """Write a run's merged GGUF (for llama.cpp, llama-server, LlamaFarm, Ollama).

    The run's manifest keeps naming the file it was evaluated with; this writes another.
    """
    from openhoof_router.models.base_model import resolve_base_model
    from openhoof_router.models.merge import merge_lora_gguf
    from openhoof_router.store.runs import ModelRegistry, ServedRun

    run = ServedRun.open(run_dir) if run_dir else ModelRegistry(paths).latest_run()
    if run.adapter is None:
        raise click.ClickException(f"run {run.run_id} has no adapter to export")
    base = resolve_base_model(base_model, paths)
    target = out or run.path / f"router-{dtype}.gguf"
    merge_lora_gguf(base.gguf, run.adapter, target, dtype=dtype, name=f"openhoof-router {run.run_id}")
    click.echo(str(target))


@main.command()
@click.option("--count", type=int, default=100, show_default=True, help="How many new examples to add.")
@click.option("--tools", "tools_file", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Your tool schemas (default: the 10 built-in tools).")
@click.option("--base-url", envvar="OPENHOOF_TEACHER_URL", default="http://127.0.0.1:11434/v1", show_default=True,
              help="OpenAI-compatible endpoint of the teacher (LlamaFarm, Ollama, llama-server, vLLM).")
@click.option("--model", "teacher_model", envvar="OPENHOOF_TEACHER_MODEL", default="qwen3:8b", show_default=True)
@click.option("--api-key", envvar="OPENHOOF_TEACHER_KEY", default="not-needed")
@click.option("--per-request", type=int, default=5, show_default=True, help="Messages asked for per request.")
@click.option("--seed", type=int, default=0)
@click.option("--no-progress", is_flag=True)
@click.pass_obj
@handle_errors
def generate(paths: Paths, count: int, tools_file: Path | None, base_url: str, teacher_model: str, api_key: str,
             per_request: int, seed: int, no_progress: bool) -> None:
    """Ask a teacher model for new user messages per tool and tool pair; validate, dedupe, append."""
    from openhoof_router.core.tools import builtin_tools, load_tools_file
    from openhoof_router.learning.data.teacher import make_teacher, synthesize

    tools = load_tools_file(tools_file) if tools_file else builtin_tools()
    teacher = make_teacher(base_url=base_url, model=teacher_model, api_key=api_key)
    report = synthesize(teacher, tools, count, paths, per_request=per_request, seed=seed, progress=not no_progress)
    click.echo(json.dumps(report.__dict__))
    log.print(f"added {report.added} examples to {paths.synthetic_file}")
    if report.added == 0:
        sys.exit(1)


@main.command()
@click.option("--corpus", type=click.Path(exists=True, file_okay=False, path_type=Path), required=True,
              help="The Seal-Tools corpus folder (tools.jsonl, queries.jsonl), e.g. ../shared/corpora/seal_tools.")
@click.option("--seal-groups", type=int, default=SEAL_GROUPS, show_default=True, help="Tool lists built from the corpus.")
@click.option("--openhoof-passes", type=int, default=OPENHOOF_PASSES, show_default=True, help="Passes over the OpenHoof data.")
@click.option("--data-seed", type=int, default=1, show_default=True)
@click.option("--ship", is_flag=True, help="Copy the result into the package's data folder (maintainers).")
@run_options
@click.pass_context
@handle_errors
def pretrain(ctx: click.Context, corpus: Path, seal_groups: int, openhoof_passes: int, data_seed: int, ship: bool,
             **options: Any) -> None:
    """Rebuild the general adapter from the public corpus (GPU when visible, else CPU).

    With the defaults it rebuilds the adapter shipped in the package. The training options'
    defaults here are the general adapter's (--epochs 1, --start-from none, --replay 0,
    --val-fraction 0), not the ones shown, which are hoof-train run's.
    """
    from openhoof_router.learning.pretrain import GENERAL_DEFAULTS, pretrain as run_pretrain

    options = merged_options(ctx, options)
    cfg = GENERAL_DEFAULTS.model_copy(update={k: v for k, v in options.items() if k in _FIELDS and v is not None})
    manifest = run_pretrain(corpus, paths=ctx.obj, cfg=cfg, base_model=options.get("base_model"),
                            seal_groups_n=seal_groups, openhoof_passes=openhoof_passes, data_seed=data_seed,
                            ship=ship, progress=not options.get("no_progress"), console=log)
    click.echo(json.dumps({"run": manifest.run_id, "metrics": {k: v.get("accuracy", v) if isinstance(v, dict) else v
                                                               for k, v in manifest.metrics.items()},
                          "minutes": round(manifest.durations["total_s"] / 60, 1)}, default=str))


if __name__ == "__main__":  # pragma: no cover
    main()
