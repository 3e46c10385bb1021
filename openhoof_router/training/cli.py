"""``hoof-train``: status, generate, export, train, eval, run — and ``--auto`` for cron.

Exit codes: 0 done (or nothing to do under ``--auto``), 1 failed, 2 usage error,
3 trained but not promoted (worse than the model in place).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from ..paths import Paths
from .config import TrainConfig

console = Console(stderr=True)
NOT_PROMOTED = 3

_TRAIN_OPTIONS = [
    click.option("--epochs", type=float, default=3, show_default=True),
    click.option("--lr", type=float, default=2e-4, show_default=True),
    click.option("--batch-size", type=int, default=4, show_default=True),
    click.option("--lora-rank", type=int, default=16, show_default=True),
    click.option("--lora-alpha", type=int, default=32, show_default=True),
    click.option("--format", "fmt", type=click.Choice(["chat", "instruction"]), default="chat", show_default=True,
                 help="Prompt layout; only 'chat' (FunctionGemma turns) is implemented."),
    click.option("--backend", type=click.Choice(["auto", "cpu", "cuda", "mlx"]), default="auto", show_default=True),
    click.option("--max-steps", type=int, default=None, help="Stop after N optimizer steps (smoke runs)."),
    click.option("--threads", type=int, default=None, help="CPU threads for training and evaluation."),
    click.option("--base-model", default=None, envvar="OPENHOOF_BASE_MODEL",
                 help="'embedded' (default), a .gguf file or a Hugging Face folder."),
    click.option("--eval-file", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
                 help="Held-out records to gate promotion on (default: the bundled evaluation split)."),
    click.option("--force-promote", is_flag=True, help="Promote even if worse than the model in place."),
    click.option("--no-progress", is_flag=True, help="No progress bars (logs, cron)."),
]


def train_options(fn):
    for option in reversed(_TRAIN_OPTIONS):
        fn = option(fn)
    return fn


def _config(epochs, lr, batch_size, lora_rank, lora_alpha, fmt, backend, max_steps, threads) -> TrainConfig:
    if fmt != "chat":
        raise click.UsageError("--format instruction is not implemented; the router's prompt format is 'chat'")
    return TrainConfig(epochs=epochs, lr=lr, batch_size=batch_size, lora_rank=lora_rank, lora_alpha=lora_alpha,
                       format=fmt, backend=backend, max_steps=max_steps, threads=threads)


def _do_run(ctx_paths: Paths, epochs, lr, batch_size, lora_rank, lora_alpha, fmt, backend, max_steps, threads,
            base_model, eval_file, force_promote, no_progress) -> int:
    from .pipeline import run

    cfg = _config(epochs, lr, batch_size, lora_rank, lora_alpha, fmt, backend, max_steps, threads)
    try:
        manifest = run(ctx_paths, cfg, base_model=base_model, eval_file=eval_file, force_promote=force_promote,
                       progress=not no_progress, console=console)
    except Exception as exc:  # one clear line for cron logs; the traceback is in --debug runs
        console.print(f"[bold red]training failed:[/] {exc}")
        if "--debug" in sys.argv:
            raise
        return 1
    held = manifest["metrics"]["held_out"]
    console.print(f"run {manifest['run_id']}: held-out accuracy {held['accuracy']:.1%}, "
                  f"p50 {held['latency_p50_ms']:.0f} ms; total {manifest['durations']['total_s']:.0f} s, "
                  f"peak RSS {manifest['peak_rss_mb']:.0f} MB")
    return 0 if manifest["promoted"] else NOT_PROMOTED


@click.group(invoke_without_command=True, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--auto", is_flag=True, help="Train (run) only if enough new examples arrived since the promoted run.")
@click.option("--min-examples", type=int, default=200, show_default=True, help="Threshold for --auto.")
@click.option("--home", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="OpenHoof home (default: $OPENHOOF_HOME or ~/.openhoof).")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), default=None)
@click.option("--debug", is_flag=True, hidden=True)
@train_options
@click.pass_context
def main(ctx, auto, min_examples, home, data_dir, debug, **train_kwargs):
    """Retrain the tool router from its logs.

    \b
    hoof-train status                     data counts, trained runs, metrics
    hoof-train generate --count 100       teacher-written examples for your tools
    hoof-train run                        assemble → train → export → evaluate → promote
    hoof-train --auto --min-examples 200  the same, only when enough new data arrived (cron)
    """
    ctx.obj = Paths.resolve(home=home, data_dir=data_dir)
    if ctx.invoked_subcommand is not None:
        return
    if not auto:
        click.echo(ctx.get_help())
        return
    from .pipeline import auto_check

    check = auto_check(ctx.obj, min_examples)
    console.print(check.message)
    if not check.should_train:
        ctx.exit(0)
    ctx.exit(_do_run(ctx.obj, **train_kwargs))


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_obj
def status(paths: Paths, as_json: bool) -> None:
    """Data counts per source and tool, trained runs and their metrics."""
    from ..registry import ModelRegistry
    from .dataset import assemble

    data = assemble(paths)
    registry = ModelRegistry(paths)
    latest = registry.latest() or {}
    runs = registry.runs()
    if as_json:
        click.echo(json.dumps({"data_dir": str(paths.data_dir), "models_dir": str(paths.models_dir),
                               "examples": len(data.train), **data.counts, "skipped_lines": data.skipped_lines,
                               "latest": latest, "runs": [{k: r.get(k) for k in ("run_id", "metrics", "durations",
                                                                               "promoted")} for r in runs]},
                              default=str, indent=2))
        return
    console.print(f"[bold]data[/] {paths.data_dir}: {len(data.train)} examples "
                  f"({data.skipped_lines} malformed lines skipped)")
    table = Table("source", "examples")
    for name, n in data.counts["per_source"].items():
        table.add_row(name, str(n))
    console.print(table)
    table = Table("tool", "examples")
    for name, n in data.counts["per_tool"].items():
        table.add_row(name, str(n))
    console.print(table)
    live = data.counts.get("live", {})
    console.print(f"live: {live.get('decisions', 0)} decisions, {live.get('outcomes', 0)} outcomes, "
                  f"{live.get('confirmed', 0)} confirmed, {live.get('corrected', 0)} corrected")
    table = Table("run", "promoted", "held-out acc", "base/incumbent acc", "train s", "peak MB", title="runs")
    for r in runs:
        m = r.get("metrics", {})
        table.add_row(("★ " if r["run_id"] == latest.get("run_id") else "") + r["run_id"], str(r.get("promoted")),
                      f"{m.get('held_out', {}).get('accuracy', 0):.1%}",
                      f"{m.get('incumbent', {}).get('accuracy', 0):.1%}",
                      f"{r.get('durations', {}).get('train_s', 0):.0f}", f"{r.get('peak_rss_mb', 0):.0f}")
    console.print(table)


@main.command(name="run")
@train_options
@click.pass_obj
def run_cmd(paths: Paths, **kwargs) -> None:
    """Assemble data, train, export GGUF, evaluate, promote if not worse."""
    sys.exit(_do_run(paths, **kwargs))


@main.command()
@train_options
@click.pass_obj
def train(paths: Paths, **kwargs) -> None:
    """Alias of run: training always exports and evaluates, so a run is complete or absent."""
    sys.exit(_do_run(paths, **kwargs))


@main.command()
@click.option("--data", "data_file", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Records to evaluate on (seed format, or records with their own tools, e.g. BFCL-derived).")
@click.option("--model", default=None, help="Run folder or GGUF (default: the promoted run; 'base' for none).")
@click.option("--base-model", default=None, envvar="OPENHOOF_BASE_MODEL")
@click.option("--threads", type=int, default=None)
@click.option("--limit", type=int, default=None, help="Evaluate on the first N records only.")
@click.option("--json", "as_json", is_flag=True)
@click.option("--plot", type=click.Path(dir_okay=False, path_type=Path), default=None, help="Write the confusion matrix PNG.")
@click.pass_obj
def eval(paths: Paths, data_file, model, base_model, threads, limit, as_json, plot) -> None:  # noqa: A001
    """Evaluate any model on any file of records."""
    from ..base_model import resolve_base_model
    from ..registry import ModelRegistry
    from .evaluate import load_eval_items
    from .pipeline import evaluate_model, held_out_items

    if data_file is not None:
        items, skipped = load_eval_items(data_file)
    else:
        items, skipped = held_out_items(), 0
    items = items[:limit] if limit else items
    if not items:
        raise click.ClickException("no usable records to evaluate")
    run_dir = None if model == "base" else (Path(model) if model else ModelRegistry(paths).latest_dir())
    report = evaluate_model(run_dir, resolve_base_model(base_model, paths), items, threads)
    report.skipped = skipped
    if plot:
        from .plots import plot_confusion

        plot_confusion(report.confusion, plot)
    if as_json:
        click.echo(report.model_dump_json(indent=2))
        return
    console.print(f"model: {run_dir or 'base'}  records: {report.n} ({skipped} skipped)")
    console.print(f"exact tool-set accuracy: [bold]{report.accuracy:.1%}[/]   invalid: {report.invalid}   "
                  f"no-tool false positives: {report.no_tool_false_positive_rate if report.no_tool_false_positive_rate is not None else 'n/a'}")
    console.print(f"latency p50 {report.latency_p50_ms:.1f} ms  p95 {report.latency_p95_ms:.1f} ms")
    table = Table("tool", "precision", "recall", "F1", "support")
    for name, s in report.per_tool.items():
        table.add_row(name, f"{s.precision:.2f}", f"{s.recall:.2f}", f"{s.f1:.2f}", str(s.support))
    console.print(table)


@main.command()
@click.option("--run", "run_dir", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="Run folder with a PEFT adapter (default: the promoted run).")
@click.option("--dtype", type=click.Choice(["q8_0", "f16", "f32"]), default="q8_0", show_default=True)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None)
@click.option("--base-model", default=None, envvar="OPENHOOF_BASE_MODEL")
@click.pass_obj
def export(paths: Paths, run_dir, dtype, out, base_model) -> None:
    """Write a run's merged GGUF (for llama.cpp, llama-server, LlamaFarm, Ollama)."""
    from ..base_model import resolve_base_model
    from ..registry import ModelRegistry
    from .export import export_router_gguf

    run_dir = run_dir or ModelRegistry(paths).latest_dir()
    if run_dir is None or not (run_dir / "peft").is_dir():
        raise click.ClickException("no run with a PEFT adapter to export (train one, or pass --run)")
    base = resolve_base_model(base_model, paths)
    target = out or run_dir / f"router-{dtype}.gguf"
    export_router_gguf(run_dir / "peft", base.gguf, target, dtype=dtype)
    click.echo(str(target))


@main.command()
@click.option("--count", type=int, default=100, show_default=True, help="How many new examples to add.")
@click.option("--tools", "tools_file", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Your tool schemas (default: the 10 built-in tools).")
@click.option("--base-url", envvar="OPENHOOF_TEACHER_URL", default="http://127.0.0.1:14345/v1", show_default=True,
              help="OpenAI-compatible endpoint of the teacher (LlamaFarm, Ollama, llama-server, vLLM).")
@click.option("--model", "teacher_model", envvar="OPENHOOF_TEACHER_MODEL", default="qwen3:8b", show_default=True)
@click.option("--api-key", envvar="OPENHOOF_TEACHER_KEY", default="not-needed")
@click.option("--per-request", type=int, default=5, show_default=True, help="Messages asked for per request.")
@click.option("--seed", type=int, default=0)
@click.pass_obj
def generate(paths: Paths, count, tools_file, base_url, teacher_model, api_key, per_request, seed) -> None:
    """Ask a teacher model for new user messages per tool and tool pair; validate, dedupe, append."""
    from ..tools import builtin_tools, load_tools_file
    from .synth import make_teacher, synthesize

    tools = load_tools_file(tools_file) if tools_file else builtin_tools()
    teacher = make_teacher(base_url=base_url, model=teacher_model, api_key=api_key)
    report = synthesize(teacher, tools, count, paths, per_request=per_request, seed=seed)
    console.print(f"added {report.added} examples to {paths.synthetic_file} "
                  f"({report.rejected_invalid} invalid answers, {report.rejected_duplicate} duplicates, "
                  f"{report.requests} teacher requests, {report.failed_requests} failed)")
    if report.added == 0:
        sys.exit(1)


if __name__ == "__main__":  # pragma: no cover
    main()
