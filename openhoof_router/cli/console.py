"""The command lines' two consoles: results to stdout (:data:`out`), progress and logs to
stderr (:data:`log`)."""

from __future__ import annotations

from rich.console import Console

log = Console(stderr=True)
out = Console()
if not out.is_terminal:  # piped or captured: no terminal to fit, so tables are never cut to 80 columns
    out = Console(width=200)
