"""Routing latency and memory: cached tool block vs re-reading the whole prompt, and the cost
of conversation context (0 vs 3 earlier turns).

    python benchmarks/latency.py [--threads 2] [--tools ../shared/openhoof_tools.json] [--model RUN|general|base]

Routes 100 varied messages (the bundled held-out split, then training messages) over the
tool list in one process: with the cached tool block, then re-reading the whole prompt
each call, then with three earlier turns of context (cached block); prints p50/p95 of
each, the speed-up of the cache, decisions that differ between the cached and uncached
paths, and peak RSS. Default model: what a router would serve (promoted run, else the
shipped general adapter; :func:`openhoof_router.serving.selection.serve`), loaded unprobed.

The three earlier turns are the same for every call here, so the backend's saved states
cover them after the first call: this measures a repeated context. Conversations that grow
turn by turn, interleaved, are measured by ``benchmarks/followups.py``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from openhoof_router.core.records import PastToolCall, PastTurn
from openhoof_router.core.tools import builtin_tools, load_tools_file
from openhoof_router.learning.data.assemble import curated_eval, curated_train
from openhoof_router.learning.trainers.memory import peak_rss_mb
from openhoof_router.serving.selection import serve
from openhoof_router.serving.settings import RouterSettings

CONTEXT = [
    PastTurn(user="check disk space on the prod box", tools=[PastToolCall(name="exec", result="/dev/sda1 42% used")],
             reply="Prod's root disk is 42% full."),
    PastTurn(user="save that in my notes", tools=[PastToolCall(name="memory_write", result="appended 1 line")],
             reply="Saved."),
    PastTurn(user="thanks! anything in the shared findings about disk alerts?",
             tools=[PastToolCall(name="shared_search", result="2 entries: disk alert on db-2 (resolved)")],
             reply="Two entries; the db-2 alert was resolved."),
]


def pct(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--tools", type=Path, default=None)
    ap.add_argument("--model", default=None, help="run folder, 'general', or 'base'; default: what a router serves")
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    tools = load_tools_file(args.tools) if args.tools else builtin_tools()
    messages = [r.input.user_message for r in [*curated_eval(), *curated_train()]][: args.n]
    settings = RouterSettings.of(None, backend="llama.cpp", n_threads=args.threads,
                                 **({"model": args.model} if args.model else {}))
    t = time.perf_counter()
    selection = serve(settings, probe=False)
    engine = selection.engine
    assert engine is not None
    load_s = time.perf_counter() - t
    engine.route("warm up", tools)  # first call fills the prefix cache
    cached = [engine.route(m, tools, use_cache=True) for m in messages]
    naive = [engine.route(m, tools, use_cache=False) for m in messages]
    context = [engine.route(m, tools, context=CONTEXT) for m in messages]
    c, n, x = ([d.latency_ms for d in ds] for ds in (cached, naive, context))
    result = {
        "device": f"CPU, {args.threads} threads",
        "model": selection.run_id or selection.source,
        "tools": len(tools),
        "messages": len(messages),
        "load_s": round(load_s, 2),
        "cached_p50_ms": round(pct(c, 50), 1),
        "cached_p95_ms": round(pct(c, 95), 1),
        "naive_p50_ms": round(pct(n, 50), 1),
        "naive_p95_ms": round(pct(n, 95), 1),
        "speedup_p50": round(pct(n, 50) / pct(c, 50), 2),
        "context3_p50_ms": round(pct(x, 50), 1),
        "context3_p95_ms": round(pct(x, 95), 1),
        "decisions_differ": sum(a.tool_names != b.tool_names for a, b in zip(cached, naive, strict=True)),
        "peak_rss_mb": round(peak_rss_mb(), 1),
    }
    engine.close()
    if args.json:
        print(json.dumps(result))
        return
    for key, value in result.items():
        print(f"{key:>18}: {value}")


if __name__ == "__main__":
    main()
