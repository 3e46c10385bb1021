"""What every command line of the package shares: exit codes, one-line errors, ``--debug``,
``--version``, and the rule that results go to stdout, progress and logs to stderr.

Exit codes (documented in the README):

====  =====================================================================
0     done (``hoof-train --auto``: also "not enough new data yet")
1     the work failed (training diverged, a file could not be written, ...)
2     usage error (unknown option, bad value)
3     trained, but not promoted (the gate found it worse than the model in place)
4     an optional package is missing (the message names the ``pip install``)
5     bad input: a tool list, data file, base model, run or adapter that cannot be used
130   interrupted
====  =====================================================================
"""

from __future__ import annotations

import functools
import sys
from typing import Any, Callable, TypeVar

import click

OK, FAILED, USAGE, NOT_PROMOTED, MISSING_PACKAGE, BAD_INPUT, INTERRUPTED = 0, 1, 2, 3, 4, 5, 130

# import name -> the extra that brings it
EXTRAS = {
    "torch": "train", "transformers": "train", "peft": "train", "trl": "train", "datasets": "train",
    "accelerate": "train", "matplotlib": "train", "safetensors": "train", "sentencepiece": "train",
    "llama_cpp": "llama", "mlx": "mlx-linux' (Linux) or 'openhoof-router[mac]", "mlx_lm": "mlx-linux",
    "langchain": "langchain", "langchain_openai": "langchain", "langgraph": "langchain", "unsloth": "cuda",
    "sentence_transformers": "bench",
}

F = TypeVar("F", bound=Callable[..., Any])


def err(message: str) -> None:
    click.secho(message, err=True, fg="red")


def install_hint(exc: ImportError) -> str:
    top = (exc.name or str(exc)).split(".")[0]
    extra = EXTRAS.get(top)
    if extra is None:
        return f"missing package: {exc}"
    return f"missing package {top!r}: pip install 'openhoof-router[{extra}]'"


def _bad_input_types() -> tuple[type[BaseException], ...]:
    from openhoof_router.models.backend import BackendError
    from openhoof_router.models.base_model import BaseModelError
    from openhoof_router.models.merge import ExportError
    from openhoof_router.models.lora import AdapterError
    from openhoof_router.store.runs import RunError
    from openhoof_router.core.tools import ToolError

    return (ToolError, BackendError, BaseModelError, RunError, AdapterError, ExportError, FileNotFoundError)


def handle_errors(fn: F) -> F:
    """Run a click command body; turn known errors into one line and an exit code.

    ``--debug`` (on the group or the command) re-raises instead, with the traceback.
    """
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        debug = debugging()
        try:
            return fn(*args, **kwargs)
        except (click.exceptions.Exit, click.ClickException, click.exceptions.Abort, SystemExit):
            raise
        except KeyboardInterrupt:
            if debug:
                raise
            err("interrupted")
            sys.exit(INTERRUPTED)
        except ImportError as exc:
            if debug:
                raise
            err(install_hint(exc))
            sys.exit(MISSING_PACKAGE)
        except _bad_input_types() as exc:
            if debug:
                raise
            err(f"error: {exc}")
            sys.exit(BAD_INPUT)
        except Exception as exc:
            if debug:
                raise
            err(f"failed: {type(exc).__name__}: {exc} (run with --debug for the traceback)")
            sys.exit(FAILED)

    return wrapper  # type: ignore[return-value]


def debugging() -> bool:
    ctx = click.get_current_context(silent=True)
    while ctx is not None:
        if ctx.params.get("debug"):
            return True
        ctx = ctx.parent
    return False


def common_options(fn: F) -> F:
    """``--debug`` and ``--version`` for a top-level command."""
    fn = click.option("--debug", is_flag=True, help="Show the full traceback on errors.")(fn)
    return click.version_option(package_name="openhoof-router", prog_name="openhoof-router")(fn)  # type: ignore[return-value]
