"""`hoof-train run` with defaults on the bundled data, in a fresh home: wall time, peak RSS,
held-out accuracy beside the base model without adapter, and routing latency of the result.

    python benchmarks/train_run.py [--home DIR] [-- extra hoof-train run flags]

The base GGUF cache (OPENHOOF_CACHE_DIR, default ~/.openhoof/cache) is reused, so the
one-time GGUF → float conversion is not counted; everything else is.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--home", type=Path, default=None)
    ap.add_argument("extra", nargs="*")
    args = ap.parse_args()
    home = args.home or Path(tempfile.mkdtemp(prefix="openhoof-bench-"))
    env = dict(os.environ, OPENHOOF_HOME=str(home))
    env.setdefault("OPENHOOF_CACHE_DIR", str(Path.home() / ".openhoof" / "cache"))
    exe = Path(sys.executable).with_name("hoof-train")
    started = time.perf_counter()
    proc = subprocess.run([str(exe), "run", "--no-progress", *args.extra], env=env)
    wall = time.perf_counter() - started
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    runs = sorted((home / "models" / "tool_router" / "runs").glob("*/manifest.json"))
    if not runs:
        sys.exit(f"no run was written (exit code {proc.returncode})")
    m = json.loads(runs[-1].read_text())
    held, base = m["metrics"]["held_out"], m["metrics"]["incumbent"]
    print(json.dumps({
        "exit_code": proc.returncode,
        "wall_s": round(wall, 1),
        "peak_rss_mb": round(peak_mb, 1),
        "train_s": round(m["durations"]["train_s"], 1),
        "export_s": round(m["durations"]["export_s"], 1),
        "eval_s": round(m["durations"]["eval_s"], 1),
        "steps": m["train"]["steps"],
        "examples": m["data"]["n_train"],
        "held_out_n": held["n"],
        "held_out_accuracy": round(held["accuracy"], 4),
        "base_accuracy": round(base["accuracy"], 4) if base["run"] == "base" else None,
        "no_tool_false_positive_rate": held["no_tool_false_positive_rate"],
        "latency_p50_ms": round(held["latency_p50_ms"], 1),
        "latency_p95_ms": round(held["latency_p95_ms"], 1),
        "run": str(runs[-1].parent),
    }, indent=2))


if __name__ == "__main__":
    main()
