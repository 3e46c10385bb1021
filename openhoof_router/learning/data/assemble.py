"""Training data: bundled curated examples + teacher-synthesised + live decisions with outcomes.

Live decisions become examples only when feedback vouches for them
(:attr:`~openhoof_router.store.logs.JoinedDecision.label`): a ``correct`` outcome gives the
right tool set (the last correction wins); a ``confirm`` vouches for the logged choice
unless the caller fell back or the answer was invalid. Tool runs alone, fine or failed,
vouch for nothing. Everything is deduplicated on the normalised message text; near
duplicates are found by word-set Jaccard similarity (used by the data checks and by
teacher synthesis). :func:`retrain_due` is the one rule for "enough new data to retrain".
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from openhoof_router.core.records import LIVE_SOURCE, NO_TOOL, TrainingRecord
from openhoof_router.store.jsonl import read_jsonl
from openhoof_router.store.paths import (
    CURATED_EVAL_FILE,
    CURATED_EXTRA_FILE,
    CURATED_TRAIN_FILE,
    FOLLOWUPS_EVAL_FILE,
    FOLLOWUPS_TRAIN_FILE,
    Paths,
)
from openhoof_router.store.runs import ModelRegistry, RunError
from openhoof_router.store.toolsets import TOOLSETS_DIR, resolve_toolsets

NEAR_DUPLICATE_JACCARD = 0.7
BUNDLED_SOURCES = ("curated", "followups")
"""Sources of :func:`bundled_train`: the general adapter has already been trained on them."""
_WORD = re.compile(r"[a-z0-9]+")


def normalize_text(text: str) -> str:
    return " ".join(_WORD.findall(text.lower()))


def word_set(text: str) -> frozenset[str]:
    return frozenset(_WORD.findall(text.lower()))


def jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    return len(a & b) / len(a | b) if a or b else 1.0


class NearDuplicateIndex:
    """Finds messages that are (nearly) the same as ones already seen."""

    def __init__(self, threshold: float = NEAR_DUPLICATE_JACCARD) -> None:
        self.threshold = threshold
        self._exact: set[str] = set()
        self._sets: list[frozenset[str]] = []
        self._by_word: dict[str, list[int]] = {}

    def match(self, text: str) -> bool:
        if normalize_text(text) in self._exact:
            return True
        words = word_set(text)
        candidates = {i for w in words for i in self._by_word.get(w, ())}
        return any(jaccard(words, self._sets[i]) >= self.threshold for i in candidates)

    def add(self, text: str) -> None:
        self._exact.add(normalize_text(text))
        words = word_set(text)
        self._sets.append(words)
        for w in words:
            self._by_word.setdefault(w, []).append(len(self._sets) - 1)


def record_key(rec: TrainingRecord) -> str:
    """What makes two examples the same: the normalised message, in its conversation."""
    key = normalize_text(rec.input.user_message)
    if rec.input.context:
        key += " | " + " | ".join(normalize_text(t.user) for t in rec.input.context)
    return key


def load_records(path: Path) -> tuple[list[TrainingRecord], int]:
    """Records of one file and the number of skipped (malformed) lines. Decision-log lines
    get their tool lists back from the ``toolsets/`` folder beside the file."""
    result = read_jsonl(path, TrainingRecord)
    records, dropped = resolve_toolsets(result.records, Path(path).parent / TOOLSETS_DIR)
    return records, result.skipped + dropped


def curated_train() -> list[TrainingRecord]:
    return load_records(CURATED_TRAIN_FILE)[0]


def curated_eval() -> list[TrainingRecord]:
    return load_records(CURATED_EVAL_FILE)[0]


def followups_eval() -> list[TrainingRecord]:
    return load_records(FOLLOWUPS_EVAL_FILE)[0]


def bundled_train() -> list[tuple[str, list[TrainingRecord]]]:
    """The bundled OpenHoof training data by source: curated single turns and follow-ups."""
    return [("curated", curated_train() + load_records(CURATED_EXTRA_FILE)[0]),
            ("followups", load_records(FOLLOWUPS_TRAIN_FILE)[0])]


def bundled_held_out() -> list[TrainingRecord]:
    """The bundled held-out splits (never trained on): single turns, then follow-ups."""
    return curated_eval() + followups_eval()


def live_examples(paths: Paths) -> tuple[list[TrainingRecord], dict[str, int]]:
    """Logged decisions that feedback confirmed or corrected, as training records."""
    from openhoof_router.store.logs import read_joined

    joined = read_joined(paths)
    out: list[TrainingRecord] = []
    stats = Counter(decisions=len(joined.items), outcomes=sum(len(j.outcomes) for j in joined.items),
                    skipped_lines=joined.skipped_decisions + joined.skipped_outcomes)
    for item in joined.items:
        selected = item.label
        if selected is None:
            continue
        stats[item.status] += 1
        rec = item.decision
        example = TrainingRecord.make(rec.input.user_message, rec.input.tools, selected, LIVE_SOURCE,
                                      decision_id=item.decision_id)
        schemas = getattr(rec.input, "tool_schemas", None)
        if schemas:  # the router logged the exact tools it was offered
            example.input.tool_schemas = schemas
        out.append(example)
    return out, dict(stats)


@dataclass
class Assembled:
    train: list[TrainingRecord]
    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    skipped_lines: int = 0

    @property
    def data_hash(self) -> str:
        digest = hashlib.sha256()
        for rec in self.train:
            digest.update(rec.model_dump_json(include={"input", "output"}).encode())
        return digest.hexdigest()[:16]


def assemble(paths: Paths, *, include_curated: bool = True, extra: Iterable[Path] = ()) -> Assembled:
    """Curated + synthetic + live (+ extra files), corrections first, exact duplicates dropped.

    The held-out evaluation split is never included; messages that appear in it are removed.
    """
    held_out = {record_key(r) for r in bundled_held_out()}
    live, live_stats = live_examples(paths)
    synthetic, skipped = load_records(paths.synthetic_file)
    sources: list[tuple[str, list[TrainingRecord]]] = [(LIVE_SOURCE, live)]  # live corrections win
    if include_curated:
        sources.extend(bundled_train())
    sources.append(("synthetic", synthetic))
    for path in extra:
        recs, n = load_records(Path(path))
        skipped += n
        sources.append((Path(path).name, recs))
    seen: set[str] = set()
    train: list[TrainingRecord] = []
    per_source: Counter[str] = Counter()
    per_tool: Counter[str] = Counter()
    dropped: Counter[str] = Counter()
    for name, recs in sources:
        for rec in recs:
            key = record_key(rec)
            if key in held_out:
                dropped["held_out"] += 1
                continue
            if key in seen:
                dropped["duplicate"] += 1
                continue
            seen.add(key)
            train.append(rec)
            per_source[name] += 1
            for tool in rec.tool_names or [NO_TOOL]:
                per_tool[tool] += 1
    return Assembled(
        train=train,
        counts={"per_source": dict(per_source), "per_tool": dict(sorted(per_tool.items())),
                "dropped": dict(dropped), "live": live_stats},
        skipped_lines=skipped + live_stats.get("skipped_lines", 0),
    )


def retrain_due(paths: Paths, min_examples: int, data: Assembled | None = None) -> tuple[bool, str]:
    """Whether the next run would train on at least ``min_examples`` examples that the model
    in place has not been trained on, and a line saying so: the one rule behind
    ``hoof-train --auto`` and ``examples/auto_retrain.py``.

    It counts what :func:`assemble` returns, i.e. what a run trains on: vouched live
    decisions, teacher-written examples and extra files, after duplicates and held-out
    messages are dropped. The model in place is the promoted run (its manifest's
    ``n_examples``), else the general adapter, which has seen the bundled examples only.
    """
    data = data or assemble(paths)
    try:
        promoted = ModelRegistry(paths).latest_run()
        before, since = int(promoted.manifest.data.get("n_examples", 0)), f"the promoted run {promoted.run_id}"
    except RunError:
        before = sum(data.counts.get("per_source", {}).get(s, 0) for s in BUNDLED_SOURCES)
        since = "the general adapter"
    new = max(0, len(data.train) - before)
    if new >= min_examples:
        return True, f"{new} new examples since {since} (≥ {min_examples}): training"
    return False, (f"{new} new examples since {since}; {min_examples - new} more needed "
                   f"before retraining (--min-examples {min_examples})")
