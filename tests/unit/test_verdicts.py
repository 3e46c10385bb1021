"""Per-tool verdicts (format v3, built beside the sequential decoder) without a model: the
v3 codec's ids and positions (on the character stub tokenizer of test_prompt_codec), the
decision rule, and the fitting of its thresholds."""

from __future__ import annotations

import pytest

from openhoof_router.core.records import PastToolCall, PastTurn
from openhoof_router.core.tools import ToolSpec
from openhoof_router.core.verdict_prompt import VerdictCodec, render_verdict_prompt
from openhoof_router.core.verdicts import VerdictRule, Verdicts, confidence
from openhoof_router.learning.evaluation.verdict_fit import (
    Scored,
    answer,
    fit_keep_threshold,
    fit_no_tool_threshold,
    fit_rule,
)

from .test_prompt_codec import BOS, TOK

TOOLS = [ToolSpec(name=f"t{i}", description=f"tool number {i}") for i in range(12)]
CONTEXT = [PastTurn(user="check the disk", tools=[PastToolCall(name="t1", result="42%")], reply="42% used")]


@pytest.fixture()
def codec() -> VerdictCodec:
    return VerdictCodec(TOK)


def test_ids_spell_the_rendered_prompt(codec):
    ex = codec.encode_verdicts(TOOLS, "and the memory?", ["t3"], CONTEXT)
    text = TOK.decode(ex.prefix + ex.user + ex.segment.ids)
    assert text == BOS + render_verdict_prompt(TOOLS, "and the memory?", CONTEXT)


def test_one_named_mark_per_tool_then_no_tool(codec):
    seg = codec.segment(TOOLS)
    marks = [TOK.decode([seg.ids[p]]) for p in seg.positions]
    assert marks == ["?"] * (len(TOOLS) + 1)
    names = TOK.decode(seg.ids).split("\n")
    assert names == [f"{t.name}?" for t in TOOLS] + ["none?"]


def test_a_mark_is_the_same_token_whatever_the_name_ends_with(codec):
    odd = [ToolSpec(name="what?"), ToolSpec(name="a" * 200), ToolSpec(name="x\ny")]
    seg = codec.segment(odd)
    assert len(seg.positions) == 4 and all(seg.ids[p] == seg.ids[seg.positions[-1]] for p in seg.positions)
    assert codec.segment(odd) is seg  # cached per list of names


def test_labels_mark_the_needed_tools_and_no_tool(codec):
    ex = codec.encode_verdicts(TOOLS[:3], "x", ["t2", "t0"])
    assert ex.labels == (1, 0, 1, 0)
    assert codec.encode_verdicts(TOOLS[:3], "x", []).labels == (0, 0, 0, 1)


def test_earlier_turns_are_append_only(codec):
    """A conversation's next call starts with this call's tokens up to its model turn."""
    first = codec.user_turn("check the disk", [])
    later = codec.user_turn("and staging?", CONTEXT)
    assert later[: len(first)] == first


def test_rule_names_the_best_tool_and_confident_others():
    rule = VerdictRule(top_threshold=0.3, extra_threshold=0.8, max_tools=3)
    assert rule.select([0.1, 0.35, 0.2]) == [1]
    assert rule.select([0.9, 0.85, 0.5, 0.81]) == [0, 1, 3]
    assert rule.select([0.95, 0.9, 0.9, 0.9]) == [0, 1, 2]
    assert rule.select([0.2, 0.25]) == []
    assert rule.select([]) == []
    with pytest.raises(ValueError):
        VerdictRule(top_threshold=1.5)


def test_no_tool_score_needs_both_verdicts_to_agree():
    assert Verdicts(tools=[0.1, 0.2], none=0.9).no_tool_score == pytest.approx(0.8)
    assert Verdicts(tools=[0.1, 0.2], none=0.3).no_tool_score == pytest.approx(0.3)
    v = Verdicts(tools=[0.9, 0.2, 0.6], none=0.05)
    assert confidence(v, [0]) == pytest.approx(0.4)
    assert confidence(v, [0, 2]) == pytest.approx(0.6)


def _scored(scores, expected, no_tool=None):
    names = [f"t{i}" for i in range(len(scores))]
    return Scored(list(scores), names, 1 - max(scores) if no_tool is None else no_tool,
                  frozenset(names[i] for i in expected))


def test_fitted_rule_separates_what_the_scores_separate():
    data = ([_scored([0.7, 0.1, 0.05], [0])] * 10 + [_scored([0.35, 0.2, 0.1], [])] * 10
            + [_scored([0.9, 0.6, 0.1], [0, 1])] * 10 + [_scored([0.9, 0.3, 0.1], [0])] * 10)
    rule, acc = fit_rule(data)
    assert acc == 1.0
    assert all(answer(s, rule) == s.expected for s in data)


def test_no_tool_threshold_keeps_only_sure_no_tool_answers():
    rule = VerdictRule(0.5, 0.5)
    sure = [_scored([0.1], [], no_tool=0.9)] * 30
    unsure_wrong = [_scored([0.4], [0], no_tool=0.55)] * 10
    t = fit_no_tool_threshold(sure + unsure_wrong, rule, precision=0.97)
    assert 0.55 < t <= 0.9


def test_keep_threshold_holds_needed_tools_in_the_given_share_of_turns():
    data = [_scored([0.9, 0.02], [0])] * 90 + [_scored([0.9, 0.04], [0, 1])] * 10
    t = fit_keep_threshold(data, recall=0.97)
    kept = sum(all(p >= t for n, p in zip(s.names, s.scores) if n in s.expected) for s in data)
    assert kept / len(data) >= 0.97
