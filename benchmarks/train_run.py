"""`hoof-train run` with defaults on the bundled data, one fresh home per seed: wall time, peak
RSS, and quality (held-out single turns per class, follow-ups, general sample) as the mean
and spread over the seeds.

    python benchmarks/train_run.py [--seeds 0 1 2] [--root DIR] [-- extra hoof-train run flags]

The base GGUF cache (OPENHOOF_CACHE_DIR, default ~/.openhoof/cache) is reused, so the
one-time GGUF → float conversion is not counted, nor the first-use merge of the general
adapter; everything else is (the first run also evaluates the general adapter it is
compared with; later runs reuse that result from the cache). Prints one JSON line per seed,
then the summary; the run folders can be fed to ``benchmarks/quality.py --runs``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from openhoof_router.store.paths import Paths


def one_run(seed: int, root: Path, extra: list[str]) -> dict:
    home = root / f"seed-{seed}"
    env = dict(os.environ, OPENHOOF_HOME=str(home))
    env.setdefault("OPENHOOF_CACHE_DIR", str(Path.home() / ".openhoof" / "cache"))
    exe = Path(sys.executable).with_name("hoof-train")
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    started = time.perf_counter()
    proc = subprocess.run([str(exe), "run", "--no-progress", "--seed", str(seed), *extra], env=env,
                          stdout=subprocess.PIPE, text=True)
    wall = time.perf_counter() - started
    peak_mb = max(before, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss) / 1024
    runs = sorted(Paths.resolve(home=home).runs_dir.glob("*/manifest.json"))  # as the child resolves them
    if not runs:
        sys.exit(f"seed {seed}: no run was written (exit code {proc.returncode})")
    m = json.loads(runs[-1].read_text())
    held = m["metrics"]["held_out"]
    return {
        "seed": seed,
        "exit_code": proc.returncode,
        "promoted": m["promoted"],
        "gate": m["gate"]["reason"],
        "wall_s": round(wall, 1),
        "peak_rss_mb": round(peak_mb, 1),
        **{k: round(v, 1) for k, v in m["durations"].items()},
        "steps": m["train"]["steps"],
        "examples_trained": m["train"]["examples"],
        "held_out_accuracy": held["accuracy"],
        "single_turn_accuracy": m["metrics"].get("single_turn_accuracy"),
        "followup_accuracy": m["metrics"].get("followup_accuracy"),
        "per_class": {k: v["accuracy"] for k, v in held["per_class"].items()},
        "no_tool_false_positive_rate": held["no_tool_false_positive_rate"],
        "general_accuracy": m["metrics"].get("general", {}).get("accuracy"),
        "incumbent_accuracy": m["metrics"]["incumbent"]["accuracy"],
        "prompt_format": m.get("prompt_format"),
        "decoding_fit": m["metrics"].get("decoding_fit"),
        "latency_p50_ms": round(held["latency_p50_ms"], 1),
        "run": str(runs[-1].parent),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--root", type=Path, default=None)
    ap.add_argument("extra", nargs="*")
    args = ap.parse_args()
    root = args.root or Path(tempfile.mkdtemp(prefix="openhoof-bench-"))
    rows = []
    for seed in args.seeds:
        rows.append(one_run(seed, root, args.extra))
        print(json.dumps(rows[-1]), flush=True)
    summary = {}
    for key in ("wall_s", "peak_rss_mb", "train_s", "held_out_accuracy", "single_turn_accuracy", "followup_accuracy",
                "general_accuracy", "no_tool_false_positive_rate", "latency_p50_ms"):
        values = [r[key] for r in rows if r.get(key) is not None]
        if values:
            summary[key] = {"mean": round(statistics.mean(values), 4), "min": min(values), "max": max(values)}
    for klass in ("none", "one", "two+"):
        values = [r["per_class"][klass] for r in rows if klass in r["per_class"]]
        if values:
            summary[f"held_out_{klass}"] = {"mean": round(statistics.mean(values), 4), "min": min(values),
                                            "max": max(values)}
    print(json.dumps({"seeds": args.seeds, "summary": summary, "runs": [r["run"] for r in rows]}, indent=2))


if __name__ == "__main__":
    main()
