"""How much a model's P(needed) follows the words a request shares with the tool.

    .venv/bin/python benchmarks/overlap.py --scores DIR --models general RUN_LABEL ... \
        [--corpus ../shared/corpora/seal_tools training/corpora/metatool]

Reads the scores ``rule_headroom.py`` stored (``DIR/scores-LABEL.json``; no model is loaded)
and the ``quality.py`` messages they belong to (same seed and sample). For BFCL's lone-tool
categories (live_simple: the one offered tool is needed; irrelevance, live_irrelevance: it is
not) it splits the turns by how many word stems the request shares with the tool's name and
description (0, 1, 2 or more) and prints, per split, the mean P(needed) and the share at
≥ 0.5. A model that reads meaning scores needed tools high and unneeded ones low in every
split; one that counts shared words scores by split.

``--corpus`` prints the same count for training corpora (Seal-Tools layout, read as
``hoof-train pretrain`` reads them): the tools a request needs against three other tools
drawn at random, which says how well shared words
alone would label that corpus.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from quality import DEFAULT_BFCL, load_sets  # noqa: E402

from openhoof_router.learning.data.general_corpus import load_seal  # noqa: E402

STOP = frozenset("the an of to in for on and or is are be with by from at as it this that you me my your "
                 "what how can please get set".split())
LONE = ("live_simple", "irrelevance", "live_irrelevance")
SPLITS = ((0, 0), (1, 1), (2, None))


def stems(text: str) -> set[str]:
    """Content-word stems (first five letters) of text, identifiers split (``getWeather``, ``get_weather``)."""
    text = re.sub(r"([a-z])([A-Z])", r"\1 \2", text).replace("_", " ").lower()
    return {w[:5] for w in re.findall(r"[a-z]+", text) if len(w) > 2 and w not in STOP}


def shared(message: str, name: str, description: str) -> int:
    return len(stems(message) & stems(f"{name} {description}"))


def in_split(n: int, split: tuple[int, int | None]) -> bool:
    lo, hi = split
    return n >= lo and (hi is None or n <= hi)


def split_label(split: tuple[int, int | None]) -> str:
    lo, hi = split
    return f"{lo}+" if hi is None else str(lo)


def model_table(sets: dict, scores_dir: Path, labels: list[str]) -> None:
    print("| model | category | " + " | ".join(f"{split_label(s)} shared: n / mean P / P ≥ 0.5" for s in SPLITS)
          + " |")
    print("|---|---|" + "---|" * len(SPLITS))
    for label in labels:
        stored = json.loads((scores_dir / f"scores-{label}.json").read_text())["sets"]
        for cat in LONE:
            rows = []
            for item, rec in zip(sets[f"bfcl:{cat}"], stored[f"bfcl:{cat}"], strict=True):
                tool = item.tools[0]
                rows.append((shared(item.message, tool.name, tool.description), max(rec["scores"].values())))
            cells = []
            for split in SPLITS:
                ps = [p for n, p in rows if in_split(n, split)]
                cells.append(f"{len(ps)} / {statistics.mean(ps):.2f} / {sum(p >= 0.5 for p in ps) / len(ps):.2f}"
                             if ps else "0 / - / -")
            print(f"| {label} | {cat} | " + " | ".join(cells) + " |")


def corpus_table(corpora: list[Path]) -> None:
    print("\n| corpus | tools | requests' tools: 0 / 1 / 2+ shared | 3 random other tools: 0 / 1 / 2+ shared |")
    print("|---|---|---|---|")
    for path in corpora:
        corpus = load_seal(path)
        tools = {n: t.description for n, t in corpus.tools.items()}
        rng, names = random.Random(0), sorted(tools)
        needed, other = [], []
        for q in corpus.train + corpus.held:
            needed += [shared(q["query"], n, tools[n]) for n in q["expected_tools"]]
            other += [shared(q["query"], n, tools[n]) for n in rng.sample(names, 3) if n not in q["expected_tools"]]

        def shares(xs: list[int]) -> str:
            return " / ".join(f"{sum(in_split(x, s) for x in xs) / max(1, len(xs)):.1%}" for s in SPLITS)

        print(f"| {path} | {len(tools)} | {shares(needed)} ({len(needed)}) | {shares(other)} ({len(other)}) |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scores", type=Path, default=Path("rule_scores"))
    ap.add_argument("--models", nargs="*", default=[], help="labels of stored scores (scores-LABEL.json)")
    ap.add_argument("--corpus", nargs="*", type=Path, default=[])
    ap.add_argument("--bfcl", type=Path, default=DEFAULT_BFCL)
    args = ap.parse_args()
    if args.models:
        model_table(load_sets(args.bfcl, 150), args.scores, args.models)
    if args.corpus:
        corpus_table(args.corpus)


if __name__ == "__main__":
    main()
