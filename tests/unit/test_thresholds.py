"""Thresholds without a model: the serving policy that turns unsure decisions into fallbacks
and says what narrow mode binds, and the calibration that fits the decision rule, the
"no tool" and keep thresholds and per-tool score thresholds."""

from __future__ import annotations

import pytest

from openhoof_router.core.records import NO_TOOL, RoutingDecision, ToolCall
from openhoof_router.learning.evaluation.calibrate import (
    SCORE_GRID,
    Scored,
    fit_tool_thresholds,
    kept,
    lowest_threshold,
    tradeoff,
)
from openhoof_router.learning.evaluation.evaluate import INVALID
from openhoof_router.serving.policy import ThresholdPolicy


def decision(*names: str, scores: dict[str, float] | None = None, no_tool: float = 0.0,
             valid: bool = True) -> RoutingDecision:
    return RoutingDecision(tool_calls=[ToolCall(name=n) for n in names], scores=scores or {}, no_tool_score=no_tool,
                           valid=valid)


# -- the serving policy ---------------------------------------------------------------

def test_policy_follows_a_decision_whose_every_tool_clears_its_bar():
    policy = ThresholdPolicy(default=0.5)
    d = decision("exec", "notify", scores={"exec": 0.9, "notify": 0.5})
    assert policy.judge(d) == 0.5
    assert not d.fallback and d.fallback_reason is None


def test_policy_falls_back_on_the_weakest_tool():
    d = decision("exec", "notify", scores={"exec": 0.9, "notify": 0.49})
    ThresholdPolicy(default=0.5).judge(d)
    assert d.fallback and d.fallback_reason == "low_confidence"
    missing = decision("exec")  # a named tool without a score counts as 0
    ThresholdPolicy(default=0.1).judge(missing)
    assert missing.fallback


def test_per_tool_thresholds_override_the_default_both_ways():
    policy = ThresholdPolicy(default=0.5, per_tool={"exec": 0.95, "notify": 0.0})
    strict = decision("exec", scores={"exec": 0.9})
    assert policy.judge(strict) == 0.95
    assert strict.fallback and strict.fallback_reason == "tool_threshold:exec"
    lenient = decision("notify", scores={"notify": 0.01})
    assert policy.judge(lenient) == 0.0 and not lenient.fallback
    assert policy.required(["exec", "notify", "memory_read"]) == 0.95  # the highest bar among the names


def test_no_tool_decisions_are_judged_on_the_no_tool_score():
    policy = ThresholdPolicy(default=0.5, per_tool={NO_TOOL: 0.8})
    unsure = decision(no_tool=0.7)
    assert policy.judge(unsure) == 0.8
    assert unsure.fallback and unsure.fallback_reason == f"tool_threshold:{NO_TOOL}"
    sure = decision(no_tool=0.85)
    policy.judge(sure)
    assert not sure.fallback
    assert ThresholdPolicy(default=0.3).required([]) == 0.3


def test_invalid_decisions_always_fall_back_and_bounds_hold():
    broken = decision("exec", scores={"exec": 1.0}, valid=False)
    ThresholdPolicy(default=0.0).judge(broken)
    assert broken.fallback and broken.fallback_reason == "invalid"
    never = decision("exec", scores={"exec": 1.0})
    ThresholdPolicy(default=1.01).judge(never)  # above 1: nothing is ever followed
    assert never.fallback
    always = decision("exec", scores={"exec": 0.0})
    ThresholdPolicy(default=0.0).judge(always)  # 0: every valid decision is followed
    assert not always.fallback
    with pytest.raises(ValueError, match=">= 0"):
        ThresholdPolicy(default=-0.1)
    with pytest.raises(ValueError, match=">= 0"):
        ThresholdPolicy(per_tool={"exec": -1.0})


# -- what narrow mode binds ----------------------------------------------------------------

OFFERED = ["exec", "notify", "memory_read", "shared_search"]


def scored(got: set[str], expected: set[str], score: float, no_tool: float = 0.0) -> Scored:
    return Scored(frozenset(got), {n: score for n in got}, no_tool, frozenset(expected))


def test_lowest_threshold_reaching_the_target():
    # exec: right at scores 0.9 (x6), wrong at 0.3 (x2) -> 75 % unfiltered, 100 % from 0.4
    items = [scored({"exec"}, {"exec"}, 0.9)] * 6 + [scored({"exec"}, {"notify"}, 0.3)] * 2
    assert lowest_threshold(items, "exec", target=0.9, min_support=5) == 0.4
    assert lowest_threshold(items, "exec", target=0.7, min_support=5) == 0.0  # already good enough
    assert lowest_threshold(items, "notify", target=0.9, min_support=5) is None  # never named: too few
    hopeless = [scored({"exec"}, {"notify"}, 0.99)] * 6
    assert lowest_threshold(hopeless, "exec", target=0.9, min_support=5) == SCORE_GRID[-1]


def test_fit_tool_thresholds_skips_rare_tools_and_invalid_answers():
    items = ([scored({"exec"}, {"exec"}, 0.9)] * 6 + [scored({"exec"}, set(), 0.2)] * 2
             + [scored(set(), set(), 0.0, no_tool=0.95)] * 5 + [scored({"notify"}, {"notify"}, 0.9)] * 2
             + [Scored(frozenset({INVALID}), {}, 0.0, frozenset({"exec"}))] * 3)
    default, per_tool = fit_tool_thresholds(items, target=0.9, min_support=5)
    assert per_tool == {"exec": 0.3, NO_TOOL: 0.0}  # notify: 2 decisions, below min_support
    assert default is not None and default <= 0.3


def test_kept_and_the_tradeoff_table():
    items = [scored({"exec"}, {"exec"}, 0.9)] * 3 + [scored({"exec"}, {"notify"}, 0.3)]
    assert kept(items[0], {"exec": 0.5}, 0.0) and not kept(items[-1], {"exec": 0.5}, 0.0)
    assert not kept(Scored(frozenset({INVALID}), {}, 0.0, frozenset()), {}, 0.0)
    rows = tradeoff(items, {"exec": 0.5}, default=0.5, scales=(0.0, 1.0, 2.0))
    assert [r["fallback_rate"] for r in rows] == [0.0, 0.25, 1.0]  # scaled 0, 0.5, 1.0 (capped at 1)
    assert rows[1]["kept_accuracy"] == 1.0 and rows[0]["kept_accuracy"] == 0.75
    assert all(r["overall_accuracy"] == 0.75 for r in rows)
