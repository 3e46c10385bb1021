"""The data records, defined once: decisions, training examples and outcomes.

The training example keeps the seed's line format::

    {"input": {"user_message": str, "tools": [names]},
     "output": {"tool_calls": [{"name": str, "arguments": {}}]},
     "metadata": {"source": "manual_curated" | "synthetic" | "live" | ..., "tool": str}}

An empty ``tool_calls`` list means "no tool needed".
"""

from __future__ import annotations

import time
import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


def new_id() -> str:
    """A short, sortable-enough unique id for decisions and runs."""
    return uuid.uuid4().hex[:16]


class ToolCall(BaseModel):
    """One tool the router selected; arguments are optional (the reasoner fills them)."""

    name: str
    arguments: dict[str, Any] = Field(default_factory=dict)


class RoutingDecision(BaseModel):
    """What the router decided for one turn."""

    decision_id: str = Field(default_factory=new_id)
    tool_calls: list[ToolCall] = Field(default_factory=list)
    valid: bool = True
    """False when the model's answer could not be parsed into offered tools."""
    confidence: float = Field(0.0, ge=0.0, le=1.0)
    """Joint probability the model gave its own answer (at each branching token)."""
    latency_ms: float = 0.0
    raw: str = ""
    """The model's answer text, kept as produced."""
    error: str | None = None
    model: str = ""
    adapter: str | None = None
    backend: str = ""
    fallback: bool = False
    """Set by callers that ignored this decision and offered all tools instead."""
    fallback_reason: str | None = None
    """Why it fell back: ``invalid``, ``low_confidence`` or ``tool_threshold:NAME``."""

    @property
    def tool_names(self) -> list[str]:
        return [call.name for call in self.tool_calls]

    @property
    def no_tool(self) -> bool:
        return self.valid and not self.tool_calls


class RecordInput(BaseModel):
    model_config = ConfigDict(extra="allow")
    user_message: str
    tools: list[str] = Field(default_factory=list)


class RecordOutput(BaseModel):
    model_config = ConfigDict(extra="allow")
    tool_calls: list[ToolCall] = Field(default_factory=list)


class TrainingRecord(BaseModel):
    """One example in the seed's format (also the shape of a logged decision)."""

    model_config = ConfigDict(extra="allow")
    input: RecordInput
    output: RecordOutput = Field(default_factory=RecordOutput)
    metadata: dict[str, Any] = Field(default_factory=dict)

    @property
    def tool_names(self) -> list[str]:
        return [call.name for call in self.output.tool_calls]

    @property
    def tool_set(self) -> frozenset[str]:
        return frozenset(self.tool_names)

    @classmethod
    def make(
        cls, message: str, tools: list[str], selected: list[str], source: str, **metadata: Any
    ) -> "TrainingRecord":
        return cls(
            input=RecordInput(user_message=message, tools=list(tools)),
            output=RecordOutput(tool_calls=[ToolCall(name=n) for n in selected]),
            metadata={"source": source, "tool": ",".join(selected) or "none", **metadata},
        )


OutcomeKind = Literal["tool_end", "tool_error", "confirm", "correct"]


class OutcomeRecord(BaseModel):
    """Feedback on a decision: a tool ran (ok / error), or a person confirmed or corrected it."""

    model_config = ConfigDict(extra="allow")
    decision_id: str
    kind: OutcomeKind
    tool: str | None = None
    correct_tools: list[str] | None = None
    """For ``correct``: the right tool set (empty list = no tool was needed)."""
    detail: str | None = None
    timestamp: float = Field(default_factory=time.time)
