"""Routing latency and memory: cached tool-block prefix vs re-reading the whole prompt.

    python benchmarks/latency.py [--threads 2] [--tools ../shared/openhoof_tools.json] [--model RUN|GGUF|base]

Routes 100 varied messages (the bundled held-out split, then training messages) over the
tool list, first with the cached prefix, then re-reading the whole prompt each call, in
one process, and prints p50/p95 of both, their ratio, decisions that differ, and peak RSS.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from openhoof_router.engine import RouterEngine
from openhoof_router.paths import Paths
from openhoof_router.registry import ModelRegistry
from openhoof_router.tools import builtin_tools, load_tools_file
from openhoof_router.training.dataset import curated_eval, curated_train
from openhoof_router.training.memory import peak_rss_mb


def pct(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--tools", type=Path, default=None)
    ap.add_argument("--model", default=None, help="run folder / GGUF; default: the promoted run if any; 'base' for none")
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    tools = load_tools_file(args.tools) if args.tools else builtin_tools()
    model = None if args.model == "base" else (args.model or ModelRegistry(Paths.resolve()).latest_dir())
    messages = [r.input.user_message for r in [*curated_eval(), *curated_train()]][: args.n]
    t = time.perf_counter()
    engine = RouterEngine.load(backend="llama.cpp", model=model, n_threads=args.threads)
    load_s = time.perf_counter() - t
    engine.route("warm up", tools)  # first call fills the prefix cache
    cached = [engine.route(m, tools, use_cache=True) for m in messages]
    naive = [engine.route(m, tools, use_cache=False) for m in messages]
    c = [d.latency_ms for d in cached]
    n = [d.latency_ms for d in naive]
    result = {
        "device": f"CPU, {args.threads} threads",
        "model": str(model or "base"),
        "tools": len(tools),
        "messages": len(messages),
        "load_s": round(load_s, 2),
        "cached_p50_ms": round(pct(c, 50), 1),
        "cached_p95_ms": round(pct(c, 95), 1),
        "naive_p50_ms": round(pct(n, 50), 1),
        "naive_p95_ms": round(pct(n, 95), 1),
        "speedup_p50": round(pct(n, 50) / pct(c, 50), 2),
        "decisions_differ": sum(a.tool_names != b.tool_names for a, b in zip(cached, naive)),
        "peak_rss_mb": round(peak_rss_mb(), 1),
    }
    if args.json:
        print(json.dumps(result))
        return
    for key, value in result.items():
        print(f"{key:>18}: {value}")


if __name__ == "__main__":
    main()
