"""The one prompt format: rendering and the never-raising parser."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, strategies as st

from openhoof_router.prompt import (
    END,
    NO_TOOL,
    parse_answer,
    render_answer,
    render_prompt,
    render_tool_block,
    render_user_turn,
)
from openhoof_router.tools import ToolError, ToolSpec, normalize_tools

NAMES = ["memory_write", "memory_read", "shared_search", "notify", "exec", "list_tools"]


def test_prompt_is_tool_block_plus_user_turn(builtin):
    prompt = render_prompt(builtin, "Check disk space")
    assert prompt == render_tool_block(builtin) + render_user_turn("Check disk space")
    assert prompt.startswith("<start_of_turn>developer\n")
    assert prompt.endswith("<start_of_turn>user\nCheck disk space<end_of_turn>\n<start_of_turn>model\n")
    for tool in builtin:
        assert f"\n{tool.name}(" in prompt


def test_tool_block_depends_only_on_tools(builtin):
    assert render_tool_block(builtin) == render_tool_block(list(builtin))
    assert render_tool_block(builtin) != render_tool_block(builtin[:3])


@pytest.mark.parametrize("names", [[], ["exec"], ["shared_search", "notify"], ["memory_read", "exec", "notify"]])
def test_answer_round_trip(names):
    parsed = parse_answer(render_answer(names), NAMES)
    assert parsed.valid and parsed.error is None
    assert [c.name for c in parsed.tool_calls] == names


def test_no_tool_answer():
    assert render_answer([]) == NO_TOOL + END
    parsed = parse_answer("none<end_of_turn>", NAMES)
    assert parsed.valid and parsed.tool_calls == []


def test_unknown_name_never_comes_out():
    parsed = parse_answer("exec,rm_rf_everything<end_of_turn>", NAMES)
    assert not parsed.valid
    assert [c.name for c in parsed.tool_calls] == ["exec"]
    assert "rm_rf_everything" in parsed.error


@pytest.mark.parametrize(
    "raw",
    ["", "   ", "<end_of_turn>", "{\"tool_calls\": [{\"name\": \"exec\"", "[[[", "exec{\"command\": ", "!!! ???",
     "{\"tool_calls\": 5}", "{\"tool_calls\": [{\"arguments\": {}}]}"],
)
def test_garbage_is_invalid_not_an_exception(raw):
    parsed = parse_answer(raw, NAMES)
    assert not parsed.valid
    assert parsed.error


def test_other_answer_forms():
    as_json = json.dumps({"tool_calls": [{"name": "exec", "arguments": {"command": "df -h"}}]})
    parsed = parse_answer(as_json, NAMES)
    assert parsed.valid and parsed.tool_calls[0].arguments == {"command": "df -h"}
    fg = "<start_function_call>call:notify{title:<escape>Disk<escape>,message:<escape>full<escape>}<end_function_call>"
    parsed = parse_answer(fg, NAMES)
    assert parsed.valid and parsed.tool_calls[0].name == "notify"
    assert parsed.tool_calls[0].arguments == {"title": "Disk", "message": "full"}
    parsed = parse_answer('exec{"command": "uptime"},notify', NAMES)
    assert [c.name for c in parsed.tool_calls] == ["exec", "notify"]
    assert parsed.tool_calls[0].arguments == {"command": "uptime"}


@given(st.text(max_size=200))
def test_parser_never_raises_and_only_offers_known_names(raw):
    parsed = parse_answer(raw, NAMES)
    assert all(c.name in NAMES for c in parsed.tool_calls)


def test_tool_list_validation():
    with pytest.raises(ToolError, match="empty"):
        normalize_tools([])
    with pytest.raises(ToolError, match="duplicate"):
        normalize_tools(["exec", "exec"])
    with pytest.raises(ToolError, match="reserved"):
        normalize_tools(["none"])
    with pytest.raises(ToolError, match="valid identifier"):
        normalize_tools([{"name": "bad name"}])


def test_tool_forms_agree(builtin):
    from langchain_core.tools import tool

    @tool
    def exec(command: str) -> str:
        """Run a shell command on the host and return its output."""
        return command

    from_lc = normalize_tools([exec])[0]
    from_schema = next(t for t in builtin if t.name == "exec")
    from_name = normalize_tools(["exec"])[0]
    assert from_lc.name == from_schema.name == from_name.name == "exec"
    assert from_name.description == from_schema.description
    assert "command" in from_lc.parameters
    assert isinstance(normalize_tools([ToolSpec(name="x")])[0], ToolSpec)


def test_bundled_tools_match_shared_copy(builtin):
    from conftest import SHARED

    shared = SHARED / "openhoof_tools.json"
    if not shared.exists():
        pytest.skip("../shared not beside the checkout")
    assert [t["function"]["name"] for t in json.loads(shared.read_text())] == [t.name for t in builtin]
