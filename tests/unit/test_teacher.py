"""Teacher synthesis without a teacher: the reply parser, the request, and a teacher that is
not there (a closed loopback port). The real loopback teacher is in tests/integration/test_synth.py."""

from __future__ import annotations

from support import CUSTOM_TOOLS
from support.loopback_server import free_port

from openhoof_router.core.tools import normalize_tools
from openhoof_router.learning.data.teacher import build_request, make_teacher, parse_messages, synthesize


def test_parser_accepts_only_the_asked_json():
    assert parse_messages('<think>hmm</think>{"messages": ["a b c d e f", 3]}') == ["a b c d e f"]
    assert parse_messages("sure! here you go") is None
    assert parse_messages('{"messages": "not a list"}') is None
    roles = [role for role, _ in build_request(normalize_tools(CUSTOM_TOOLS), ("get_weather",), 4)]
    assert roles == ["system", "human"]


def test_unreachable_teacher_is_counted_not_fatal(paths):
    teacher = make_teacher(f"http://127.0.0.1:{free_port()}/v1", "nobody", max_tokens=16)
    report = synthesize(teacher, CUSTOM_TOOLS, 2, paths, progress=False, max_requests=2)
    assert report.added == 0 and report.failed_requests == 2
    assert not paths.synthetic_file.exists()
