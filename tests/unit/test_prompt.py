"""The one prompt format: rendering, earlier turns, verdict marks."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from openhoof_router.core.prompt import (
    clean_text,
    render_prompt,
    render_tool_block,
    render_tool_line,
    render_user_turn,
)
from openhoof_router.core.records import PastToolCall, PastTurn
from openhoof_router.core.tools import ToolError, ToolSpec, normalize_tools


def test_prompt_is_tool_block_plus_user_turn_plus_verdict_marks(builtin):
    prompt = render_prompt(builtin, "Check disk space")
    marks = "".join(f"{t.name}?" for t in builtin) + "none?"
    assert prompt == render_tool_block(builtin) + render_user_turn("Check disk space") + marks
    assert prompt.startswith("<start_of_turn>developer\n")
    assert prompt.endswith("<start_of_turn>user\nCheck disk space<end_of_turn>\n<start_of_turn>model\n" + marks)
    for tool in builtin:
        assert f"\n{tool.name}(" in prompt


def test_tool_block_depends_only_on_tools(builtin):
    assert render_tool_block(builtin) == render_tool_block(list(builtin))
    assert render_tool_block(builtin) != render_tool_block(builtin[:3])


def test_earlier_turns_are_real_turns_after_the_cached_block(builtin):
    context = [PastTurn(user="check disk space on prod", tools=[PastToolCall(name="exec", result="/dev/sda1 42%")],
                        reply="Prod is at 42%."),
               PastTurn(user="thanks\nbye", reply="")]
    turn = render_user_turn("what about staging?", context)
    assert turn == ("<start_of_turn>user\ncheck disk space on prod<end_of_turn>\n<start_of_turn>model\n"
                    "tools: exec -> /dev/sda1 42%\nassistant: Prod is at 42%.<end_of_turn>\n"
                    "<start_of_turn>user\nthanks bye<end_of_turn>\n<start_of_turn>model\n-<end_of_turn>\n"
                    "<start_of_turn>user\nwhat about staging?<end_of_turn>\n<start_of_turn>model\n")
    assert render_prompt(builtin, "what about staging?", context).startswith(render_tool_block(builtin))
    # append-only: the next message's prompt starts with this conversation's earlier turns
    assert turn.startswith(render_user_turn("check disk space on prod", [])[: -len("<start_of_turn>model\n")])
    assert render_user_turn("hi", []) == render_user_turn("hi")
    long = PastTurn(user="x" * 500, tools=[PastToolCall(name="exec", result="y" * 500)])
    assert len(render_user_turn("go", [long])) < 400  # earlier turns stay compact


def test_detail_levels_shorten_tool_lines():
    tool = ToolSpec(name="report", description="word " * 60, parameters=[f"p{i}" for i in range(12)])
    lines = [render_tool_line(tool, level) for level in range(4)]
    assert [len(line) for line in lines] == sorted((len(line) for line in lines), reverse=True)
    assert lines[-1] == "report" and "…" in lines[0]


def test_text_is_cleaned_for_the_model():
    assert clean_text("a\ud800b") == "a\ufffdb"  # a lone surrogate (json.loads makes them)
    assert clean_text("a\x00b\x1bc\u2028d") == "a b c d"
    assert clean_text("keeps\ttabs\nand newlines") == "keeps\ttabs\nand newlines"


def test_tool_list_validation():
    with pytest.raises(ToolError, match="empty"):
        normalize_tools([])
    with pytest.raises(ToolError, match="duplicate"):
        normalize_tools(["exec", "exec"])
    with pytest.raises(ToolError, match="reserved"):
        normalize_tools(["none"])
    for bad in ("bad name", "a,b", "tab\there", "", "x" * 129):
        with pytest.raises(ToolError, match="cannot be routed"):
            normalize_tools([{"name": bad}])


@given(st.lists(st.one_of(
    st.text(max_size=40),
    st.dictionaries(st.sampled_from(["name", "type", "function", "description", "parameters"]),
                    st.one_of(st.text(max_size=20), st.integers(), st.none(), st.lists(st.text(max_size=5)),
                              st.dictionaries(st.text(max_size=8), st.text(max_size=8), max_size=3))),
    st.integers(), st.none()), max_size=6))
def test_the_tool_normaliser_raises_only_tool_errors(tools):
    try:
        specs = normalize_tools(tools)
    except ToolError:
        return
    assert specs and len({s.name for s in specs}) == len(specs)


def test_odd_names_and_missing_descriptions_are_fine():
    specs = normalize_tools([{"name": "weather.get-forecast"}, {"name": "météo_du_jour"}, {"name": "a/b:c"},
                             {"name": "x", "description": "", "parameters": {"properties": {}}}])
    assert [s.name for s in specs] == ["weather.get-forecast", "météo_du_jour", "a/b:c", "x"]


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
