"""What the benchmarks share: this process's RSS, and one case run in a fresh process."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any


def rss_mb() -> float:
    """This process's resident memory now (MB), from /proc (nan elsewhere)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def run_worker(script: str, case: str, args: list[str], model: str | None = None) -> dict[str, Any]:
    """``script --worker CASE ARGS`` in a process of its own (so memory and caches start cold),
    and the JSON object it prints last."""
    cmd = [sys.executable, script, "--worker", case, *args, *(["--model", model] if model else [])]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])
