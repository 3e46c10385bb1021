"""The decision and outcome logs that close the retraining loop, and the join between them.

``training_data.jsonl`` gets one line per routing decision, in the seed's record format
(:class:`~openhoof_router.core.records.TrainingRecord`, ``metadata.source == "live"``), with the
decision id, time, model/adapter, latency, confidence, mode and fallback in ``metadata``.
``outcomes.jsonl`` gets :class:`~openhoof_router.core.records.OutcomeRecord` lines that refer to
a decision by id: tools that ran after it (ok / error) and explicit feedback (confirm,
correct). Both files are appended under a file lock (:func:`~openhoof_router.store.jsonl.append_jsonl`)
and read leniently (bad lines are skipped and counted).
"""

from __future__ import annotations

import dataclasses
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Literal, Sequence

from pydantic import BaseModel, Field

from openhoof_router.store.jsonl import SYNCER, ReadResult, append_jsonl, ensure_writable, read_jsonl
from openhoof_router.store.paths import Paths
from openhoof_router.core.records import (
    NO_TOOL,
    DecisionMetadata,
    LoggedDecision,
    OutcomeRecord,
    PastTurn,
    RoutingDecision,
)
from openhoof_router.core.tools import ToolSpec, needs_schemas

logger = logging.getLogger(__name__)

LIVE_SOURCE = "live"
DEFAULT_MAX_MESSAGE_CHARS = 4000
DEFAULT_MAX_DETAIL_CHARS = 500


def resolve_paths(
    paths: Paths | None = None, data_dir: str | os.PathLike[str] | None = None
) -> Paths:
    """``paths`` (or the environment's defaults) with ``data_dir`` overriding its data folder."""
    if paths is None:
        return Paths.resolve(data_dir=data_dir)
    return dataclasses.replace(paths, data_dir=Path(data_dir).expanduser()) if data_dir else paths


def _cap(text: str, limit: int | None) -> tuple[str, bool]:
    if limit is None or len(text) <= limit:
        return text, False
    return text[:limit], True


class DecisionLog:
    """Appends every routing decision to ``training_data.jsonl`` (file-locked, one line each).

    Args:
        paths: folders to use (default: arguments, then ``OPENHOOF_DATA_DIR`` /
            ``OPENHOOF_HOME``, then ``~/.openhoof``).
        data_dir: overrides the data folder only.
        enabled: ``False`` writes nothing (and checks nothing).
        max_message_chars: longer messages are cut to this many characters in the log
            (``metadata.truncated`` says so); ``None`` keeps them whole.
        tool_schemas: also store the offered tools' OpenAI schemas in ``input.tool_schemas``;
            ``"auto"`` does so only when a tool is not one of the built-in catalog's.

    Raises:
        LogWriteError: at construction, when the data folder cannot be created or written.
    """

    def __init__(
        self,
        paths: Paths | None = None,
        *,
        data_dir: str | os.PathLike[str] | None = None,
        enabled: bool = True,
        max_message_chars: int | None = DEFAULT_MAX_MESSAGE_CHARS,
        tool_schemas: bool | Literal["auto"] = "auto",
    ) -> None:
        if max_message_chars is not None and max_message_chars < 1:
            raise ValueError("max_message_chars must be positive (or None for no cap)")
        self.paths = resolve_paths(paths, data_dir)
        self.enabled = enabled
        self.max_message_chars = max_message_chars
        self.tool_schemas = tool_schemas
        self.failures = 0
        """Appends that failed at run time (logged as warnings, never raised)."""
        if enabled:
            ensure_writable(self.paths.data_dir)

    @property
    def path(self) -> Path:
        return self.paths.decisions_file

    def make_record(
        self,
        decision: RoutingDecision,
        message: str,
        tools: Sequence[ToolSpec],
        *,
        mode: str,
        threshold: float | None = None,
        context: Sequence[PastTurn] = (),
        turn_key: str | None = None,
    ) -> LoggedDecision:
        """The log line for ``decision`` (not written)."""
        text, truncated = _cap(message, self.max_message_chars)
        names = [t.name for t in tools]
        metadata = DecisionMetadata(
            tool=",".join(decision.tool_names) or NO_TOOL,
            decision_id=decision.decision_id,
            model=decision.model,
            adapter=decision.adapter,
            backend=decision.backend,
            latency_ms=round(decision.latency_ms, 3),
            confidence=decision.confidence,
            scores=decision.scores,
            no_tool_score=decision.no_tool_score,
            threshold=threshold,
            mode=mode,
            valid=decision.valid,
            fallback=decision.fallback,
            fallback_reason=decision.fallback_reason,
            error=decision.error,
            notes=decision.notes,
            truncated=truncated,
            turn_key=turn_key,
        )
        schemas = None
        if self.tool_schemas is True or (self.tool_schemas == "auto" and needs_schemas(tools)):
            schemas = [t.openai_schema() for t in tools]
        return LoggedDecision.make(text, names, decision.tool_names, LIVE_SOURCE,
                                   context=list(context)[-decision.context_turns:] if decision.context_turns else [],
                                   tool_schemas=schemas, **metadata.model_dump(exclude={"source", "tool"}))

    def record(self, decision: RoutingDecision, message: str, tools: Sequence[ToolSpec],
               **line: Any) -> LoggedDecision | None:
        """Append ``decision`` (``line``: as for :meth:`make_record`); returns the record written
        (None when disabled or on failure). A failing disk never fails the caller's turn: the
        error is logged and counted."""
        if not self.enabled:
            return None
        record = self.make_record(decision, message, tools, **line)
        try:
            append_jsonl(self.path, record)
        except OSError as exc:
            self.failures += 1
            logger.warning("could not log routing decision %s to %s: %s",
                           decision.decision_id, self.path, exc)
            return None
        return record

    def close(self) -> None:
        """Wait until every decision written so far is on disk."""
        SYNCER.flush()

    def read(self) -> ReadResult:
        """All good decision records; ``skipped`` counts bad lines."""
        return read_jsonl(self.path, LoggedDecision)


class OutcomeLog:
    """Appends outcomes (tool ran ok / failed, confirm, correct) to ``outcomes.jsonl``.

    Arguments as for :class:`DecisionLog`; ``max_detail_chars`` caps the stored tool output
    or error text.
    """

    def __init__(
        self,
        paths: Paths | None = None,
        *,
        data_dir: str | os.PathLike[str] | None = None,
        enabled: bool = True,
        max_detail_chars: int | None = DEFAULT_MAX_DETAIL_CHARS,
    ) -> None:
        self.paths = resolve_paths(paths, data_dir)
        self.enabled = enabled
        self.max_detail_chars = max_detail_chars
        if enabled:
            ensure_writable(self.paths.data_dir)

    @property
    def path(self) -> Path:
        return self.paths.outcomes_file

    def record(self, outcome: OutcomeRecord) -> OutcomeRecord:
        """Append one outcome (raises ``OSError`` if it cannot be written)."""
        if outcome.detail is not None:
            outcome = outcome.model_copy(update={"detail": _cap(outcome.detail, self.max_detail_chars)[0]})
        if self.enabled:
            append_jsonl(self.path, outcome)
        return outcome

    def tool_end(self, decision_id: str, tool: str, detail: str | None = None, **extra: Any) -> OutcomeRecord:
        """A tool ran successfully after ``decision_id``."""
        return self.record(OutcomeRecord(decision_id=decision_id, kind="tool_end", tool=tool,
                                         detail=detail, **extra))

    def tool_error(self, decision_id: str, tool: str, detail: str | None = None, **extra: Any) -> OutcomeRecord:
        """A tool failed after ``decision_id``."""
        return self.record(OutcomeRecord(decision_id=decision_id, kind="tool_error", tool=tool,
                                         detail=detail, **extra))

    def confirm(self, decision_id: str, detail: str | None = None) -> OutcomeRecord:
        """A person (or a check) says the decision was right."""
        return self.record(OutcomeRecord(decision_id=decision_id, kind="confirm", detail=detail))

    def correct(self, decision_id: str, tools: Iterable[str], detail: str | None = None) -> OutcomeRecord:
        """The right tool set for ``decision_id`` (an empty list: no tool was needed)."""
        names = [t for t in tools if t.lower() != NO_TOOL]
        return self.record(OutcomeRecord(decision_id=decision_id, kind="correct",
                                         correct_tools=names, detail=detail))

    def read(self) -> ReadResult:
        return read_jsonl(self.path, OutcomeRecord)


# -- the join ------------------------------------------------------------------------------

Status = Literal["corrected", "confirmed", "tools_ok", "tool_error", "pending"]


class JoinedDecision(BaseModel):
    """One logged decision with every outcome that refers to it."""

    decision: LoggedDecision
    outcomes: list[OutcomeRecord] = Field(default_factory=list)

    @property
    def decision_id(self) -> str:
        return self.decision.metadata.decision_id

    @property
    def status(self) -> Status:
        kinds = [o.kind for o in self.outcomes]
        if any(o.kind == "correct" and o.correct_tools is not None for o in self.outcomes):
            return "corrected"
        if "confirm" in kinds:
            return "confirmed"
        if "tool_error" in kinds:
            return "tool_error"
        return "tools_ok" if kinds else "pending"

    @property
    def label(self) -> list[str] | None:
        """The tool set this decision teaches, or None when nothing vouches for one.

        A correction wins; an explicit confirmation vouches for the router's own choice,
        unless the caller did not follow it (fallback / invalid). Tool runs alone do not:
        in ``narrow`` mode the reasoner could only run what the router offered, so a
        successful run says nothing about whether the choice was right.
        """
        corrections = [o for o in self.outcomes if o.kind == "correct" and o.correct_tools is not None]
        if corrections:
            return list(corrections[-1].correct_tools or [])
        if any(o.kind == "confirm" for o in self.outcomes):
            if self.decision.metadata.fallback or not self.decision.metadata.valid:
                return None
            return self.decision.tool_names
        return None


@dataclass
class JoinResult:
    items: list[JoinedDecision] = field(default_factory=list)
    orphans: list[OutcomeRecord] = field(default_factory=list)
    """Outcomes whose decision is not in the decision log."""
    skipped_decisions: int = 0
    skipped_outcomes: int = 0

    def by_id(self) -> dict[str, JoinedDecision]:
        return {j.decision_id: j for j in self.items}


def join_logs(decisions: Iterable[LoggedDecision], outcomes: Iterable[OutcomeRecord]) -> JoinResult:
    """Attach outcomes to decisions by ``decision_id`` (decision order kept)."""
    result = JoinResult()
    index: dict[str, JoinedDecision] = {}
    for rec in decisions:
        joined = JoinedDecision(decision=rec)
        result.items.append(joined)
        index[joined.decision_id] = joined
    for outcome in outcomes:
        target = index.get(outcome.decision_id)
        if target is None:
            result.orphans.append(outcome)
        else:
            target.outcomes.append(outcome)
    return result


def read_joined(paths: Paths | None = None, *, data_dir: str | os.PathLike[str] | None = None) -> JoinResult:
    """Read both logs of a data folder and join them; bad lines are skipped and counted."""
    paths = resolve_paths(paths, data_dir)
    decisions = read_jsonl(paths.decisions_file, LoggedDecision)
    outcomes = read_jsonl(paths.outcomes_file, OutcomeRecord)
    result = join_logs(decisions, outcomes)
    result.skipped_decisions, result.skipped_outcomes = decisions.skipped, outcomes.skipped
    return result
