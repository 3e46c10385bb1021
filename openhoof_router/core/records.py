"""The data records, defined once: decisions, conversation context, training examples, outcomes.

The training example keeps the seed's line format::

    {"input": {"user_message": str, "tools": [names]},
     "output": {"tool_calls": [{"name": str, "arguments": {}}]},
     "metadata": {"source": "manual_curated" | "synthetic" | "live" | ..., "tool": str}}

An empty ``tool_calls`` list means "no tool needed". Two optional input keys extend it:
``tool_schemas`` (the offered tools' OpenAI schemas, for tools outside the built-in catalog)
and ``context`` (earlier turns of the conversation, :class:`PastTurn`).
"""

from __future__ import annotations

import time
import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_serializer

NO_TOOL = "none"
"""The answer, label and tool-threshold key that mean "this turn needs no tool"."""


def new_id() -> str:
    """A short unique id for decisions and runs."""
    return uuid.uuid4().hex[:16]


class ToolCall(BaseModel):
    """One tool the router selected; arguments are optional (the reasoner fills them)."""

    name: str
    arguments: dict[str, Any] = Field(default_factory=dict)


class PastToolCall(BaseModel):
    """A tool called in an earlier turn, with a short result text."""

    name: str
    result: str = ""


class PastTurn(BaseModel):
    """One earlier turn of the conversation, as the router sees it (compact by design)."""

    user: str
    tools: list[PastToolCall] = Field(default_factory=list)
    reply: str = ""


class RoutingDecision(BaseModel):
    """What the router decided for one turn."""

    decision_id: str = Field(default_factory=new_id)
    tool_calls: list[ToolCall] = Field(default_factory=list)
    valid: bool = True
    """False when no answer could be decoded (model fault, nothing fits the context window)."""
    confidence: float = Field(0.0, ge=0.0, le=1.0)
    """Joint probability the model gave its own answer (full-vocabulary, at each choice)."""
    scores: dict[str, float] = Field(default_factory=dict)
    """Per offered tool: the model's probability of naming it (see :mod:`..decoding`)."""
    no_tool_score: float = 0.0
    """The model's probability of answering "no tool"."""
    continue_probs: list[float] = Field(default_factory=list)
    """After each named tool, the model's odds of naming another: ``P(,) / (P(,) + P(end))``."""
    latency_ms: float = 0.0
    raw: str = ""
    """The answer as text (names joined by ``,``, or ``none``)."""
    error: str | None = None
    notes: list[str] = Field(default_factory=list)
    """What the router had to do to route at all: a message cut to fit, shortened tool
    descriptions, dropped context turns, an empty message."""
    context_turns: int = 0
    """How many earlier turns the prompt carried."""
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
    tool_schemas: list[dict[str, Any]] | None = None
    """The offered tools' schemas when they are not the built-in catalog's."""
    context: list[PastTurn] = Field(default_factory=list)

    @model_serializer(mode="wrap")
    def _seed_shape(self, handler: Any) -> dict[str, Any]:
        # Optional keys stay out of the line when unused: plain records keep the seed's shape.
        data = handler(self)
        if not self.context:
            data.pop("context", None)
        if self.tool_schemas is None:
            data.pop("tool_schemas", None)
        return data


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
        cls,
        message: str,
        tools: list[str],
        selected: list[str],
        source: str,
        *,
        context: list[PastTurn] | None = None,
        tool_schemas: list[dict[str, Any]] | None = None,
        **metadata: Any,
    ) -> "TrainingRecord":
        return cls(
            input=RecordInput(user_message=message, tools=list(tools), context=list(context or []),
                              tool_schemas=tool_schemas),
            output=RecordOutput(tool_calls=[ToolCall(name=n) for n in selected]),
            metadata={"source": source, "tool": ",".join(selected) or NO_TOOL, **metadata},
        )



class DecisionMetadata(BaseModel):
    """``metadata`` of a logged decision in ``training_data.jsonl``."""

    model_config = ConfigDict(extra="allow")
    source: str = "live"
    tool: str = NO_TOOL
    decision_id: str
    timestamp: float = Field(default_factory=time.time)
    model: str = ""
    adapter: str | None = None
    backend: str = ""
    latency_ms: float = 0.0
    confidence: float = 0.0
    scores: dict[str, float] = Field(default_factory=dict)
    no_tool_score: float = 0.0
    threshold: float | None = None
    mode: str = "route"
    valid: bool = True
    fallback: bool = False
    fallback_reason: str | None = None
    error: str | None = None
    notes: list[str] = Field(default_factory=list)
    truncated: bool = False
    """The logged message was cut to the log's length cap."""
    turn_key: str | None = None
    """Identifies the human turn (message id, or a hash of its content and context)."""


class LoggedDecision(TrainingRecord):
    """A line of ``training_data.jsonl``: a training record with typed decision metadata."""

    metadata: DecisionMetadata


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
