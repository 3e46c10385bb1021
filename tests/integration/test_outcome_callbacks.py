"""Outcome logging through a router over the real embedded model: the callback records real
LangChain tool runs against the router's decision, two agent runs keep their own decisions,
and an unwritable data folder fails at construction."""

from __future__ import annotations

import pytest
from langchain_core.runnables import RunnableLambda
from langchain_core.tools import ToolException, tool

from openhoof_router.langchain.runnable import ToolRouter
from openhoof_router.langchain.tracing import DECISION_ID_KEY, OutcomeCallbackHandler
from openhoof_router.store.jsonl import LogWriteError
from openhoof_router.store.logs import DecisionLog, OutcomeLog, read_joined


def test_unwritable_data_folder_is_a_clear_error_at_construction(tmp_path, engine):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(LogWriteError, match="cannot create log folder"):
        DecisionLog(data_dir=blocker / "data")
    with pytest.raises(LogWriteError):
        ToolRouter(["exec"], engine=engine, data_dir=blocker / "data")


# -- outcomes of real tool runs ------------------------------------------------------

@tool
def disk_usage(path: str) -> str:
    """Report the disk usage of a path."""
    return f"{path}: 42% used"


@tool
def restart_service(name: str) -> str:
    """Restart a system service."""
    raise RuntimeError(f"permission denied restarting {name}")


@tool
def flaky_lookup(key: str) -> str:
    """Look a key up (fails softly)."""
    raise ToolException(f"no entry {key}")


flaky_lookup.handle_tool_error = True  # the error comes back as a ToolMessage, status="error"


def test_callback_records_outcomes_of_real_tool_runs(tmp_path, engine):
    tools = [disk_usage, restart_service, flaky_lookup]
    router = ToolRouter(tools, engine=engine, data_dir=tmp_path, threshold=0)
    handler = router.outcome_callback()

    def agent_turn(message: str, config) -> str:
        decision = router.invoke(message, config)
        disk_usage.invoke({"path": "/var"}, config)
        try:
            restart_service.invoke({"name": "nginx"}, config)
        except RuntimeError:
            pass
        # As an agent runs it (a tool call): the handled error comes back with status="error".
        flaky_lookup.invoke({"type": "tool_call", "id": "c1", "name": "flaky_lookup", "args": {"key": "k"}}, config)
        return decision.decision_id

    decision_id = RunnableLambda(agent_turn).invoke("check the disk and restart nginx",
                                                    config={"callbacks": [handler]})
    got = [(o.decision_id, o.kind, o.tool) for o in OutcomeLog(data_dir=tmp_path).read()]
    assert got == [(decision_id, "tool_end", "disk_usage"), (decision_id, "tool_error", "restart_service"),
                   (decision_id, "tool_error", "flaky_lookup")]
    outcomes = OutcomeLog(data_dir=tmp_path).read().records
    assert "42% used" in outcomes[0].detail and "permission denied" in outcomes[1].detail
    assert handler.recorded == 3 and handler.unmatched == 0
    joined = read_joined(data_dir=tmp_path).by_id()[decision_id]
    assert joined.status == "tool_error" and len(joined.outcomes) == 3

    # Outside the router's run: the metadata key names the decision; nothing names it: unmatched.
    disk_usage.invoke({"path": "/"}, {"callbacks": [handler], "metadata": {DECISION_ID_KEY: "d-explicit"}})
    disk_usage.invoke({"path": "/"}, {"callbacks": [handler]})
    assert OutcomeLog(data_dir=tmp_path).read().records[-1].decision_id == "d-explicit"
    assert handler.unmatched == 1


def test_two_agent_runs_keep_their_own_decisions(tmp_path, engine):
    router = ToolRouter([disk_usage, restart_service], engine=engine, data_dir=tmp_path, threshold=0)
    handler = OutcomeCallbackHandler(data_dir=str(tmp_path))

    def turn(message: str, config) -> str:
        decision = router.invoke(message, config)
        disk_usage.invoke({"path": message}, config)
        return decision.decision_id

    chain = RunnableLambda(turn)
    first, second = chain.batch(["disk of /a", "disk of /b"], config={"callbacks": [handler]})
    by_detail = {o.detail.split(":")[0]: o.decision_id for o in OutcomeLog(data_dir=tmp_path).read()}
    assert by_detail == {"disk of /a": first, "disk of /b": second}
