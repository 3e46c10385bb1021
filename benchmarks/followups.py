"""Follow-up latency: conversations that grow turn by turn, interleaved, with the held-state
mechanism off (the tool block alone is reused, as before), on (the longest held prefix), and
prefetch (on, plus the conversation so far read when each turn is over, as the agent
middleware does once a reply is out: ``RouterService.prefetch``).

    python benchmarks/followups.py [--threads 2] [--conversations 32] [--turns 4] [--model RUN|general|base] [--json]

Each conversation's turns come from the bundled follow-up data (a user message, the tool it
called with its result, the assistant's reply). Turn k routes its message with that
conversation's k earlier turns as context; conversations are interleaved (turn 0 of every
conversation, then turn 1, ...), so the state a call can reuse is never the one evaluated
just before it. Each mode runs in a process of its own (memory is per mode), one after the
other in the same run. Prints, per mode: p50/p95 by number of earlier turns, the ratio of
the 3-earlier-turns p50 to the no-context p50 (target <= 1.3), how much of each follow-up's
user turn was reused from a held state, and RSS with every conversation held (target <= 600
MB); the prefetch's own cost (off the routing path: it runs while the agent's tools and
reasoner work); and the decisions that differ between the modes.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from _common import rss_mb, run_worker  # benchmarks/ is on sys.path when a script runs

from openhoof_router.core.records import PastTurn
from openhoof_router.core.tools import builtin_tools
from openhoof_router.models.backend import common_prefix

MODES = ("off", "on", "prefetch")
DATA = Path(__file__).resolve().parents[1] / "openhoof_router" / "data"


def conversations(n: int, turns: int) -> list[list[PastTurn]]:
    """``n`` conversations of ``turns`` completed turns each, from the follow-up data's earlier turns."""
    seen: dict[str, PastTurn] = {}
    for name in ("followups_eval.jsonl", "followups_train.jsonl"):
        for line in (DATA / name).read_text().splitlines():
            for ctx in json.loads(line)["input"].get("context", []):
                turn = PastTurn.model_validate(ctx)
                seen.setdefault(turn.user, turn)
    pool = list(seen.values())
    if len(pool) < n * turns:
        raise SystemExit(f"only {len(pool)} distinct turns in the follow-up data; ask for fewer")
    return [pool[i * turns:(i + 1) * turns] for i in range(n)]


def pct(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if len(values) > 1 else values[0]


def worker(args: argparse.Namespace) -> dict:
    from openhoof_router.serving.selection import serve
    from openhoof_router.serving.settings import RouterSettings

    settings = RouterSettings.of(None, backend="llama.cpp", n_threads=args.threads,
                                 **({"model": args.model} if args.model else {}))
    engine = serve(settings, probe=False).engine
    assert engine is not None
    backend = engine.backend
    backend.reuse_turns = args.worker != "off"
    tools = builtin_tools()
    engine.route("warm up", tools)  # the tool block is read once, in both modes
    rss_start = rss_mb()
    block = len(engine.prepare(tools).prefix)
    convs = conversations(args.conversations, args.turns)
    latency: dict[int, list[float]] = {k: [] for k in range(args.turns)}
    reused_share: list[float] = []
    decisions: list[list[str]] = []
    last: dict[int, tuple[int, ...]] = {}
    shared_share: list[float] = []
    prefetch_ms: list[float] = []
    prefetch_tokens: list[int] = []
    started = time.perf_counter()
    for k in range(args.turns):
        for c, turns in enumerate(convs):
            context = turns[:k]
            d = engine.route(turns[k].user, tools, context=context)
            latency[k].append(d.latency_ms)
            decisions.append(d.tool_names)
            user = engine.codec.fit_user_turn(turns[k].user, context, 10_000).ids
            full = engine.prepare(tools).prefix + tuple(user)
            if k:
                reused_share.append(max(0, backend.reused - block) / len(user))
                shared_share.append(max(0, common_prefix(last[c], full) - block) / len(user))
            last[c] = full
            if args.worker == "prefetch" and k + 1 < args.turns:  # turn k is over: its reply is out
                t0, before = time.perf_counter(), backend.evaluated
                engine.prefetch(tools, turns[: k + 1])
                prefetch_ms.append((time.perf_counter() - t0) * 1000)
                prefetch_tokens.append(backend.evaluated - before)
    wall = time.perf_counter() - started
    out = {
        "mode": args.worker,
        "calls": sum(len(v) for v in latency.values()),
        "wall_s": round(wall, 1),
        **{f"p50_ms_{k}_earlier": round(pct(v, 50), 1) for k, v in latency.items()},
        **{f"p95_ms_{k}_earlier": round(pct(v, 95), 1) for k, v in latency.items()},
        "user_turn_reused": round(statistics.mean(reused_share), 3) if reused_share else 0.0,
        "user_turn_shared_with_last_turn": round(statistics.mean(shared_share), 3) if shared_share else 0.0,
        "held_sequences": getattr(backend, "held", None),
        "prefetch_p50_ms": round(pct(prefetch_ms, 50), 1) if prefetch_ms else None,
        "prefetch_mean_tokens": round(statistics.mean(prefetch_tokens), 1) if prefetch_tokens else None,
        "rss_mb_after_warm_up": round(rss_start, 1),
        "rss_mb_all_held": round(rss_mb(), 1),
        "decisions": decisions,
    }
    last_k = args.turns - 1
    out[f"ratio_{last_k}_earlier_vs_none"] = round(out[f"p50_ms_{last_k}_earlier"] / out["p50_ms_0_earlier"], 2)
    engine.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--conversations", type=int, default=32)
    ap.add_argument("--turns", type=int, default=4, help="turns per conversation (the last has turns-1 earlier)")
    ap.add_argument("--model", default=None, help="run folder, 'general', or 'base'; default: what a router serves")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--worker", choices=MODES, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(args)))
        return
    results = {}
    for mode in MODES:
        results[mode] = run_worker(__file__, mode, ["--threads", str(args.threads), "--conversations",
                                                    str(args.conversations), "--turns", str(args.turns)], args.model)
    decisions = {mode: results[mode].pop("decisions") for mode in MODES}
    differ = {f"{mode}_vs_off": sum(a != b for a, b in zip(decisions["off"], decisions[mode], strict=True))
              for mode in MODES[1:]}
    summary = {"device": f"CPU, {args.threads} threads", "conversations": args.conversations, "turns": args.turns,
               **results, "decisions_differ": differ}
    if args.json:
        print(json.dumps(summary))
        return
    keys = [k for k in results["prefetch"] if k != "mode"]
    print(f"{'':>34} {'off (tool block only)':>22} {'on (longest prefix)':>22} {'prefetch':>22}")
    for key in keys:
        print(f"{key:>34}" + "".join(f" {results[m][key]!s:>22}" for m in MODES))
    print(f"{'decisions that differ from off':>34} {'':>22}" + "".join(f" {v:>22}" for v in differ.values()))


if __name__ == "__main__":
    main()
