"""The decision and outcome logs that close the retraining loop (their join:
:mod:`openhoof_router.store.log_join`, re-exported here).

``training_data.jsonl`` gets one line per routing decision, in the seed's record format
(:class:`~openhoof_router.core.records.TrainingRecord`, ``metadata.source`` ``LIVE_SOURCE``),
with the decision's summary (:meth:`~openhoof_router.core.records.RoutingDecision.summary`:
id, model, latency, scores, fallback, ...), time, mode and threshold in ``metadata``.
``outcomes.jsonl`` gets :class:`~openhoof_router.core.records.OutcomeRecord` lines that refer to
a decision by id: tools that ran after it (ok / error) and explicit feedback (confirm,
correct). Both files are appended under a file lock (:func:`~openhoof_router.store.jsonl.append_jsonl`)
and read leniently (bad lines are skipped and counted).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from openhoof_router.core.records import (
    LIVE_SOURCE,
    NO_TOOL,
    DecisionMetadata,
    LoggedDecision,
    OutcomeRecord,
    PastTurn,
    RoutingDecision,
)
from openhoof_router.core.tools import ToolSpec
from openhoof_router.store.jsonl import SYNCER, ReadResult, append_jsonl, ensure_writable, read_jsonl
from openhoof_router.store.log_join import JoinedDecision, JoinResult, join_logs, read_joined  # noqa: F401
from openhoof_router.store.paths import Paths, resolve_paths
from openhoof_router.store.toolsets import TOOLSETS_DIR, ToolsetStore, read_decisions

logger = logging.getLogger(__name__)

DEFAULT_MAX_MESSAGE_CHARS = 4000
DEFAULT_MAX_DETAIL_CHARS = 500
LOGGED_SCORES = 16
"""Most per-tool scores a decision line keeps (the highest, and every selected tool's):
with the tool list stored by hash, a line's size does not grow with the tools offered."""


def _cap(text: str, limit: int | None) -> tuple[str, bool]:
    if limit is None or len(text) <= limit:
        return text, False
    return text[:limit], True


def _cap_turn(turn: PastTurn, limit: int | None) -> PastTurn:
    if limit is None or all(len(t) <= limit for t in (turn.user, turn.reply, *(c.result for c in turn.tools))):
        return turn
    return PastTurn(user=turn.user[:limit], reply=turn.reply[:limit],
                    tools=[c.model_copy(update={"result": c.result[:limit]}) for c in turn.tools])


class DecisionLog:
    """Appends every routing decision to ``training_data.jsonl`` (file-locked, one line each).

    Args:
        paths: folders to use (default: arguments, then ``OPENHOOF_DATA_DIR`` /
            ``OPENHOOF_HOME``, then ``~/.openhoof``).
        data_dir: overrides the data folder only.
        enabled: ``False`` writes nothing (and checks nothing).
        max_message_chars: longer messages (and each earlier turn's texts) are cut to this
            many characters in the log (``metadata.truncated`` says so); ``None`` keeps them whole.

    Each line names its tool list by hash (``input.toolset``); the list itself is stored
    once in ``toolsets/`` beside the log (:mod:`~openhoof_router.store.toolsets`), and
    :meth:`read` / :func:`read_joined` fill ``tools`` and ``tool_schemas`` back in.

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
    ) -> None:
        if max_message_chars is not None and max_message_chars < 1:
            raise ValueError("max_message_chars must be positive (or None for no cap)")
        self.paths = resolve_paths(paths, data_dir)
        self.enabled = enabled
        self.max_message_chars = max_message_chars
        self.toolsets = ToolsetStore(self.paths.data_dir / TOOLSETS_DIR)
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
        """The log line for ``decision`` (not written; stores the tool list if it is new)."""
        limit = self.max_message_chars
        text, truncated = _cap(message, limit)
        turns = list(context)[-decision.context_turns:] if decision.context_turns else []
        capped = [_cap_turn(t, limit) for t in turns]  # so no line grows with the conversation
        truncated = truncated or any(a is not b for a, b in zip(capped, turns, strict=True))
        metadata = DecisionMetadata.of(decision, threshold=threshold, mode=mode, turn_key=turn_key, truncated=truncated)
        metadata.scores = top_scores(decision.scores, decision.tool_names)
        return LoggedDecision.make(text, [], decision.tool_names, LIVE_SOURCE, context=capped,
                                   toolset=self.toolsets.put(tools), **metadata.model_dump(exclude={"source", "tool"}))

    def record(self, decision: RoutingDecision, message: str, tools: Sequence[ToolSpec],
               **line: Any) -> LoggedDecision | None:
        """Append ``decision`` (``line``: as for :meth:`make_record`); returns the record written
        (None when disabled or on failure). A failing disk never fails the caller's turn: the
        error is logged and counted."""
        if not self.enabled:
            return None
        try:
            record = self.make_record(decision, message, tools, **line)
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
        """All good decision records, tool lists filled in; ``skipped`` counts bad lines."""
        return read_decisions(self.path)


def top_scores(scores: dict[str, float], selected: Sequence[str], limit: int = LOGGED_SCORES) -> dict[str, float]:
    """The ``limit`` highest of ``scores``, plus those of the ``selected`` tools."""
    if len(scores) <= limit:
        return dict(scores)
    kept = set(sorted(scores, key=scores.__getitem__, reverse=True)[:limit]) | set(selected)
    return {name: score for name, score in scores.items() if name in kept}


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
