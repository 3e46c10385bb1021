"""``hoof-train``'s training options, defined once (:data:`RUN_OPTIONS`, defaults and help
from ``TrainConfig``) and accepted both before and after the subcommand: ``hoof-train
--epochs 5 run`` and ``hoof-train run --epochs 5`` do the same; two different values are an
error (:func:`merged_options`)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from openhoof_router.learning.config import TrainConfig

TRAIN_FIELDS = TrainConfig.model_fields


def _train_option(name: str, **kwargs: Any) -> Callable:
    info = TRAIN_FIELDS[name]
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
_RUN_KEYS = [*[n for n in TRAIN_FIELDS if n in {"epochs", "lr", "batch_size", "group_size", "lora_rank", "lora_alpha",
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
    values = {k: v for k, v in options.items() if k in TRAIN_FIELDS and v is not None}
    try:
        return TrainConfig(**values)
    except ValueError as exc:
        raise click.UsageError(str(exc).splitlines()[-1] if "\n" in str(exc) else str(exc)) from None
