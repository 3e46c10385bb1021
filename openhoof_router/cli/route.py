"""``hoof-route``: route messages (arguments or lines on stdin) and print each decision as JSON.

Decisions go to stdout, one JSON object a line; errors to stderr as one line with the exit
codes of :mod:`openhoof_router.cli.common`.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from openhoof_router.cli.common import Command, common_options, handle_errors
from openhoof_router.models.device import SERVING


@click.command(cls=Command, context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("messages", nargs=-1)
@click.option("--tools", "tools_file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="JSON file of OpenAI function schemas (default: the 10 built-in OpenHoof tools).")
@click.option("--context", "context_file", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help='Earlier turns as JSON: '
                   '[{"user": "...", "tools": [{"name": "...", "result": "..."}], "reply": "..."}].')
@click.option("--base-model", default=None, envvar="OPENHOOF_BASE_MODEL",
              help="Base model: 'embedded' (Gemma 3 270M), a .gguf file or a Hugging Face folder.")
@click.option("--model", "--adapter", "model", default=None,
              help="Run folder, merged .gguf or GGUF LoRA adapter; 'general' for the shipped adapter, 'base' "
                   "for none. Default: the promoted run, else the general adapter.")
@click.option("--backend", type=click.Choice(["auto", *SERVING]), default="auto", show_default=True)
@click.option("--threads", type=int, default=None, help="CPU threads (default: up to 4).")
@click.option("--max-tools", type=int, default=3, show_default=True)
@click.option("--home", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="OpenHoof home (default: $OPENHOOF_HOME or ~/.openhoof).")
@click.option("--log/--no-log", "log_decisions", default=True, show_default=True,
              help="Append the decisions to training_data.jsonl, as every router does (what hoof-train learns "
                   "from once outcomes vouch for them).")
@click.option("--json", "as_json", is_flag=True, help="JSON output: accepted for the CLI convention; hoof-route "
                                                      "always prints one JSON object per message.")
@click.option("--no-cache", is_flag=True, help="Re-read the whole prompt every call (for comparison).")
@common_options
@handle_errors
def main(messages: tuple[str, ...], tools_file: Path | None, context_file: Path | None, base_model: str | None,
         model: str | None, backend: str, threads: int | None, max_tools: int, home: Path | None,
         log_decisions: bool, as_json: bool, no_cache: bool, debug: bool) -> None:
    """Route MESSAGES (or lines on standard input) to tools with the local model.

    \b
    Example:
      hoof-route "Check disk space on the server"
      hoof-route "Check disk space on the server" --tools my_tools.json --no-log

    Exit codes: 0 done, 2 usage, 4 missing package, 5 bad input (tools, model, base).
    """
    from openhoof_router.core.records import PastTurn
    from openhoof_router.core.tools import ToolError, builtin_tools, load_tools_file
    from openhoof_router.serving.service import RouterService

    tools = load_tools_file(tools_file) if tools_file else builtin_tools()
    context = []
    if context_file is not None:
        try:
            context = [PastTurn.model_validate(t) for t in json.loads(context_file.read_text())]
        except (ValueError, TypeError) as exc:
            first = str(exc).splitlines()[0]
            raise ToolError(f"--context {context_file}: not a JSON list of turns ({first})") from None
    lines = list(messages) or [line.rstrip("\n") for line in sys.stdin if line.strip()]
    if not lines:
        raise click.UsageError("give a message to route, as an argument or on standard input")
    service = RouterService(model=model, base_model=base_model, backend=backend, n_threads=threads,
                            max_tools=max_tools, home=home, log_decisions=log_decisions, hot_reload=False)
    try:
        for message in lines:
            if no_cache:
                decision = service.engine.route(message, tools, context=context, use_cache=False)
            else:
                decision = service.route(message, tools, context=context, mode="cli")
            out = decision.model_dump(mode="json")
            out["message"] = message
            out["serving"] = service.serving
            click.echo(json.dumps(out, ensure_ascii=False))
    finally:
        service.close()


if __name__ == "__main__":  # pragma: no cover
    main()
