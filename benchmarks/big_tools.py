"""Big tool lists: a window sized to the list against the fixed 2048-token window of before,
and a restarted router's first decision with the tool block's state on disk against without.

    python benchmarks/big_tools.py [--threads 2] [--tools 160] [--requests 10] [--model RUN|general|base] [--json]

Tools and requests come from Seal-Tools (``../shared/corpora/seal_tools``): the tools the
first requests need, topped up to ``--tools`` with real descriptions. Each case runs in a
process of its own (memory is per case), one after the other in the same run:

- ``fixed``: ``n_ctx=2048``, as before: the detail the list kept, the first call (reads the
  tool block), p50 over the requests, RSS;
- ``sized``: the default window, grown to fit the list: the same figures, and the window;
- ``restart``: a new process that finds the block's state on disk (written by ``sized``):
  load time and the first decision;
- ``restart_without_disk``: the same without the saved state (as before: the block is read
  again after every restart).

Also: whether 500 tools fit (``fixed``: refused; ``sized``: the window they take).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from _common import rss_mb, run_worker  # benchmarks/ is on sys.path when a script runs

SEAL = Path(__file__).resolve().parents[2] / "shared" / "corpora" / "seal_tools"
CASES = ("fixed", "sized", "restart", "restart_without_disk")


def tools_and_requests(n_tools: int, n_requests: int) -> tuple[list[dict], list[str]]:
    tools = {}
    for line in (SEAL / "tools.jsonl").read_text().splitlines():
        schema = json.loads(line)
        tools[schema["function"]["name"]] = schema
    chosen: dict[str, dict] = {}
    requests = []
    for line in (SEAL / "queries.jsonl").read_text().splitlines():
        query = json.loads(line)
        need = [t for t in query["expected_tools"] if t in tools]
        if len(requests) < n_requests and len(chosen) + len(need) <= n_tools:
            chosen.update({t: tools[t] for t in need})
            requests.append(query["query"])
    for name, schema in tools.items():  # top up with other tools, descriptions and all
        if len(chosen) >= n_tools:
            break
        chosen.setdefault(name, schema)
    return list(chosen.values()), requests


def worker(args: argparse.Namespace) -> dict:
    from openhoof_router.core.engine import RouterEngine
    from openhoof_router.core.tools import ToolError
    from openhoof_router.models.loading import load_backend
    from openhoof_router.models.state_store import StateStore
    from openhoof_router.serving.selection import serve
    from openhoof_router.serving.settings import RouterSettings

    settings = RouterSettings.of(None, backend="llama.cpp", n_threads=args.threads,
                                 **({"model": args.model} if args.model else {}))
    target = serve(settings, load=False, warn=False).target
    tools, requests = tools_and_requests(args.tools, args.requests)
    started = time.perf_counter()
    backend = load_backend("llama.cpp", model=target, n_threads=args.threads, shared=False,
                           n_ctx=2048 if args.worker == "fixed" else None)
    load_s = time.perf_counter() - started
    store = getattr(backend, "store", None)
    backend.store = None if args.worker == "restart_without_disk" or store is None else StateStore(
        args.state_dir, store.identity)  # this run's own folder: the first case finds nothing there
    engine = RouterEngine(backend)
    out: dict = {"case": args.worker, "load_s": round(load_s, 2)}
    started = time.perf_counter()
    first = engine.route(requests[0], tools)
    out["first_decision_s"] = round(time.perf_counter() - started, 2)
    prepared = engine.prepare(tools)
    out.update(window=backend.n_ctx, block_tokens=len(prepared.prefix), detail_level=prepared.level,
               notes=prepared.notes, first_valid=first.valid)
    if args.worker in ("fixed", "sized"):
        warm = [engine.route(r, tools).latency_ms for r in requests[1:]]
        out["p50_ms"] = round(statistics.median(warm), 1)
        out["rss_mb"] = round(rss_mb(), 1)
        many, _ = tools_and_requests(500, 0)
        try:
            p = engine.prepare(many)
            out["tools_500"] = f"fit: window {backend.n_ctx}, {len(p.prefix)} tokens, detail level {p.level}"
            out["rss_mb_after_500"] = round(rss_mb(), 1)
        except ToolError as exc:
            out["tools_500"] = f"refused: {exc}"
    engine.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--tools", type=int, default=160)
    ap.add_argument("--requests", type=int, default=10)
    ap.add_argument("--model", default=None, help="run folder, 'general', or 'base'; default: what a router serves")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--worker", choices=CASES, help=argparse.SUPPRESS)
    ap.add_argument("--state-dir", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(args)))
        return
    results = {}
    with tempfile.TemporaryDirectory(prefix="openhoof-states-") as states:
        for case in CASES:
            results[case] = run_worker(__file__, case, ["--threads", str(args.threads), "--tools", str(args.tools),
                                                        "--requests", str(args.requests), "--state-dir", states],
                                       args.model)
    summary = {"device": f"CPU, {args.threads} threads", "tools": args.tools, "cases": results}
    if args.json:
        print(json.dumps(summary))
        return
    for case, values in results.items():
        print(f"{case}:")
        for key, value in values.items():
            if key != "case":
                print(f"  {key:>18}: {value}")


if __name__ == "__main__":
    main()
