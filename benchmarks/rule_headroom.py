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
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from quality import CATEGORIES, DEFAULT_BFCL, load_sets  # noqa: E402

from openhoof_router.core.verdicts import VerdictRule  # noqa: E402
from openhoof_router.learning.evaluation.calibrate import RULE_GRID  # noqa: E402

MAX_TOOLS = 3


def route_scores(model: str, threads: int) -> dict[str, list[dict]]:
    from openhoof_router.learning.data.assemble import assemble
    from openhoof_router.learning.data.groups import split_records
    from openhoof_router.learning.data.shipped_samples import CALIBRATION_FILE
    from openhoof_router.learning.evaluation.evaluate import route_all, to_item
    from openhoof_router.learning.run import general_items
    from openhoof_router.serving.selection import engine_for
    from openhoof_router.store.paths import resolve_paths
    from openhoof_router.store.runs import ServedRun

    paths = resolve_paths(None)
    _, val = split_records(assemble(paths).train, 0.1)
    sets = {"user_val": [to_item(r.model_dump()) for r in val],
            "general_calib": general_items(None, CALIBRATION_FILE), **load_sets(DEFAULT_BFCL, 150)}
    engine = engine_for(model if model == "general" else ServedRun.open(model), None, threads, paths)
    try:
        out = {}
        for name, items in sets.items():
            decisions = route_all(engine, items, progress=False)
            out[name] = [{"scores": list(d.scores.values()), "names": list(d.scores), "valid": d.valid,
                          "expected": sorted(it.expected)} for d, it in zip(decisions, items, strict=True)]
            print(f"  {model} {name}: {len(items)} routed", file=sys.stderr, flush=True)
    finally:
        engine.close()
    return out


def accuracy(records: list[dict], rule: VerdictRule) -> float:
    right = sum(r["valid"] and frozenset(r["names"][i] for i in rule.select(r["scores"])) == frozenset(r["expected"])
                for r in records)
    return right / max(1, len(records))


def rules() -> list[VerdictRule]:
    """The grid ``hoof-train calibrate`` searches, in its order (ties: the lower thresholds)."""
    return [VerdictRule(t, e, MAX_TOOLS) for t in RULE_GRID for e in RULE_GRID if e >= t]


def best(sets: list[list[dict]]) -> VerdictRule:
    """The grid rule with the best mean accuracy over ``sets`` (first found on ties)."""
    top = None
    for rule in rules():
        value = statistics.mean(accuracy(records, rule) for records in sets)
        if top is None or value > top[0] + 1e-9:
            top = (value, rule)
    assert top is not None
    return top[1]


def figures(s: dict[str, list[dict]], rule: VerdictRule) -> dict[str, float]:
    row = {c: accuracy(s[f"bfcl:{c}"], rule) for c in CATEGORIES}
    return {"bfcl_mean": statistics.mean(row.values()), **row, "openhoof": accuracy(s["openhoof"], rule),
            "followups": accuracy(s["followups"], rule)}


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
    for spec in args.models:
        label, model = spec.split("=", 1)
        path = args.scores / f"scores-{label}.json"
        if not path.exists():
            path.write_text(json.dumps(route_scores(model, args.threads)))
        s = json.loads(path.read_text())
        decoding = {}
        if model != "general":
            decoding = json.loads((Path(model) / "manifest.json").read_text())["decoding"]
        else:
            from openhoof_router.store.runs import general_run

            run = general_run()
            decoding = run.manifest.decoding.model_dump() if run else {}
        calib = s["user_val"] + s["general_calib"][:80]
        candidates = {
            "in its manifest": VerdictRule(decoding.get("top_threshold", 0.5), decoding.get("extra_threshold", 0.5),
                                           MAX_TOOLS),
            "user-run fit (val + 80 corpus)": best([calib]),
            "fit on 208 corpus records": best([s["general_calib"]]),
            "the shipped adapter's (0.05 / 0.7)": VerdictRule(0.05, 0.7, MAX_TOOLS),
            "best on BFCL (upper bound)": best([s[f"bfcl:{c}"] for c in CATEGORIES]),
        }
        for name, rule in candidates.items():
            f = figures(s, rule)
            print(f"| {label} | {name} | {rule.top_threshold} / {rule.extra_threshold} | "
                  + " | ".join(f"{f[k] * 100:.1f}" for k in ("bfcl_mean", "parallel_multiple", "live_simple",
                                                              "irrelevance", "openhoof", "followups")) + " |")


if __name__ == "__main__":
    main()
