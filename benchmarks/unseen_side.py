"""The unseen side of ``narrow`` mode after a user run: what its keep threshold is fitted on,
and what BFCL's reasoner then gets.

    .venv/bin/python benchmarks/unseen_side.py RUN [RUN ...] [--per-category 150] [--threads 2]

A user run fits ``unseen_keep_threshold`` (the keep threshold of turns offering tools it was
not trained on) with :func:`~openhoof_router.learning.evaluation.safe_side.fit_unseen_side`.
Each run routes, as it serves: the 208 corpus calibration records, the 190 records of the
general sample a run is gated on, and the BFCL sets of ``quality.py`` (same seed and sample).
Then, per run, the threshold fitted on several sets of those turns (``calib80``: the first 80
calibration records, what a run fitted on before the gate sample joined; ``calib80+gate``:
what it fits on now; ``calib208+gate``: every one), and BFCL's turn recall and share of tools
cut on lists of 5+ under each, with the run's other settings as served; and BFCL's figures
along the whole grid.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from quality import CATEGORIES, DEFAULT_BFCL, load_sets  # noqa: E402

from openhoof_router.core.records import RoutingDecision  # noqa: E402
from openhoof_router.learning.data.shipped_samples import CALIBRATION_FILE, GATE_FILE  # noqa: E402
from openhoof_router.learning.evaluation.calibrate import Scored  # noqa: E402
from openhoof_router.learning.evaluation.evaluate import EvalItem, route_all  # noqa: E402
from openhoof_router.learning.evaluation.safe_side import (  # noqa: E402
    KEEP_GRID,
    fit_unseen_side,
    narrow_figures,
    served_sent,
)
from openhoof_router.learning.run import CALIBRATION_GENERAL, general_items  # noqa: E402
from openhoof_router.serving.policy import ThresholdPolicy  # noqa: E402
from openhoof_router.serving.selection import serve  # noqa: E402
from openhoof_router.serving.settings import RouterSettings  # noqa: E402
from openhoof_router.store.runs import ServedRun  # noqa: E402

Routed = list[tuple[RoutingDecision, EvalItem]]


def route(run: ServedRun, threads: int, *sets: list[EvalItem]) -> list[Routed]:
    """Each set routed by ``run`` as a router serves it (its decoding settings)."""
    engine = serve(RouterSettings.of(None, model=run, n_threads=threads), probe=False).engine
    assert engine is not None
    try:
        return [list(zip(route_all(engine, items, progress=False), items, strict=True)) for items in sets]
    finally:
        engine.close()


def bfcl_at(policy: ThresholdPolicy, keep: float | None, bfcl: Routed) -> tuple[float, float]:
    """BFCL's turn recall and share cut (5+ tools) with ``keep`` as the unseen keep threshold."""
    served = dataclasses.replace(policy, unseen_keep=keep)
    recall, cut = narrow_figures([(served_sent(d, served), i.expected, len(i.tools)) for d, i in bfcl])
    return recall, cut or 0.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+", type=Path, help="user run folders")
    ap.add_argument("--bfcl", type=Path, default=DEFAULT_BFCL)
    ap.add_argument("--per-category", type=int, default=150)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    sets = load_sets(args.bfcl, args.per_category, args.seed)
    bfcl = [item for c in CATEGORIES for item in sets[f"bfcl:{c}"]]
    calib, gate = general_items(None, CALIBRATION_FILE), general_items(None, GATE_FILE)
    fits = {f"calib{CALIBRATION_GENERAL}": (CALIBRATION_GENERAL, False),
            f"calib{CALIBRATION_GENERAL}+gate (a run now)": (CALIBRATION_GENERAL, True),
            f"calib{len(calib)}+gate": (len(calib), True)}
    rows: dict[str, list[tuple[float, float]]] = {name: [] for name in fits}
    print("| run | fitted on | turns | keep | BFCL turn recall | BFCL cut (5+ tools) |")
    print("|---|---|---|---|---|---|")
    curves = []
    for folder in args.runs:
        run = ServedRun.open(folder)
        decoding = run.manifest.decoding
        known = frozenset(decoding.known_tools)
        if not known:
            sys.exit(f"{folder}: not a user run (no known_tools in its manifest)")
        policy = ThresholdPolicy.served(decoding)
        calib_d, gate_d, bfcl_d = route(run, args.threads, calib, gate, bfcl)
        for name, (n_calib, with_gate) in fits.items():
            pairs = calib_d[:n_calib] + (gate_d if with_gate else [])
            side = fit_unseen_side([Scored.of(d, i.expected) for d, i in pairs], known)
            recall, cut = bfcl_at(policy, side.keep_threshold, bfcl_d)
            rows[name].append((recall, cut))
            print(f"| {folder.name} | {name} | {side.n} | {side.keep_threshold} | {recall:.1%} | {cut:.1%} |",
                  flush=True)
        curves.append(f"| {folder.name} | " + " | ".join(
            "{:.1f} / {:.1f}".format(*(100 * v for v in bfcl_at(policy, k, bfcl_d))) for k in KEEP_GRID) + " |")
    print("\n| fitted on | BFCL turn recall, mean ± half-range | BFCL cut, mean ± half-range |")
    print("|---|---|---|")
    for name, got in rows.items():
        cells = []
        for k in (0, 1):
            values = [100 * r[k] for r in got]
            cells.append(f"{statistics.mean(values):.1f} ± {(max(values) - min(values)) / 2:.1f}")
        print(f"| {name} | " + " | ".join(cells) + " |")
    print("\n| run | " + " | ".join(f"keep {k}" for k in KEEP_GRID) + " |  (BFCL turn recall / cut, %)")
    print("|---" * (len(KEEP_GRID) + 1) + "|")
    print("\n".join(curves))


if __name__ == "__main__":
    main()
