"""The fixed samples derived from the general corpus and shipped with the package.

- ``data/general_gate.jsonl``: held-out Seal-Tools requests as routing records in BFCL's
  shape (one tool among same-field distractors, all tools of a multi-tool request, one
  lone tool, unrelated tools only); the promotion gate's general sample.
- ``data/general_calibration.jsonl``: more held-out records in four kinds, equal shares (all
  tools of a request, unrelated tools only, one tool among distractors, one needed tool
  alone), to fit the decoding thresholds.
- ``data/general_replay.jsonl``: tool-list groups from training requests, mixed into every
  user run so general skill is not forgotten.

Seal-Tools: github.com/fairyshine/Seal-Tools, Apache-2.0 (see ``data/NOTICE.md``).
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from openhoof_router.core.records import PastTurn
from openhoof_router.core.tools import ToolSpec, to_spec
from openhoof_router.learning.data.general_corpus import SealCorpus, distractors
from openhoof_router.learning.data.groups import Group, Sample
from openhoof_router.store.paths import PACKAGE_DATA

GATE_FILE = PACKAGE_DATA / "general_gate.jsonl"
CALIBRATION_FILE = PACKAGE_DATA / "general_calibration.jsonl"
REPLAY_FILE = PACKAGE_DATA / "general_replay.jsonl"
SAMPLE_FILES = (GATE_FILE, CALIBRATION_FILE, REPLAY_FILE)
"""The shipped samples; a general run keeps the ones it was built with, under the same names,
in its ``samples`` folder (:class:`~openhoof_router.store.runs.RunLayout`)."""


def routing_record(rid: str, message: str, tools: Sequence[ToolSpec], expected: Iterable[str],
                   source: str) -> dict[str, Any]:
    """A record in the BFCL-derived shape ``evaluate.load_eval_items`` reads."""
    return {"id": rid, "messages": [{"role": "user", "content": message}],
            "tools": [t.openai_schema() for t in tools], "expected_tools": sorted(set(expected)),
            "source": source}


def gate_records(corpus: SealCorpus, seed: int = 0, per_kind: int = 50) -> tuple[list[dict], list[dict]]:
    """(gate sample, calibration set) from held-out requests, in four BFCL-like kinds:
    one tool among same-field distractors, all tools of a multi-tool request, one lone tool,
    and unrelated tools only (``none``)."""
    rng = random.Random(seed)
    singles = [q for q in corpus.held if len(q["expected_tools"]) == 1]
    multis = [q for q in corpus.held if len(q["expected_tools"]) > 1]
    rng.shuffle(singles)
    rng.shuffle(multis)
    half = len(singles) // 2
    out: list[dict] = []

    def spec(name: str) -> ToolSpec:
        return corpus.tools[name]

    def add(kind: str, q: dict, offered: list[str], expected: list[str], sink: list[dict]) -> None:
        rng.shuffle(offered)
        sink.append(routing_record(f"{kind}-{q['id']}", q["query"], [spec(n) for n in offered], expected,
                                   f"seal_tools:{kind}"))

    def one_of_several(q: dict, sink: list[dict]) -> None:
        gold = q["expected_tools"]
        add("multiple", q, gold + distractors(corpus, rng, set(gold), [corpus.field_of[gold[0]]],
                                               rng.randint(1, 4)), gold, sink)

    def all_of(q: dict, sink: list[dict]) -> None:
        gold = q["expected_tools"]
        add("parallel", q, gold + distractors(corpus, rng, set(gold), [], rng.randint(0, 2)), gold, sink)

    def unrelated(q: dict, sink: list[dict]) -> None:
        gold = set(q["expected_tools"])
        fields = [corpus.field_of[n] for n in sorted(gold)]  # sorted: sets iterate in hash order
        add("irrelevance", q, distractors(corpus, rng, gold, fields, rng.randint(1, 3)), [], sink)

    for q in singles[:half][:per_kind]:
        one_of_several(q, out)
    for q in singles[half:][:per_kind]:
        add("simple", q, list(q["expected_tools"]), q["expected_tools"], out)
    for q in multis[:per_kind]:
        all_of(q, out)
    for q in multis[per_kind:2 * per_kind]:
        unrelated(q, out)
    def first_of_several(q: dict, sink: list[dict]) -> None:  # a multi-tool request's first tool, as one needed
        one_of_several({**q, "expected_tools": [q["expected_tools"][0]]}, sink)

    def lone(q: dict, sink: list[dict]) -> None:  # one needed tool offered alone (live_simple's side)
        gold = [rng.choice(q["expected_tools"])]
        add("simple", q, gold, gold, sink)

    # the calibration set holds the four kinds in equal shares: a threshold is fitted on both sides
    # of each decision ("needed" alone and among others, "not needed" alone and among others)
    calibration: list[dict] = []
    kinds = (all_of, unrelated, first_of_several, lone)
    for i, q in enumerate(multis[2 * per_kind:]):
        kinds[i % len(kinds)](q, calibration)
    return out, calibration


def write_jsonl(path: Path, rows: Iterable[Any]) -> int:
    lines = [json.dumps(r, ensure_ascii=False) + "\n" for r in rows]
    path.write_text("".join(lines), encoding="utf-8")
    return len(lines)


def group_to_row(group: Group) -> dict[str, Any]:
    """A group as one JSON line (the replay file's format)."""
    return {"tools": [t.openai_schema() for t in group.tools], "level": group.level, "source": group.source,
            "samples": [{"message": s.message, "answer": s.answer,
                         **({"context": [t.model_dump() for t in s.context]} if s.context else {})}
                        for s in group.samples]}


def row_to_group(row: dict[str, Any]) -> Group:
    return Group([to_spec(t) for t in row["tools"]],
                 [Sample(s["message"], list(s["answer"]), [PastTurn.model_validate(t) for t in s.get("context", [])])
                  for s in row["samples"]], level=row.get("level", 0), source=row.get("source", "replay"))


def replay_groups(n_examples: int, seed: int = 0) -> list[Group]:
    """About ``n_examples`` requests from the shipped replay sample of the general corpus."""
    if n_examples <= 0 or not REPLAY_FILE.exists():
        return []
    rows = [json.loads(line) for line in REPLAY_FILE.read_text().splitlines() if line.strip()]
    random.Random(seed).shuffle(rows)
    out, count = [], 0
    for row in rows:
        if count >= n_examples:
            break
        group = row_to_group(row)
        out.append(group)
        count += len(group.samples)
    return out
