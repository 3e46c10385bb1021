"""``hoof-train``'s commands besides the training loop (``run``, ``status``, ``--auto``, in
:mod:`openhoof_router.cli.train`): ``eval``, ``calibrate`` and ``export`` act on a model or
run, ``generate`` asks a teacher for examples, ``pretrain`` rebuilds the general adapter."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click
from rich.table import Table

from openhoof_router.cli.common import BadInput, handle_errors
from openhoof_router.cli.console import log, out
from openhoof_router.cli.train_options import TRAIN_FIELDS, merged_options, run_options
from openhoof_router.learning.config import OPENHOOF_PASSES, SEAL_GROUPS
from openhoof_router.store.paths import Paths


def _settings(**values: Any) -> Any:
    """The router settings from the environment, with the options given (None: not given)."""
    from openhoof_router.serving.settings import RouterSettings

    return RouterSettings.of(None, **{k: v for k, v in values.items() if v is not None})


@click.command(name="eval")
@click.option("--data", "data_file", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Records to evaluate on (seed format, or records with their own tools, e.g. BFCL-derived).")
@click.option("--model", default=None, help="Run folder, 'general', or 'base' (default: what the router serves).")
@click.option("--base-model", default=None, envvar="OPENHOOF_BASE_MODEL")
@click.option("--threads", type=int, default=None)
@click.option("--limit", type=click.IntRange(min=1), default=None,
              help="Evaluate on N records sampled across classes (none / one / two+) and tools, not the first N.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the --limit sample.")
@click.option("--json", "as_json", is_flag=True)
@click.option("--plot", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the confusion matrix PNG.")
@click.option("--no-progress", is_flag=True)
@click.pass_obj
@handle_errors
def eval(paths: Paths, data_file: Path | None, model: str | None, base_model: str | None, threads: int | None,
         limit: int | None, seed: int, as_json: bool, plot: Path | None, no_progress: bool) -> None:  # noqa: A001
    """Evaluate any model on any file of records."""
    from openhoof_router.learning.evaluation.evaluate import evaluate, load_eval_items, sample_items
    from openhoof_router.learning.run import held_out_items
    from openhoof_router.serving.selection import serve

    items, skipped = load_eval_items(data_file) if data_file is not None else (held_out_items(), 0)
    total = len(items)
    items = sample_items(items, limit, seed) if limit else items
    if not items:
        raise BadInput("no usable records to evaluate")
    # llama.cpp: the merged GGUF a run was gated on; the default model is what a router serves
    selection = serve(_settings(model=model, base_model=base_model, n_threads=threads, backend="llama.cpp"),
                      paths=paths)
    engine = selection.engine
    assert engine is not None
    try:
        report = evaluate(engine, items, progress=not no_progress, skipped=skipped)
    finally:
        engine.close()
    report.sampled_from = total if len(items) < total else None
    if plot:
        from openhoof_router.learning.evaluation.plots import plot_confusion

        plot_confusion(report.confusion, plot)
    if as_json:
        click.echo(report.model_dump_json(indent=2, exclude={"correct"}))
        return
    sample = f" sampled of {total} (seed {seed})" if report.sampled_from else ""
    out.print(f"model: {selection.describe()}  records: {report.n}{sample} ({skipped} skipped)", markup=False)
    out.print(f"exact tool-set accuracy: [bold]{report.accuracy:.1%}[/]   per class: "
              + ", ".join(f"{k} {v['accuracy']:.1%} (n={v['n']:.0f})" for k, v in report.per_class.items())
              + f"   invalid: {report.invalid}   no-tool false positives: "
              + (f"{report.no_tool_false_positive_rate:.1%}"
                 if report.no_tool_false_positive_rate is not None else "n/a"))
    out.print(f"latency p50 {report.latency_p50_ms:.1f} ms  p95 {report.latency_p95_ms:.1f} ms")
    table = Table("tool", "precision", "recall", "F1", "support")
    for tool, s in report.per_tool.items():
        table.add_row(tool, f"{s.precision:.2f}", f"{s.recall:.2f}", f"{s.f1:.2f}", str(s.support))
    out.print(table)


@click.command()
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
@click.option("--safe-side-only", is_flag=True,
              help="Write only narrow mode's no-tool and keep thresholds (for a run calibrated on tools "
                   "that are not yours, such as the shipped general adapter).")
@click.option("--json", "as_json", is_flag=True, help="The fit as one JSON object (instead of the table).")
@click.option("--no-progress", is_flag=True)
@click.pass_obj
@handle_errors
def calibrate(paths: Paths, run_dir: Path | None, data_file: Path | None, target: float, plot: Path | None,
              threads: int | None, base_model: str | None, dry_run: bool, safe_side_only: bool, as_json: bool,
              no_progress: bool) -> None:
    """Fit the run's verdict rule, per-tool thresholds and narrow mode's safe side (the
    no-tool and keep thresholds) on the held-out split and the confirmed / corrected
    decisions of the outcome log; write them into its manifest."""
    from openhoof_router.learning.evaluation.calibrate_run import calibrate_run
    from openhoof_router.learning.evaluation.safe_side import SafeSide
    from openhoof_router.serving.selection import serve

    if run_dir is None:  # the promoted run, if a router would serve it
        settings = _settings(base_model=base_model).model_copy(update={"model": None})  # no OPENHOOF_MODEL pin
        selection = serve(settings, paths=paths, load=False, warn=False)
        if selection.source != "promoted" or selection.run is None:
            raise BadInput("no promoted run to calibrate (give --run): a router serves "
                                       + "; ".join([selection.describe(), *selection.refused]))
        run_dir = selection.run.path
    result = calibrate_run(paths, run_dir, data_file, target=target, threads=threads, progress=not no_progress,
                           write=not dry_run, plot=plot, base_model=base_model, safe_side_only=safe_side_only)
    if as_json:
        click.echo(json.dumps(result))
        return
    if not safe_side_only:  # (what the manifest would not take is not shown)
        _print_thresholds(result)
    out.print(SafeSide(**result["safe_side"]).headline(), markup=False)
    out.print(("written to the run's manifest" + (" (safe side only)" if safe_side_only else ""))
              if result["written"] else "dry run: manifest unchanged", markup=False)


def _print_thresholds(result: dict) -> None:
    table = Table("threshold scale", "fallback rate", "accuracy of decisions kept", "overall accuracy",
                  title=f"run {result['run_id']}: thresholds fitted on {result['n']} decisions")
    for row in result["tradeoff"]:
        table.add_row(f"{row['scale']:.1f}x", f"{row['fallback_rate']:.1%}", f"{row['kept_accuracy']:.1%}",
                      f"{row['overall_accuracy']:.1%}")
    out.print(table)
    fitted = ", ".join(f"{k} {v:.2f}" for k, v in result["tool_thresholds"].items()) or "none"
    out.print(f"{result['decoding_fit']}; default threshold "
              + (f"{result['threshold']:.2f}" if result["default_fitted"] else "not fitted (the router's own)")
              + f"; per tool: {fitted}", markup=False)
    if result["not_fitted"]:
        out.print(f"not fitted, fewer than {result['min_support']} decisions (the default applies): "
                  + ", ".join(f"{k} ({n})" for k, n in result["not_fitted"].items()), markup=False)
    if result["out_of_reach"]:
        out.print(f"warning: no threshold reaches the target {result['target']:.0%} for "
                  + ", ".join(result["out_of_reach"]) + ": set to the top, so their turns fall back "
                  f"({result['fallback_rate']:.0%} of these decisions); lower --target or add data", markup=False)


@click.command()
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
    from openhoof_router.store.runs import ModelRegistry, RunLayout, ServedRun

    run = ServedRun.open(run_dir) if run_dir else ModelRegistry(paths).latest_run()
    adapter = run.adapter
    if adapter is None:
        raise BadInput(f"run {run.run_id} has no adapter to export")
    base = resolve_base_model(base_model, paths)
    if base.gguf is None:
        raise BadInput(f"base model {base.name} has no GGUF to merge the adapter into")
    target = out or RunLayout(root=run.path).exported(dtype)
    merge_lora_gguf(base.gguf, adapter, target, dtype=dtype, name=f"openhoof-router {run.run_id}")
    click.echo(str(target))


@click.command()
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


@click.command()
@click.option("--corpus", type=click.Path(exists=True, file_okay=False, path_type=Path), required=True,
              help="The Seal-Tools corpus folder (tools.jsonl, queries.jsonl), e.g. ../shared/corpora/seal_tools.")
@click.option("--seal-groups", type=int, default=SEAL_GROUPS, show_default=True,
              help="Tool lists built from the corpus.")
@click.option("--openhoof-passes", type=int, default=OPENHOOF_PASSES, show_default=True,
              help="Passes over the OpenHoof data.")
@click.option("--data-seed", type=int, default=1, show_default=True)
@click.option("--extra-corpus", "extra_corpora", type=(click.Path(exists=True, file_okay=False, path_type=Path), int),
              multiple=True, metavar="DIR GROUPS",
              help="Another corpus in the same layout and the tool lists to build from it, e.g. "
                   "training/corpora/metatool 300 (repeatable).")
@click.option("--adjacent-share", type=click.FloatRange(0, 1), default=0.0, show_default=True,
              help="Share of Seal-Tools lists that offer a tool of the request's field doing a nearby but "
                   "different job (alone: no tool needed; beside the needed tool: only that one).")
@click.option("--sibling-share", type=click.FloatRange(0, 1), default=0.0, show_default=True,
              help="Share of Seal-Tools lists that offer a needed tool beside a sibling that reads almost the "
                   "same (gcd / lcm); the request says which one it needs.")
@click.option("--ship", is_flag=True, help="Copy the result into the package's data folder (maintainers).")
@click.option("--checkpoint-every", type=int, default=250, show_default=True,
              help="CPU and CUDA training: save a checkpoint every N steps (what --resume continues from).")
@click.option("--resume", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="Continue an interrupted pretraining from its run folder's latest checkpoint (same result "
                   "as an uninterrupted run; give the same options).")
@run_options
@click.pass_context
@handle_errors
def pretrain(ctx: click.Context, corpus: Path, seal_groups: int, openhoof_passes: int, data_seed: int,
             extra_corpora: tuple[tuple[Path, int], ...], adjacent_share: float, sibling_share: float, ship: bool,
             checkpoint_every: int,
             resume: Path | None,
             **options: Any) -> None:
    """Rebuild the general adapter from the public corpus (GPU when visible, else CPU).

    With the defaults it rebuilds the adapter shipped in the package. The training options'
    defaults here are the general adapter's (--epochs 1, --start-from none, --replay 0,
    --val-fraction 0), not the ones shown, which are hoof-train run's.
    """
    from openhoof_router.learning.pretrain import GENERAL_DEFAULTS
    from openhoof_router.learning.pretrain import pretrain as run_pretrain

    options = merged_options(ctx, options)
    cfg = GENERAL_DEFAULTS.model_copy(update={k: v for k, v in options.items() if k in TRAIN_FIELDS and v is not None})
    manifest = run_pretrain(corpus, paths=ctx.obj, cfg=cfg, base_model=options.get("base_model"),
                            seal_groups_n=seal_groups, openhoof_passes=openhoof_passes, data_seed=data_seed,
                            extra_corpora=extra_corpora, adjacent_share=adjacent_share,
                            sibling_share=sibling_share, ship=ship,
                            progress=not options.get("no_progress"),
                            console=log, checkpoint_every=checkpoint_every, resume=resume)
    click.echo(json.dumps({"run": manifest.run_id, "metrics": {k: v.get("accuracy", v) if isinstance(v, dict) else v
                                                               for k, v in manifest.metrics.items()},
                          "minutes": round(manifest.durations["total_s"] / 60, 1)}, default=str))


COMMANDS = [eval, calibrate, export, generate, pretrain]
