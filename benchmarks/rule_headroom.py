"""How much of a run's BFCL figure the verdict rule decides: every tool's P(needed), stored once,
re-scored under several rules.

    .venv/bin/python benchmarks/rule_headroom.py --models general=general S0=RUN_DIR ... [--scores DIR]

Each model routes (once; the scores are kept in ``--scores``, default ``rule_scores/``) the
messages a user run calibrates on (its validation split of the bundled data and the 208 shipped
corpus calibration records) and the ``quality.py`` sets (same seed and sample). Then, per model,
the BFCL mean, OpenHoof held-out and follow-ups under: the rule in its manifest; the rule a user
run fits (validation split + the first 80 corpus records, as ``hoof-train run`` does); the rule
fitted on all 208 corpus records; the shipped adapter's rule; and the best rule on BFCL itself,
an upper bound that no run can pick (it is fitted on the evaluation messages).

A second table needs no rule at all: how well a model's highest P(needed) separates turns that
need a tool from turns that need none, as a ROC AUC (the chance that a needed turn scores above
an unneeded one): BFCL live_simple (one offered tool, needed) against irrelevance (one offered
tool, not needed) and against live_irrelevance. A rule can only trade one side for the other;
a better model raises this.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from quality import CATEGORIES, DEFAULT_BFCL, load_sets  # noqa: E402

from openhoof_router.core.records import RoutingDecision  # noqa: E402
from openhoof_router.core.verdicts import VerdictRule  # noqa: E402
from openhoof_router.learning.config import TrainConfig  # noqa: E402
from openhoof_router.learning.evaluation.calibrate import best_rule, rule_answer  # noqa: E402
from openhoof_router.learning.run import CALIBRATION_GENERAL  # noqa: E402
from openhoof_router.store.runs import ServedRun, general_run  # noqa: E402


def route_scores(run: ServedRun, threads: int) -> dict:
    """Every set routed by ``run``: each decision's P(needed) per tool, and the engine's ``max_tools``."""
    from openhoof_router.learning.data.assemble import assemble
    from openhoof_router.learning.data.groups import split_records
    from openhoof_router.learning.data.shipped_samples import CALIBRATION_FILE
    from openhoof_router.learning.evaluation.evaluate import route_all, to_item
    from openhoof_router.learning.run import general_items
    from openhoof_router.serving.selection import engine_for
    from openhoof_router.store.paths import resolve_paths

    paths = resolve_paths(None)
    _, val = split_records(assemble(paths).train, TrainConfig().val_fraction)
    sets = {"user_val": [to_item(r.model_dump()) for r in val],
            "general_calib": general_items(None, CALIBRATION_FILE), **load_sets(DEFAULT_BFCL, 150)}
    engine = engine_for(run, None, threads, paths)
    try:
        out = {}
        for name, items in sets.items():
            decisions = route_all(engine, items, progress=False)
            out[name] = [{"scores": d.scores, "valid": d.valid, "expected": sorted(it.expected)}
                         for d, it in zip(decisions, items, strict=True)]
            print(f"  {run.run_id} {name}: {len(items)} routed", file=sys.stderr, flush=True)
    finally:
        engine.close()
    return {"max_tools": engine.max_tools, "sets": out}


Scored = list[tuple[RoutingDecision, frozenset[str]]]


def accuracy(records: Scored, rule: VerdictRule) -> float:
    return sum(rule_answer(d, rule) == expected for d, expected in records) / max(1, len(records))


def figures(sets: dict[str, Scored], rule: VerdictRule) -> dict[str, float]:
    row = {c: accuracy(sets[f"bfcl:{c}"], rule) for c in CATEGORIES}
    return {"bfcl_mean": statistics.mean(row.values()), **row, "openhoof": accuracy(sets["openhoof"], rule),
            "followups": accuracy(sets["followups"], rule)}


def served(run: ServedRun, max_tools: int) -> VerdictRule:
    """The rule a router serves ``run`` with."""
    return VerdictRule.fitted(run.manifest.decoding.top_threshold, run.manifest.decoding.extra_threshold, max_tools)


def best(sets: list[Scored], max_tools: int) -> VerdictRule:
    """The rule ``hoof-train calibrate`` would fit on these sets (their mean accuracy)."""
    return best_rule(lambda rule: statistics.mean(accuracy(records, rule) for records in sets), max_tools)[0]


def separation(needed: Scored, unneeded: Scored) -> float:
    """ROC AUC of the highest tool score: needed turns above unneeded ones (ties count half)."""
    top = [max(d.scores.values(), default=0.0) for d, _ in needed]
    low = [max(d.scores.values(), default=0.0) for d, _ in unneeded]
    wins = sum((a > b) + 0.5 * (a == b) for a in top for b in low)
    return wins / max(1, len(top) * len(low))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", required=True, help="LABEL=RUN_DIR or LABEL=general")
    ap.add_argument("--scores", type=Path, default=Path("rule_scores"))
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    args.scores.mkdir(parents=True, exist_ok=True)
    print("| model | rule | top / extra | BFCL mean | parallel_multiple | live_simple | irrelevance | OpenHoof "
          "| follow-ups |")
    print("|---|---|---|---|---|---|---|---|---|")
    shipped = general_run()
    aucs = []
    for spec in args.models:
        label, model = spec.split("=", 1)
        run = shipped if model == "general" else ServedRun.open(model)
        if run is None:
            sys.exit("no general adapter is installed")
        path = args.scores / f"scores-{label}.json"
        if not path.exists():
            path.write_text(json.dumps(route_scores(run, args.threads)))
        stored = json.loads(path.read_text())
        max_tools = stored["max_tools"]
        sets = {name: [(RoutingDecision(valid=r["valid"], scores=r["scores"]), frozenset(r["expected"]))
                       for r in records] for name, records in stored["sets"].items()}
        calibration = sets["user_val"] + sets["general_calib"][:CALIBRATION_GENERAL]
        candidates = {
            "in its manifest": served(run, max_tools),
            f"user-run fit (val + {CALIBRATION_GENERAL} corpus)": best([calibration], max_tools),
            f"fit on {len(sets['general_calib'])} corpus records": best([sets["general_calib"]], max_tools),
            "the shipped adapter's": served(shipped or run, max_tools),
            "best on BFCL (upper bound)": best([sets[f"bfcl:{c}"] for c in CATEGORIES], max_tools),
        }
        for name, rule in candidates.items():
            f = figures(sets, rule)
            print(f"| {label} | {name} | {rule.top_threshold} / {rule.extra_threshold} | "
                  + " | ".join(f"{f[k] * 100:.1f}" for k in ("bfcl_mean", "parallel_multiple", "live_simple",
                                                              "irrelevance", "openhoof", "followups")) + " |")
        aucs.append(f"| {label} | " + " | ".join(f"{separation(sets['bfcl:live_simple'], sets[f'bfcl:{neg}']):.3f}"
                                                  for neg in ("irrelevance", "live_irrelevance")) + " |")
    print("\n| model | AUC live_simple vs irrelevance | AUC live_simple vs live_irrelevance |")
    print("|---|---|---|")
    print("\n".join(aucs))


if __name__ == "__main__":
    main()
