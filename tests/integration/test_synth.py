"""Teacher synthesis against a real OpenAI-compatible server on loopback.

The teacher here is llama-cpp-python's server over the embedded base (not Qwen3-8B), so its
messages are poor; the schema-constrained JSON it returns is real, which is what the
validation, deduplication and locked appends are tested on."""

from __future__ import annotations

from support import CUSTOM_TOOLS

from openhoof_router.store.jsonl import read_jsonl
from openhoof_router.core.records import TrainingRecord
from openhoof_router.learning.data.teacher import make_teacher, synthesize


def test_generate_for_custom_tools_against_loopback_teacher(server_url, paths):
    teacher = make_teacher(server_url, "gemma", temperature=1.0, max_tokens=160)
    report = synthesize(teacher, CUSTOM_TOOLS, 6, paths, per_request=3, seed=1, progress=False, max_requests=12)
    assert report.requests >= 1 and report.failed_requests == 0
    print(report)
    assert report.added >= 1  # schema-constrained JSON parses even from the small base
    saved = read_jsonl(paths.synthetic_file, TrainingRecord)
    assert saved.skipped == 0
    assert len(saved) == report.added
    for rec in saved:
        assert rec.metadata["source"] == "synthetic"
        assert set(rec.tool_names) <= {"get_weather", "book_table"}
        assert rec.input.tools == ["get_weather", "book_table"]
        assert 6 <= len(rec.input.user_message) <= 400
    texts = [r.input.user_message.lower() for r in saved]
    assert len(set(texts)) == len(texts)
    # a second round never re-adds what is there
    again = synthesize(teacher, CUSTOM_TOOLS, 3, paths, per_request=3, seed=1, progress=False, max_requests=3)
    assert len(read_jsonl(paths.synthetic_file, TrainingRecord)) == report.added + again.added
