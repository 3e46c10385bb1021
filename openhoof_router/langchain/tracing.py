"""How routing decisions show in a LangChain / LangGraph run, and outcome logging from inside it.

Each decision is a child run (:data:`DECISION_RUN`, :func:`trace_decision`) whose metadata is
the decision's summary, and a delegated reply carries the same summary in
``response_metadata[METADATA_KEY]`` (:func:`annotate`, read back with :func:`decision_info`).

Attach :class:`OutcomeCallbackHandler` to the agent run (``config={"callbacks": [handler]}``).
It writes one :class:`~openhoof_router.core.records.OutcomeRecord` per tool that finishes
(``tool_end``) or fails (``tool_error``) to ``outcomes.jsonl``, tagged with the routing
decision the tool belongs to. The decision is found, in this order, through:

1. the tool run's metadata key :data:`DECISION_ID_KEY` (set it yourself when you run tools
   outside the router's run: ``tool.invoke(args, {"metadata": {DECISION_ID_KEY: id}})``);
2. run ids: the router (Runnable, middleware, LangGraph node) records every decision as a
   child run named :data:`DECISION_RUN` (:func:`trace_decision`), with the decision id,
   tools, scores, confidence, latency and model in its metadata, so LangSmith-style
   tracers show it; the handler ties the decision to that run's ancestors, and a later
   tool run under the same ancestor (the same chain or agent invocation) takes the most
   recent such decision;
3. ``default_decision_id``, when set.

Tools with no decision are counted in ``unmatched`` and not logged.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.messages import BaseMessage
from langchain_core.runnables import RunnableConfig, RunnableLambda

from openhoof_router.core.records import RoutingDecision
from openhoof_router.store.logs import OutcomeLog
from openhoof_router.store.paths import Paths

logger = logging.getLogger(__name__)

DECISION_RUN = "openhoof_route"
"""Name of the child run that records each routing decision in the callback tree."""
TRACE_PREFIX = "openhoof_"
"""Prefix of the decision's summary keys in run metadata (flat keys, so tracers can filter)."""
DECISION_ID_KEY = TRACE_PREFIX + "decision_id"
"""Run-metadata key naming the decision a run belongs to (the decision run, tool runs)."""
METADATA_KEY = "openhoof_router"
"""Key of the routing summary in a delegated reply's ``response_metadata``."""


def decision_metadata(decision: RoutingDecision, mode: str) -> dict[str, Any]:
    """What a trace shows of a decision (the decision run's metadata and output): its
    :meth:`~openhoof_router.core.records.RoutingDecision.summary` and mode, keys prefixed."""
    return {TRACE_PREFIX + key: value for key, value in decision.summary(mode=mode).items()}


def reply_summary(decision: RoutingDecision, mode: str, sent: Sequence[str]) -> dict[str, Any]:
    """The routing summary put on replies (``response_metadata["openhoof_router"]``): the
    decision's summary, the mode and the names of the tools sent to the reasoner."""
    return decision.summary(mode=mode, sent_tools=list(sent))


def annotate(message: Any, info: dict[str, Any]) -> Any:
    """``message`` with ``info`` under :data:`METADATA_KEY` in its ``response_metadata``."""
    if isinstance(message, BaseMessage):
        message.response_metadata[METADATA_KEY] = info
    return message


def decision_info(message: BaseMessage) -> dict[str, Any] | None:
    """The routing summary a router put on a reply (:func:`reply_summary`: decision id,
    selected and sent tools, scores, confidence, fallback, model, ...)."""
    return (getattr(message, "response_metadata", None) or {}).get(METADATA_KEY)


_RECORDER = RunnableLambda(lambda payload: payload, name=DECISION_RUN)


def _decision_config(config: RunnableConfig | None, meta: dict[str, Any]) -> RunnableConfig:
    out: dict[str, Any] = dict(config or {})
    out["metadata"] = {**(out.get("metadata") or {}), **meta}
    out.pop("run_name", None)
    out.pop("run_id", None)
    return out  # type: ignore[return-value]  # a plain dict with RunnableConfig's keys


def trace_decision(decision: RoutingDecision, config: RunnableConfig | None, mode: str) -> None:
    """Record ``decision`` as a child run of the run ``config`` belongs to."""
    meta = decision_metadata(decision, mode)
    _RECORDER.invoke(meta, _decision_config(config, meta))


async def atrace_decision(decision: RoutingDecision, config: RunnableConfig | None, mode: str) -> None:
    meta = decision_metadata(decision, mode)
    await _RECORDER.ainvoke(meta, _decision_config(config, meta))


def _detail(output: Any) -> str:
    content = getattr(output, "content", output)  # ToolMessage → its content
    return content if isinstance(content, str) else repr(content)


class OutcomeCallbackHandler(BaseCallbackHandler):
    """Records tool outcomes after routing decisions into ``outcomes.jsonl``.

    Args:
        log: where to write (default: an :class:`OutcomeLog` over ``paths`` / ``data_dir``).
        default_decision_id: used for tool runs no decision can be found for.
        max_runs: how many run ids to remember (oldest forgotten first).
    """

    raise_error = False  # an outcome that cannot be written must not break the agent

    def __init__(
        self,
        log: OutcomeLog | None = None,
        *,
        paths: Paths | None = None,
        data_dir: str | None = None,
        default_decision_id: str | None = None,
        max_runs: int = 10_000,
    ) -> None:
        super().__init__()
        self.log = log or OutcomeLog(paths, data_dir=data_dir)
        self.default_decision_id = default_decision_id
        self.max_runs = max_runs
        self.recorded = 0
        self.unmatched = 0
        self.failures = 0
        self._lock = threading.Lock()
        self._parents: OrderedDict[UUID, UUID | None] = OrderedDict()
        self._decision_at: OrderedDict[UUID, str] = OrderedDict()
        self._pending: dict[UUID, tuple[str, str | None]] = {}

    # -- the run tree --------------------------------------------------------------------
    def _remember(self, run_id: UUID, parent_run_id: UUID | None) -> None:
        with self._lock:
            self._parents[run_id] = parent_run_id
            while len(self._parents) > self.max_runs:
                self._parents.popitem(last=False)

    def _lineage(self, run_id: UUID | None) -> list[UUID]:
        out, seen = [], set()
        while run_id is not None and run_id not in seen:
            out.append(run_id)
            seen.add(run_id)
            run_id = self._parents.get(run_id)
        return out

    def _find_decision(self, run_id: UUID) -> str | None:
        with self._lock:
            for rid in self._lineage(run_id):
                if rid in self._decision_at:
                    return self._decision_at[rid]
        return None

    def on_chain_start(self, serialized: Any, inputs: Any, *, run_id: UUID, parent_run_id: UUID | None = None,
                       metadata: dict[str, Any] | None = None, **kwargs: Any) -> None:
        self._remember(run_id, parent_run_id)
        decision_id = (metadata or {}).get(DECISION_ID_KEY)
        if kwargs.get("name") == DECISION_RUN and decision_id:
            with self._lock:
                for rid in self._lineage(parent_run_id):  # the router's run and everything above it
                    self._decision_at[rid] = decision_id
                    self._decision_at.move_to_end(rid)
                while len(self._decision_at) > self.max_runs:
                    self._decision_at.popitem(last=False)

    def on_chat_model_start(self, serialized: Any, messages: Any, *, run_id: UUID,
                            parent_run_id: UUID | None = None, **kwargs: Any) -> None:
        self._remember(run_id, parent_run_id)

    def on_llm_start(self, serialized: Any, prompts: Any, *, run_id: UUID,
                     parent_run_id: UUID | None = None, **kwargs: Any) -> None:
        self._remember(run_id, parent_run_id)

    # -- tools -----------------------------------------------------------------------------
    def on_tool_start(self, serialized: Any, input_str: str, *, run_id: UUID,
                      parent_run_id: UUID | None = None, metadata: dict[str, Any] | None = None,
                      **kwargs: Any) -> None:
        self._remember(run_id, parent_run_id)
        name = (serialized or {}).get("name") or kwargs.get("name") or "unknown"
        decision_id = (metadata or {}).get(DECISION_ID_KEY) or self._find_decision(run_id) \
            or self.default_decision_id
        with self._lock:
            self._pending[run_id] = (name, decision_id)

    def _finish(self, run_id: UUID, kind: str, detail: str) -> None:
        with self._lock:
            name, decision_id = self._pending.pop(run_id, ("unknown", None))
            if decision_id is None:
                self.unmatched += 1
                return
        try:
            if kind == "tool_end":
                self.log.tool_end(decision_id, name, detail)
            else:
                self.log.tool_error(decision_id, name, detail)
        except OSError as exc:
            with self._lock:
                self.failures += 1
            logger.warning("could not log the outcome of tool %s: %s", name, exc)
            return
        with self._lock:
            self.recorded += 1

    def on_tool_end(self, output: Any, *, run_id: UUID, **kwargs: Any) -> None:
        # A tool that handled its own error (ToolException) ends "successfully"; when it was
        # run as a tool call (as agents do) its ToolMessage says status="error".
        failed = getattr(output, "status", None) == "error"
        self._finish(run_id, "tool_error" if failed else "tool_end", _detail(output))

    def on_tool_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        self._finish(run_id, "tool_error", f"{type(error).__name__}: {error}")
