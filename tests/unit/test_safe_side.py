"""narrow mode's safe side without a model: the keep threshold's extra tools, the no-tool
threshold, and fitting both on held-out decisions (see ``learning/evaluation/safe_side``)."""

from __future__ import annotations

from openhoof_router.core.records import NO_TOOL, RoutingDecision, ToolCall
from openhoof_router.learning.evaluation.calibrate import Scored
from openhoof_router.learning.evaluation.safe_side import (
    MIN_NONE,
    NEVER,
    fit_keep_threshold,
    fit_no_tool_threshold,
    fit_safe_side,
    fit_unseen_side,
    narrow_report,
    sent,
)
from openhoof_router.serving.policy import ThresholdPolicy
from openhoof_router.store.runs import Decoding

TOOLS = ("weather", "email", "docs", "ticket", "calendar")


def scored(got: set[str], expected: set[str], scores: dict[str, float] | None = None, none: float = 0.0) -> Scored:
    return Scored(frozenset(got), {t: 0.0 for t in TOOLS} | (scores or {}), none, frozenset(expected))


def test_a_followed_decision_carries_the_tools_scored_near_it_and_narrow_binds_them():
    policy = ThresholdPolicy(default=0.5, keep=0.05)
    d = RoutingDecision(tool_calls=[ToolCall(name="email")],
                        scores={"email": 0.8, "docs": 0.03, "ticket": 0.12, "weather": 0.06})
    policy.judge(d)
    assert not d.fallback and d.extra_tools == ["ticket", "weather"]  # by score, the answer's own left out
    assert d.narrow_tools == ["email", "ticket", "weather"]
    unsure = RoutingDecision(tool_calls=[ToolCall(name="email")], scores={"email": 0.4, "ticket": 0.3})
    policy.judge(unsure)
    assert unsure.fallback and unsure.extra_tools == [] and unsure.fallback_tools == []  # 2 tools: every tool
    assert ThresholdPolicy(default=0.5).judge(d) == 0.5  # no keep threshold: nothing is added
    none = RoutingDecision(no_tool_score=0.95, scores={"email": 0.04})
    policy.judge(none)
    assert not none.fallback and none.extra_tools == [] and none.narrow_tools == []


def test_sent_tools_and_turn_recall():
    two = scored({"email"}, {"email", "ticket"}, {"email": 0.7, "ticket": 0.02})
    assert sent(two, 0.9, 0.05) == {"email"} and sent(two, 0.9, 0.01) == {"email", "ticket"}
    unsure_none = scored(set(), {"weather"}, {"weather": 0.3, "docs": 0.2, "email": 0.01}, none=0.8)
    # below the no-tool threshold, on 5 tools: the best-scored half (3 of 5), not every tool
    assert sent(unsure_none, 0.9, 0.05) == {"weather", "docs", "email"}
    assert sent(unsure_none, 0.9, 0.05, fallback_share=1.0) is None  # every tool
    recall, cut = narrow_report([two, unsure_none], 0.9, 0.05)
    assert recall == 0.5 and cut == ((1 - 1 / 5) + (1 - 3 / 5)) / 2
    assert narrow_report([two, unsure_none], 0.9, 0.01)[0] == 1.0


def test_the_no_tool_threshold_needs_the_precision_on_enough_answers():
    right = [scored(set(), set(), none=0.95 + 0.004 * i) for i in range(12)]
    wrong = [scored(set(), {"weather"}, none=0.9) for _ in range(3)]
    assert fit_no_tool_threshold(right + wrong) == 0.95  # the wrong ones all sit below 0.95
    confidently_wrong = [scored(set(), {"weather"}, none=0.999) for _ in range(3)]
    assert fit_no_tool_threshold(right + confidently_wrong) == NEVER  # "no tool" is never followed
    assert fit_no_tool_threshold(right[: MIN_NONE - 1]) is None  # too few to fit
    thin = fit_safe_side(right[:5] + [scored({"email"}, {"email"}, {"email": 0.9})])
    assert thin.no_tool_threshold is None and thin.keep_threshold is None  # too few: nothing fitted, and said
    assert any("not fitted, the default" in n for n in thin.notes) and any("keep threshold not" in n for n in thin.notes)
    assert thin.decoding() == {"keep_threshold": None, "tool_thresholds": {}}


def test_the_keep_threshold_is_the_highest_that_reaches_the_recall():
    # 40 turns needing two tools; the second is scored 0.001 .. 0.04
    items = [scored({"email"}, {"email", "ticket"}, {"email": 0.9, "ticket": 0.001 * (i + 1)}) for i in range(40)]
    keep = fit_keep_threshold(items, 0.9, recall=0.97)
    assert keep == 0.002  # 39 of 40 kept at 0.002, 38 at 0.003 (< 97 %)
    assert fit_keep_threshold(items, 0.9, recall=0.5) == 0.02
    nones = [scored(set(), set(), none=0.99) for _ in range(12)]
    fit = fit_safe_side(items + nones, recall=0.97)
    assert fit.keep_threshold == keep and fit.turn_recall >= 0.97 and fit.no_tool_threshold == 0.5
    assert fit.decoding() == {"keep_threshold": keep, "tool_thresholds": {NO_TOOL: 0.5}}
    # a general run never follows "no tool", however precise it was on the corpus, and says why
    general = fit_safe_side(items + nones, recall=0.97, trust_no_tool=False)
    assert general.no_tool_threshold == NEVER and general.decoding()["tool_thresholds"] == {NO_TOOL: NEVER}
    assert general.keep_threshold == keep and any("general run" in n for n in general.notes)
    confident_none = scored(set(), {"weather"}, {"weather": 0.04}, none=0.999)
    assert "weather" in sent(confident_none, NEVER, keep) and len(sent(confident_none, NEVER, keep)) == 3


def test_a_fallback_on_a_long_list_binds_its_best_scored_half_and_every_tool_otherwise():
    scores = {f"t{i}": s for i, s in enumerate([0.01, 0.3, 0.02, 0.2, 0.04, 0.1, 0.03])}  # 7 tools
    policy = ThresholdPolicy(default=0.5)
    unsure = RoutingDecision(tool_calls=[ToolCall(name="t1")], scores=scores)
    policy.judge(unsure)
    assert unsure.fallback and unsure.fallback_tools == ["t1", "t3", "t5", "t4"]  # ceil(7 / 2), by score
    nothing = RoutingDecision(scores=scores, no_tool_score=0.7)  # "no tool", not trusted
    ThresholdPolicy(default=0.5, per_tool={NO_TOOL: 1.01}).judge(nothing)
    assert nothing.fallback and nothing.fallback_tools == ["t1", "t3", "t5", "t4"]
    every = RoutingDecision(tool_calls=[ToolCall(name="t1")], scores=scores)
    ThresholdPolicy(default=0.5, fallback_share=1.0).judge(every)
    assert every.fallback and every.fallback_tools == []
    broken = RoutingDecision(valid=False, scores=scores)
    policy.judge(broken)
    assert broken.fallback and broken.fallback_tools == []  # nothing trustworthy to rank by
    followed = RoutingDecision(tool_calls=[ToolCall(name="t1")], scores=scores)
    ThresholdPolicy(default=0.2).judge(followed)
    assert not followed.fallback and followed.fallback_tools == []
    assert "fallback_tools" in unsure.summary()


def test_turns_offering_tools_outside_the_users_follow_no_no_tool_and_keep_at_their_own_threshold():
    decoding = Decoding(tool_thresholds={NO_TOOL: 0.5}, keep_threshold=0.3, known_tools=["email", "docs"],
                        unseen_keep_threshold=0.01)
    policy = ThresholdPolicy.served(decoding)
    own = RoutingDecision(no_tool_score=0.9, scores={"email": 0.02, "docs": 0.01})
    policy.judge(own)
    assert not own.fallback  # the user's own tools: the fitted no-tool threshold holds
    other = RoutingDecision(no_tool_score=0.999, scores={"email": 0.02, "weather": 0.01})
    assert policy.judge(other) > 1 and other.fallback and other.fallback_reason == "unseen_tools"
    picked = RoutingDecision(tool_calls=[ToolCall(name="weather")], scores={"weather": 0.9, "email": 0.05})
    policy.judge(picked)
    assert not picked.fallback and picked.extra_tools == ["email"]  # 0.05 >= the unseen keep 0.01
    mine = RoutingDecision(tool_calls=[ToolCall(name="email")], scores={"email": 0.9, "docs": 0.05})
    policy.judge(mine)
    assert mine.extra_tools == []  # 0.05 < the user's keep 0.3
    # a caller's own no-tool threshold holds everywhere; so does a caller's keep threshold
    explicit = ThresholdPolicy.served(decoding, tool_thresholds={NO_TOOL: 0.99}, keep_threshold=0.5)
    other.fallback, other.fallback_reason = False, None
    explicit.judge(other)
    assert not other.fallback
    picked.extra_tools = []
    explicit.judge(picked)
    assert picked.extra_tools == []
    # no known tools (a general run, or a run from before): every turn is judged alike
    plain = ThresholdPolicy.served(Decoding(tool_thresholds={NO_TOOL: 0.5}))
    again = RoutingDecision(no_tool_score=0.999, scores={"email": 0.02, "weather": 0.01})
    plain.judge(again)
    assert not again.fallback


def test_the_unseen_side_is_fitted_on_the_turns_offering_other_tools_only():
    known = frozenset({"weather", "email", "docs", "ticket", "calendar"})
    own = [scored({"email"}, {"email"}, {"email": 0.9}) for _ in range(30)]
    other = [Scored(frozenset({"search"}), {"search": 0.9, "fetch": 0.2, "weather": 0.0}, 0.0,
                    frozenset({"search", "fetch"})) for _ in range(25)]
    side = fit_unseen_side(own + other, known)
    assert side.n == 25 and side.no_tool_threshold == NEVER
    assert side.keep_threshold == 0.2  # the highest grid value keeping "fetch" in every turn
    assert fit_unseen_side(own, known).keep_threshold is None  # no such turns: not fitted, and said so
    assert "keep not fitted" in fit_unseen_side(own, known).headline()
