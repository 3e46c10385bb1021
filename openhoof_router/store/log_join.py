"""The join of the decision log and the outcome log: each logged decision with the outcomes
that refer to it, and the tool set it teaches (:attr:`JoinedDecision.label`)."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Literal

from pydantic import BaseModel, Field

from openhoof_router.core.records import LoggedDecision, OutcomeRecord
from openhoof_router.store.jsonl import read_jsonl
from openhoof_router.store.paths import Paths, resolve_paths
from openhoof_router.store.toolsets import read_decisions

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
    """The join of both logs; iterating over it (``for j in read_joined()``) yields the joined decisions."""

    items: list[JoinedDecision] = field(default_factory=list)
    orphans: list[OutcomeRecord] = field(default_factory=list)
    """Outcomes whose decision is not in the decision log."""
    skipped_decisions: int = 0
    skipped_outcomes: int = 0

    def __iter__(self) -> Iterator[JoinedDecision]:
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)

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
    decisions = read_decisions(paths.decisions_file)
    outcomes = read_jsonl(paths.outcomes_file, OutcomeRecord)
    result = join_logs(decisions, outcomes)
    result.skipped_decisions, result.skipped_outcomes = decisions.skipped, outcomes.skipped
    return result
