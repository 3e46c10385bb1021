"""Per-tool verdicts without a model: the codec's verdict marks, their ids and positions (on the character stub tokenizer of test_prompt_codec), the
decision rule, and the fitting of its thresholds (the safe side's: see test_safe_side)."""

from __future__ import annotations

import pytest

from openhoof_router.core.prompt import PromptCodec, render_prompt
from openhoof_router.core.records import PastToolCall, PastTurn, RoutingDecision
from openhoof_router.core.tools import ToolSpec
from openhoof_router.core.verdicts import VerdictRule, Verdicts, confidence
from openhoof_router.learning.evaluation.calibrate import fit_verdict_rule, rule_answer
from openhoof_router.learning.evaluation.evaluate import INVALID, EvalItem

from .test_prompt_codec import BOS, TOK

TOOLS = [ToolSpec(name=f"t{i}", description=f"tool number {i}") for i in range(12)]
CONTEXT = [PastTurn(user="check the disk", tools=[PastToolCall(name="t1", result="42%")], reply="42% used")]


@pytest.fixture()
def codec() -> PromptCodec:
    return PromptCodec(TOK)


def test_ids_spell_the_rendered_prompt(codec):
    ex = codec.encode(TOOLS, "and the memory?", ["t3"], CONTEXT)
    text = TOK.decode(ex.prefix + ex.user + ex.segment.ids)
    assert text == BOS + render_prompt(TOOLS, "and the memory?", CONTEXT)


def test_one_named_mark_per_tool_then_no_tool(codec):
    seg = codec.segment(TOOLS)
    marks = [TOK.decode([seg.ids[p]]) for p in seg.positions]
    assert marks == ["?"] * (len(TOOLS) + 1)
    assert TOK.decode(seg.ids) == "".join(f"{t.name}?" for t in TOOLS) + "none?"
    ends = [-1, *seg.positions]  # each name's tokens lie between two marks
    assert [TOK.decode(seg.ids[a + 1: b]) for a, b in zip(ends, ends[1:])] == [t.name for t in TOOLS] + ["none"]


def test_a_mark_is_the_same_token_whatever_the_name_ends_with(codec):
    odd = [ToolSpec(name="what?"), ToolSpec(name="a" * 200), ToolSpec(name="x\ny")]
    seg = codec.segment(odd)
    assert len(seg.positions) == 4 and all(seg.ids[p] == seg.ids[seg.positions[-1]] for p in seg.positions)
    assert codec.segment(odd) is seg  # cached per list of names


def test_labels_mark_the_needed_tools_and_no_tool(codec):
    ex = codec.encode(TOOLS[:3], "x", ["t2", "t0"])
    assert ex.labels == (1, 0, 1, 0)
    assert codec.encode(TOOLS[:3], "x", []).labels == (0, 0, 0, 1)


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


def _decision(scores, no_tool=None):
    return RoutingDecision(tool_calls=[], scores={f"t{i}": p for i, p in enumerate(scores)},
                           no_tool_score=1 - max(scores) if no_tool is None else no_tool)


def _item(n, expected):
    return EvalItem("x", [ToolSpec(name=f"t{i}") for i in range(n)], frozenset(f"t{i}" for i in expected))


class _Engine:
    """What the rule fit reads of an engine (the decisions are given)."""

    max_tools = 3


def test_fitted_rule_separates_what_the_scores_separate():
    cases = ([([0.45, 0.1, 0.05], [0])] * 10 + [([0.35, 0.2, 0.1], [])] * 10
             + [([0.9, 0.6, 0.1], [0, 1])] * 10 + [([0.9, 0.3, 0.1], [0])] * 10)
    fit = fit_verdict_rule(_Engine(), [_item(3, e) for _, e in cases], decisions=[_decision(s) for s, _ in cases])
    assert fit.accuracy == 1.0 and fit.default_accuracy < 1.0
    assert fit.answers == [frozenset(f"t{i}" for i in e) for _, e in cases]
    assert fit.decoding == {"top_threshold": fit.rule.top_threshold, "extra_threshold": fit.rule.extra_threshold}


def test_ties_go_to_the_lower_thresholds_and_invalid_decisions_stay_invalid():
    fit = fit_verdict_rule(_Engine(), [_item(2, [0])] * 3, decisions=[_decision([0.9, 0.1])] * 3)
    assert (fit.rule.top_threshold, fit.rule.extra_threshold) == (0.05, 0.15)
    broken = RoutingDecision(valid=False, error="backend error")
    assert rule_answer(broken, fit.rule) == frozenset({INVALID})
