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
from collections.abc import Callable
from typing import Any, NoReturn, TypeVar

import click

from openhoof_router.extras import install_hint
from openhoof_router.models import quiet

OK, FAILED, USAGE, NOT_PROMOTED, MISSING_PACKAGE, BAD_INPUT, INTERRUPTED = 0, 1, 2, 3, 4, 5, 130

F = TypeVar("F", bound=Callable[..., Any])


def err(message: str) -> None:
    """One error line on stderr, spelled ``error: ...`` whoever raised it (click writes ``Error:``)."""
    click.secho(f"error: {message}", err=True, fg="red")


class BadInput(click.ClickException):
    """Input the command cannot use (no usable records, a run without an adapter): exit code 5."""

    exit_code = BAD_INPUT


def _conventional_main(main: Callable[..., Any]) -> NoReturn:
    """Run click's ``main`` non-standalone and report its errors with this package's spelling."""
    try:
        result = main()
    except click.UsageError as exc:
        if exc.ctx is not None:
            click.echo(f"{exc.ctx.get_usage()}\nTry '{exc.ctx.command_path} --help' for help.\n", err=True)
        err(exc.format_message())
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        err(exc.format_message())
        sys.exit(exc.exit_code)
    except click.Abort:
        err("interrupted")
        sys.exit(INTERRUPTED)
    sys.exit(result if isinstance(result, int) else OK)


class Command(click.Command):
    """A top-level command whose usage errors read ``error: ...`` like every other error."""

    def main(self, args: Any = None, prog_name: str | None = None, complete_var: str | None = None,
             standalone_mode: bool = True, **extra: Any) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, False, **extra)
        _conventional_main(lambda: super(Command, self).main(args, prog_name, complete_var, False, **extra))


class Group(click.Group):
    """A command group whose usage errors read ``error: ...`` like every other error."""

    def main(self, args: Any = None, prog_name: str | None = None, complete_var: str | None = None,
             standalone_mode: bool = True, **extra: Any) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, False, **extra)
        _conventional_main(lambda: super(Group, self).main(args, prog_name, complete_var, False, **extra))


def _bad_input_types() -> tuple[type[BaseException], ...]:
    from openhoof_router.core.tools import ToolError
    from openhoof_router.learning.data import DataError
    from openhoof_router.models.backend import BackendError
    from openhoof_router.models.base_model import BaseModelError
    from openhoof_router.models.lora import AdapterError
    from openhoof_router.models.merge import ExportError
    from openhoof_router.store.runs import RunError

    return (ToolError, BackendError, BaseModelError, RunError, AdapterError, ExportError, DataError,
            FileNotFoundError)


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
            err(str(exc))
            sys.exit(BAD_INPUT)
        except Exception as exc:
            if debug:
                raise
            err(f"{type(exc).__name__}: {exc} (run with --debug for the traceback)")
            sys.exit(FAILED)

    return wrapper  # type: ignore[return-value]


def debugging() -> bool:
    """``--debug`` given (it sets ``OPENHOOF_DEBUG`` for the process), or ``OPENHOOF_DEBUG`` set."""
    return quiet.debugging()


def _debug_option(ctx: click.Context, param: click.Parameter, value: bool) -> bool:
    if value:  # eager, before any model loads: the libraries' own output shows as well
        quiet.set_debugging(True)
    return value


def common_options(fn: F) -> F:
    """``--debug`` and ``--version`` for a top-level command."""
    fn = click.option("--debug", is_flag=True, is_eager=True, callback=_debug_option,
                      help="Show tracebacks and what llama.cpp / transformers print (also: OPENHOOF_DEBUG=1).")(fn)
    return click.version_option(package_name="openhoof-router", prog_name="openhoof-router")(fn)
