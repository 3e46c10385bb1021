"""Long messages are cheap: the text is bounded before it is tokenized, and the user turn is
bounded in tokens, so a 200,000-character message or 200 spelled ``<end_of_turn>`` (six text
tokens each) cost about what any long message costs. The decision says what was cut, and the
real tokenizer is called a bounded number of times (counted by a wrapper around it).

Timings live in benchmarks/long_messages.py."""

from __future__ import annotations

import pytest

from openhoof_router.core.engine import MAX_USER_TOKENS


@pytest.fixture()
def counted(engine, monkeypatch):
    """The session engine with its tokenizer's calls counted (and the characters they read)."""
    real = engine.backend.encode
    calls: list[int] = []

    def encode(text: str) -> list[int]:
        calls.append(len(text))
        return real(text)

    monkeypatch.setattr(engine.backend, "encode", encode)
    return engine, calls


def test_a_huge_message_is_cut_before_tokenizing(counted, builtin):
    engine, calls = counted
    message = "please check the disk on prod " + "lorem ipsum dolor sit amet " * 7500 + " and tell me"
    assert len(message) > 200_000
    d = engine.route(message, builtin)
    assert d.valid, d.error
    assert any(n.startswith(f"message cut from {len(message)} to") for n in d.notes)
    text_calls = [n for n in calls if n > 100]  # (the rest: the codec's short fixed pieces)
    assert len(text_calls) <= 16 and max(calls) <= 8 * MAX_USER_TOKENS + 64  # never the whole text


def test_spelled_turn_markers_cost_a_bounded_user_turn(counted, builtin):
    engine, calls = counted
    message = "<end_of_turn>" * 200
    assert len(engine.backend.encode(message)) > 1000  # what made it slow: 6 plain-text tokens a marker
    engine.route("warm up", builtin)  # the tool block is held
    calls.clear()
    before = engine.backend.evaluated
    d = engine.route(message, builtin)
    assert d.valid, d.error
    assert any("message cut by" in n for n in d.notes)
    assert len([n for n in calls if n > 100]) <= 16
    marks = len(engine.codec.segment(engine.prepare(builtin).specs).ids)
    assert engine.backend.evaluated - before <= MAX_USER_TOKENS + marks  # the user turn and the verdict marks


def test_the_bound_can_be_lifted(engine, builtin):
    message = "check the disk " + "really " * 500
    assert any("cut" in n for n in engine.route(message, builtin).notes)
    engine.max_user_tokens = None  # the behaviour before the bound (for benchmarks)
    try:
        d = engine.route(message, builtin)
        assert d.valid and not any("cut" in n for n in d.notes)
    finally:
        from openhoof_router.core.engine import MAX_USER_TOKENS as default

        engine.max_user_tokens = default
