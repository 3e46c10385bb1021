"""``hoof-route``: route one message (or a file of them) and print the decision as JSON."""

from __future__ import annotations

import json
import sys

import click

from .backends import BACKENDS, BackendError
from .base_model import BaseModelError
from .tools import ToolError, builtin_tools, load_tools_file


def _trained_default(paths):
    from .registry import ModelRegistry

    return ModelRegistry(paths).latest_dir()


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("messages", nargs=-1)
@click.option("--tools", "tools_file", type=click.Path(dir_okay=False), default=None,
              help="JSON file of OpenAI function schemas (default: the 10 built-in OpenHoof tools).")
@click.option("--base-model", default=None, envvar="OPENHOOF_BASE_MODEL",
              help="Base model: 'embedded' (Gemma 3 270M), a .gguf file or a Hugging Face folder.")
@click.option("--model", "--adapter", "model", default=None,
              help="Trained run folder, merged .gguf or GGUF LoRA adapter. Default: the promoted "
                   "run, if any ('base' for none).")
@click.option("--backend", type=click.Choice(["auto", *BACKENDS]), default="auto", show_default=True)
@click.option("--threads", type=int, default=None, help="CPU threads (default: up to 4).")
@click.option("--max-tools", type=int, default=3, show_default=True)
@click.option("--no-cache", is_flag=True, help="Re-read the whole prompt every call (for comparison).")
def main(messages, tools_file, base_model, model, backend, threads, max_tools, no_cache) -> None:
    """Route MESSAGES (or lines on standard input) to tools with the local model.

    \b
    Example:
      hoof-route "Check disk space on the server" --tools ../shared/openhoof_tools.json
    """
    from .engine import RouterEngine
    from .paths import Paths

    try:
        tools = load_tools_file(tools_file) if tools_file else builtin_tools()
        if model is None:
            model = _trained_default(Paths.resolve())
        elif model == "base":
            model = None
        engine = RouterEngine.load(backend=backend, base_model=base_model, model=model,
                                   n_threads=threads, max_tools=max_tools)
    except (ToolError, BackendError, BaseModelError) as exc:
        raise click.ClickException(str(exc)) from exc
    lines = list(messages) or [line.strip() for line in sys.stdin if line.strip()]
    if not lines:
        raise click.UsageError("give a message to route, as an argument or on standard input")
    for message in lines:
        decision = engine.route(message, tools, use_cache=not no_cache)
        out = decision.model_dump(mode="json")
        out["message"] = message
        click.echo(json.dumps(out, ensure_ascii=False))


if __name__ == "__main__":  # pragma: no cover
    main()
