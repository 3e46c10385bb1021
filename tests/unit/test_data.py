"""Bundled curated data checks, data assembly, live-log joins and corrupt-line handling."""

from __future__ import annotations

import itertools

import pytest

from openhoof_router.core.records import OutcomeRecord, TrainingRecord
from openhoof_router.learning.data.assemble import (
    NEAR_DUPLICATE_JACCARD,
    assemble,
    bundled_train,
    curated_eval,
    curated_train,
    followups_eval,
    jaccard,
    load_records,
    normalize_text,
    word_set,
)
from openhoof_router.learning.data.groups import records_to_groups
from openhoof_router.store.jsonl import append_jsonl, read_jsonl
from openhoof_router.store.paths import (
    CURATED_EVAL_FILE,
    CURATED_EXTRA_FILE,
    CURATED_TRAIN_FILE,
    FOLLOWUPS_EVAL_FILE,
    FOLLOWUPS_TRAIN_FILE,
)


def _near_duplicates(messages: list[str]) -> list[tuple[str, str]]:
    sets = [(m, word_set(m)) for m in messages]
    return [(a, b) for (a, sa), (b, sb) in itertools.combinations(sets, 2) if jaccard(sa, sb) >= NEAR_DUPLICATE_JACCARD]


def test_curated_files_parse_completely():
    for path in (CURATED_TRAIN_FILE, CURATED_EVAL_FILE, CURATED_EXTRA_FILE, FOLLOWUPS_TRAIN_FILE, FOLLOWUPS_EVAL_FILE):
        result = read_jsonl(path, TrainingRecord)
        assert result.skipped == 0 and len(result) >= 90, (path, result.errors)


def test_followups_carry_their_conversation(builtin):
    names = {t.name for t in builtin}
    train, held = load_records(FOLLOWUPS_TRAIN_FILE)[0], followups_eval()
    for rec in train + held:
        assert 1 <= len(rec.input.context) <= 3 and set(rec.tool_names) <= names
        assert all(set(c.name for c in t.tools) <= names for t in rec.input.context)
    kinds = {rec.metadata["kind"] for rec in held}
    assert kinds == {"elliptical", "ack", "new_topic", "two_tool"}
    train_sets = [word_set(r.input.user_message) for r in train]
    leaks = [r.input.user_message for r in held
             if any(jaccard(word_set(r.input.user_message), s) >= NEAR_DUPLICATE_JACCARD for s in train_sets)]
    assert not leaks


def test_curated_train_meets_the_brief(builtin):
    names = {t.name for t in builtin}
    recs = curated_train()
    assert len(recs) >= 300
    assert sum(not r.tool_names for r in recs) >= 40
    assert sum(len(r.tool_names) == 2 for r in recs) >= 40
    for r in recs:
        assert set(r.tool_names) <= names, r
        assert set(r.input.tools) == names
    singles = {n: sum(r.tool_names == [n] for r in recs) for n in names}
    assert min(singles.values()) >= 15, singles


def test_no_exact_or_near_duplicates_within_or_across_splits():
    train = [r.input.user_message for r in curated_train()]
    held = [r.input.user_message for r in curated_eval()]
    assert len({normalize_text(m) for m in train}) == len(train)
    assert len({normalize_text(m) for m in held}) == len(held)
    assert not _near_duplicates(train)
    assert not _near_duplicates(held)
    train_sets = [word_set(m) for m in train]
    leaks = [m for m in held if any(jaccard(word_set(m), s) >= NEAR_DUPLICATE_JACCARD for s in train_sets)]
    assert not leaks


def test_the_duplicate_check_can_fail():
    assert _near_duplicates(["Check the disk space on the server", "check disk space on the server!"])


def test_assembly_joins_outcomes_corrections_win_and_counts(paths):
    tools = ["exec", "notify", "memory_write"]
    decisions = [
        TrainingRecord.make("restart the web tier", tools, ["exec"], "live", decision_id="d1"),
        TrainingRecord.make("ping me when the build is green", tools, ["exec"], "live", decision_id="d2"),
        TrainingRecord.make("no outcome for this one", tools, ["notify"], "live", decision_id="d3"),
        TrainingRecord.make("the tool failed here", tools, ["exec"], "live", decision_id="d4"),
        TrainingRecord.make("a tool ran, nobody vouched", tools, ["exec"], "live", decision_id="d5"),
    ]
    append_jsonl(paths.decisions_file, decisions)
    append_jsonl(paths.outcomes_file, [
        OutcomeRecord(decision_id="d1", kind="tool_end", tool="exec"),
        OutcomeRecord(decision_id="d1", kind="confirm"),
        OutcomeRecord(decision_id="d5", kind="tool_end", tool="exec"),
        OutcomeRecord(decision_id="d2", kind="confirm"),
        OutcomeRecord(decision_id="d2", kind="correct", correct_tools=["notify"]),
        OutcomeRecord(decision_id="d4", kind="tool_error", tool="exec"),
    ])
    with open(paths.decisions_file, "a") as fh:
        fh.write('{"input": {"user_message": "torn line"\n')
        fh.write("not json at all\n")
    data = assemble(paths)
    live = {r.input.user_message: r.tool_names for r in data.train if r.metadata["source"] == "live"}
    assert live == {"restart the web tier": ["exec"], "ping me when the build is green": ["notify"]}
    assert data.counts["per_source"]["live"] == 2
    assert data.counts["live"]["corrected"] == 1 and data.counts["live"]["confirmed"] == 1
    assert data.skipped_lines == 2
    assert data.counts["per_source"]["curated"] == len(bundled_train()[0][1])
    assert data.counts["per_source"]["followups"] == len(bundled_train()[1][1])


def test_held_out_messages_never_reach_training(paths):
    held = curated_eval()[0]
    append_jsonl(paths.synthetic_file, TrainingRecord.make(held.input.user_message, held.input.tools,
                                                           held.tool_names, "synthetic"))
    data = assemble(paths)
    assert data.counts["dropped"]["held_out"] == 1
    assert normalize_text(held.input.user_message) not in {normalize_text(r.input.user_message) for r in data.train}


def test_records_share_tool_lists_in_groups():
    recs = curated_train()[:10]
    groups = records_to_groups(recs, group_size=4, seed=1)
    assert sorted(len(g.samples) for g in groups) == [2, 4, 4]
    orders = {tuple(t.name for t in g.tools) for g in groups}
    assert len(orders) == 3  # each group its own shuffled order of the same tools
    assert sorted(s.message for g in groups for s in g.samples) == sorted(r.input.user_message for r in recs)
    assert records_to_groups(recs, group_size=4, seed=1)[0].tools == groups[0].tools  # seeded


def test_general_corpus_is_the_same_in_every_process():
    """Built twice, in processes with different string-hash seeds: the same groups, bit for bit."""
    import os
    import subprocess
    import sys

    from support import SHARED

    corpus = SHARED / "corpora" / "seal_tools"
    if not corpus.is_dir():
        pytest.skip("../shared/corpora not beside the checkout")
    code = ("import hashlib, json, sys; from pathlib import Path; "
            "from openhoof_router.learning.data.general_corpus import load_seal, general_groups; "
            "from openhoof_router.learning.data.shipped_samples import gate_records, group_to_row; "
            "c = load_seal(Path(sys.argv[1])); g = general_groups(c, seal_groups_n=200, openhoof_passes=1, seed=3); "
            "print(hashlib.sha256(json.dumps([[group_to_row(x) for x in g], gate_records(c)]).encode()).hexdigest())")
    digests = {subprocess.run([sys.executable, "-c", code, str(corpus)], capture_output=True, text=True, check=True,
                              env={**os.environ, "PYTHONHASHSEED": seed}).stdout for seed in ("1", "2")}
    assert len(digests) == 1


def test_shipped_calibration_holds_both_sides_of_each_decision(tmp_path):
    """The calibration set fits thresholds on both sides of "needed": one needed tool alone and
    among others, unrelated tools alone and among others, every tool of a request, in equal
    shares; and the shipped file is what ``build_samples`` makes from the corpus."""
    import collections
    import json

    from support import SHARED

    from openhoof_router.learning.data.shipped_samples import CALIBRATION_FILE, GATE_FILE

    rows = [json.loads(line) for line in CALIBRATION_FILE.read_text().splitlines()]
    kinds = collections.Counter(r["source"] for r in rows)
    assert set(kinds) == {"seal_tools:simple", "seal_tools:multiple", "seal_tools:parallel",
                          "seal_tools:irrelevance"}
    assert max(kinds.values()) - min(kinds.values()) <= 1
    for r in rows:
        names = {t["function"]["name"] if "function" in t else t["name"] for t in r["tools"]}
        assert set(r["expected_tools"]) <= names
        if r["source"] == "seal_tools:simple":
            assert len(r["tools"]) == 1 and len(r["expected_tools"]) == 1
        if r["source"] == "seal_tools:irrelevance":
            assert r["expected_tools"] == []
    assert any(len(r["tools"]) == 1 for r in rows if r["source"] == "seal_tools:irrelevance")
    # the user run's share (its first 80 records) holds every kind too
    assert len({r["source"] for r in rows[:80]}) == 4
    corpus = SHARED / "corpora" / "seal_tools"
    if corpus.is_dir():
        from openhoof_router.learning.pretrain import build_samples

        build_samples(corpus, tmp_path)
        for shipped in (CALIBRATION_FILE, GATE_FILE):
            assert (tmp_path / shipped.name).read_text() == shipped.read_text()


@pytest.fixture(scope="module")
def seal():
    """The Seal-Tools corpus of ../shared, loaded once for the general-corpus tests."""
    from support import SHARED

    from openhoof_router.learning.data.general_corpus import load_seal

    seal_dir = SHARED / "corpora" / "seal_tools"
    if not seal_dir.is_dir():
        pytest.skip("../shared/corpora not beside the checkout")
    return load_seal(seal_dir)


def assert_draw_unchanged(seal, **off: float) -> None:
    """An option at 0 leaves the default draw as it was, list for list and request for request."""
    from openhoof_router.learning.data.general_corpus import general_groups

    key = lambda g: (tuple(t.name for t in g.tools), tuple(s.message for s in g.samples))  # noqa: E731
    assert list(map(key, general_groups(seal, seal_groups_n=20, openhoof_passes=0, seed=4))) == \
        list(map(key, general_groups(seal, seal_groups_n=20, openhoof_passes=0, seed=4, **off)))


def test_extra_corpus_adds_its_own_lists_and_leaves_the_default_draw_alone(seal):
    """``general_groups(extra=...)``: the converted MetaTool corpus (training/corpora) adds
    tool lists built only from its own tools, with its own requests (several that need one
    tool, some none); without it the Seal-Tools draw is unchanged, group for group."""
    from pathlib import Path

    from openhoof_router.learning.data.general_corpus import general_groups, load_seal

    metatool = load_seal(Path(__file__).parents[2] / "training" / "corpora" / "metatool")
    assert len(metatool.tools) == 199 and not set(metatool.tools) & set(seal.tools)
    plain = general_groups(seal, seal_groups_n=20, openhoof_passes=0, seed=4)
    mixed = general_groups(seal, seal_groups_n=20, openhoof_passes=0, seed=4, extra=[(metatool, 30)])
    extra = [g for g in mixed if g.source.startswith("extra:")]
    assert len(extra) == 30 and len(mixed) == len(plain) + 30
    key = lambda g: (tuple(t.name for t in g.tools), tuple(s.message for s in g.samples))  # noqa: E731
    assert sorted(map(key, plain)) == sorted(key(g) for g in mixed if not g.source.startswith("extra:"))
    queries = {q["query"] for q in metatool.train}
    for g in extra:
        names = {t.name for t in g.tools}
        assert all(s.message in queries or not s.answer for s in g.samples)
        assert all(set(s.answer) <= names for s in g.samples)
    answers = [len(s.answer) for g in extra for s in g.samples]
    assert answers.count(0) and answers.count(1) and any(n > 1 for n in answers)


def test_adjacent_lists_offer_a_neighbour_that_the_request_does_not_need(seal):
    """``adjacent=``: lists built on a request and a same-field tool doing a nearby job (some
    words shared, not a near-duplicate). Each request is answered with the offered tools the
    corpus labels it with, so the neighbour alone means "none", and such a list comes with its
    twin, where the needed tool stands in its place and the same request is answered with it.
    Without it the draw is unchanged."""
    from openhoof_router.learning.data.general_corpus import NEAR_DUPLICATE, _content_words, general_groups

    for name, nbrs in seal.neighbours().items():
        for other in nbrs:
            a, b = _content_words(seal.tools[name]), _content_words(seal.tools[other])
            assert seal.field_of[other] == seal.field_of[name] and 0 < len(a & b) / len(a | b) < NEAR_DUPLICATE
    assert sum(bool(v) for v in seal.neighbours().values()) > 0.8 * len(seal.tools)
    assert_draw_unchanged(seal, adjacent=0.0)
    groups = general_groups(seal, seal_groups_n=60, openhoof_passes=0, seed=4, adjacent=0.5)
    adjacent = [g for g in groups if g.source == "seal:adjacent"]
    assert 15 <= len(adjacent) <= 70
    labels = {q["query"]: q["expected_tools"] for q in seal.train}
    answered: dict[str, list[int]] = {}
    for g in adjacent:
        assert 1 <= len(g.tools) <= 4
        for s in g.samples:
            # names may be restyled: compare how many offered tools the request is answered with
            assert len(s.answer) <= len(labels[s.message]) and set(s.answer) <= {t.name for t in g.tools}
            answered.setdefault(s.message, []).append(len(s.answer))
    twins = [n for n in answered.values() if 0 in n]
    assert twins and all(any(n) for n in twins)


def test_sibling_lists_offer_a_lookalike_the_request_tells_apart(seal):
    """``siblings=``: lists where a needed tool sits beside a same-field tool that reads almost
    the same (word overlap ≥ NEAR_DUPLICATE), and the request holds a word only the needed one
    has and none only the sibling has. Only the needed tool is the answer; the sibling is
    answered where a request of its own comes along. Without it the draw is unchanged."""
    from openhoof_router.learning.data.general_corpus import NEAR_DUPLICATE, _content_words, _stems, general_groups

    pairs = seal.siblings()
    assert len(pairs) > 500
    for query, tool, sibling in pairs:
        a, b = _content_words(seal.tools[tool]), _content_words(seal.tools[sibling])
        assert seal.field_of[tool] == seal.field_of[sibling] and len(a & b) / len(a | b) >= NEAR_DUPLICATE
        assert tool in query["expected_tools"] and sibling not in query["expected_tools"]
        said = _stems(query["query"])
        assert _stems(" ".join(a - b)) & said and not _stems(" ".join(b - a)) & said
    assert_draw_unchanged(seal, siblings=0.0)
    groups = general_groups(seal, seal_groups_n=60, openhoof_passes=0, seed=4, siblings=0.5)
    lists = [g for g in groups if g.source == "seal:sibling"]
    assert 15 <= len(lists) <= 50
    labels = {q["query"]: q["expected_tools"] for q in seal.train}
    for g in lists:
        assert 2 <= len(g.tools) <= 5
        for s in g.samples:  # names may be restyled: compare counts
            assert set(s.answer) <= {t.name for t in g.tools}
            if s.message in labels:  # a request of the corpus: its offered tools (none for a negative)
                assert len(s.answer) <= len(labels[s.message])
            else:  # two requests joined: both lookalikes
                assert " Also: " in s.message and len(s.answer) >= 2
    samples = [s for g in lists for s in g.samples]
    assert any(not s.answer for s in samples) and any(len(s.answer) >= 2 for s in samples)
