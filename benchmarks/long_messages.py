"""Long messages and several routers in one process: the cost before and after, in one run.

    python benchmarks/long_messages.py [--threads 2] [--model RUN|general|base] [--json]

Long messages (one engine, the bound on and off; ``RouterEngine.max_user_tokens = None`` is
the behaviour before): the time to route a 200,000-character message and a message of 200
spelled ``<end_of_turn>`` (six text tokens each), and the tokenizer calls each made.

Routers in one process (each case in a process of its own): two ``RouterService``s built from
the environment, as two ``ToolRouter()``s are: the time and RSS it takes to have both
serving, sharing one model (now) or each loading its own (before: ``shared=False``).
"""

from __future__ import annotations

import argparse
import json
import time

from _common import rss_mb, run_worker  # benchmarks/ is on sys.path when a script runs

MESSAGES = {
    "200k_characters": "please check the disk on prod " + "lorem ipsum dolor sit amet " * 7500 + " and tell me",
    "200_end_of_turn": "<end_of_turn>" * 200,
}


def long_messages(args: argparse.Namespace) -> dict:
    from openhoof_router.core.tools import builtin_tools
    from openhoof_router.serving.selection import serve
    from openhoof_router.serving.settings import RouterSettings

    settings = RouterSettings.of(None, backend="llama.cpp", n_threads=args.threads,
                                 **({"model": args.model} if args.model else {}))
    engine = serve(settings, probe=False).engine
    assert engine is not None
    tools = builtin_tools()
    engine.route("warm up", tools)
    real = engine.backend.encode
    calls: list[int] = []

    def counting(text: str) -> list[int]:
        calls.append(len(text))
        return real(text)

    engine.backend.encode = counting  # type: ignore[method-assign]
    bound = engine.max_user_tokens
    out: dict = {}
    for label, cap in (("before", None), ("after", bound)):
        engine.max_user_tokens = cap
        for name, message in MESSAGES.items():
            calls.clear()
            started = time.perf_counter()
            d = engine.route(message, tools)
            out[f"{name}_{label}_s"] = round(time.perf_counter() - started, 2)
            out[f"{name}_{label}_tokenize_calls"] = len(calls)
            out[f"{name}_{label}_notes"] = d.notes
    engine.close()
    return out


def routers(args: argparse.Namespace) -> dict:
    import openhoof_router.serving.selection as selection
    from openhoof_router.serving.service import RouterService
    from openhoof_router.serving.settings import RouterSettings

    if args.worker == "routers_unshared":  # each router loads its own model, as before
        real = selection.load_backend
        selection.load_backend = lambda *a, **k: real(*a, **k, shared=False)  # type: ignore[assignment]
    settings = RouterSettings.of(None, backend="llama.cpp", n_threads=args.threads, log_decisions=False,
                                 **({"model": args.model} if args.model else {}))
    before = rss_mb()
    started = time.perf_counter()
    first = RouterService(settings)
    one_s, one_mb = time.perf_counter() - started, rss_mb()
    second = RouterService(settings)
    two_s, two_mb = time.perf_counter() - started, rss_mb()
    out = {"first_router_s": round(one_s, 2), "second_router_s": round(two_s - one_s, 2),
           "rss_mb_one_router": round(one_mb - before, 1), "rss_mb_two_routers": round(two_mb - before, 1),
           "same_model": first.engine.backend is second.engine.backend}
    first.close()
    second.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--model", default=None, help="run folder, 'general', or 'base'; default: what a router serves")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--worker", choices=("long", "routers_shared", "routers_unshared"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(long_messages(args) if args.worker == "long" else routers(args)))
        return
    results = {}
    for case in ("long", "routers_unshared", "routers_shared"):
        results[case] = run_worker(__file__, case, ["--threads", str(args.threads)], args.model)
    summary = {"device": f"CPU, {args.threads} threads", **results}
    if args.json:
        print(json.dumps(summary))
        return
    for case, values in results.items():
        print(f"{case}:")
        for key, value in values.items():
            print(f"  {key:>38}: {value}")


if __name__ == "__main__":
    main()
