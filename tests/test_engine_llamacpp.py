"""Real routing through llama.cpp with the embedded base model (structure, not accuracy)."""

from __future__ import annotations

import pytest

from openhoof_router.backends import BackendError, load_backend
from openhoof_router.base_model import BaseModelError, resolve_base_model
from openhoof_router.decoding import AnswerVocabulary
from openhoof_router.tools import ToolError

MESSAGES = [
    "Check disk space on the server",
    "remember that the deploy moved to friday",
    "thanks, that's all for today",
    "has any agent written up the redis outage? tell me what they found",
    "what can you do?",
]


def test_embedded_base_is_verified(base_ref):
    assert base_ref.gguf.exists()
    assert base_ref.sha256.startswith("a5fd3b62")
    assert base_ref.gguf.stat().st_size > 200_000_000


def test_decisions_are_structured_and_valid(engine, builtin):
    names = {t.name for t in builtin}
    for message in MESSAGES:
        d = engine.route(message, builtin)
        assert d.valid, d.error
        assert set(d.tool_names) <= names
        assert len(d.tool_names) == len(set(d.tool_names)) <= engine.max_tools
        assert 0.0 <= d.confidence <= 1.0
        assert d.latency_ms > 0
        assert d.backend == "llama.cpp" and d.model.startswith("gemma-3-270m")
        assert d.raw.endswith("<end_of_turn>")


def test_cached_path_matches_uncached(engine, builtin):
    subset = builtin[:4]
    for message in MESSAGES:
        for tools in (builtin, subset, builtin):  # switching tool lists restores saved states
            cached = engine.route(message, tools, use_cache=True)
            fresh = engine.route(message, tools, use_cache=False)
            assert cached.tool_names == fresh.tool_names
            assert cached.raw == fresh.raw
            assert cached.confidence == pytest.approx(fresh.confidence, rel=1e-3, abs=1e-9)


def test_only_offered_names_come_out(engine):
    d = engine.route("restart nginx and tell me when done", ["notify"])
    assert d.valid and set(d.tool_names) <= {"notify"}


def test_answer_tokens_concatenate_like_the_full_answer(engine, builtin):
    """Training tokenizes the answer text whole; decoding walks pieces. They must agree."""
    from openhoof_router.prompt import render_answer

    b = engine.backend
    vocab = AnswerVocabulary.build(b, [t.name for t in builtin])
    for combo in (["exec"], ["shared_search", "notify"], ["memory_write", "list_tools"], []):
        pieces = []
        for i, name in enumerate(combo):
            pieces += list(vocab.sep_ids) if i else []
            pieces += list(vocab.name_ids[name])
        pieces += list(vocab.none_ids if not combo else ()) + list(vocab.end_ids)
        assert b.tokenize(render_answer(combo)) == pieces


def test_long_message_falls_back_not_crashes(engine, builtin):
    d = engine.route("disk " * 5000, builtin)
    assert not d.valid and "too long" in d.error
    assert engine.route("check disk space", builtin).valid  # still serving


def test_bad_tool_lists_raise_clear_errors(engine):
    with pytest.raises(ToolError, match="empty"):
        engine.route("hi", [])
    with pytest.raises(ToolError, match="duplicate"):
        engine.route("hi", ["exec", "exec"])


def test_missing_and_corrupt_models(tmp_path, home):
    with pytest.raises(BaseModelError, match="not found"):
        resolve_base_model(tmp_path / "nope.gguf")
    corrupt = tmp_path / "corrupt.gguf"
    corrupt.write_bytes(b"GGUF" + b"\x00" * 1000)
    with pytest.raises(BackendError, match="could not load"):
        load_backend("llama.cpp", base_model=corrupt)
    with pytest.raises(BackendError):
        load_backend("llama.cpp", model=corrupt)
    with pytest.raises(BackendError, match="unknown backend"):
        load_backend("tpu")
