"""The data records, defined once: decisions, conversation context, training examples, outcomes.

The training example keeps the seed's line format::

    {"input": {"user_message": str, "tools": [names]},
     "output": {"tool_calls": [{"name": str, "arguments": {}}]},
     "metadata": {"source": "manual_curated" | "synthetic" | "live" | ..., "tool": str}}

An empty ``tool_calls`` list means "no tool needed". Optional input keys extend it:
``tool_schemas`` (the offered tools' OpenAI schemas, for tools outside the built-in catalog),
``context`` (earlier turns of the conversation, :class:`PastTurn`) and, in the decision
log, ``toolset`` (the hash of a tool list stored once beside the log, in place of
``tools`` and ``tool_schemas``).
"""

from __future__ import annotations

import time
import uuid
from typing import Annotated, Any, Literal, Self

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_serializer

NO_TOOL = "none"
"""The answer, label and tool-threshold key that mean "this turn needs no tool"."""
LIVE_SOURCE = "live"
"""``metadata.source`` of a logged routing decision (and of the examples learnt from one)."""
SUMMARY_FIELDS = frozenset({"decision_id", "confidence", "scores", "no_tool_score", "latency_ms", "valid",
                            "fallback", "fallback_reason", "fallback_tools", "extra_tools", "error", "notes", "model",
                            "adapter", "backend"})
"""The :class:`RoutingDecision` fields :meth:`RoutingDecision.summary` shows."""


def new_id() -> str:
    """A short unique id for decisions and runs."""
    return uuid.uuid4().hex[:16]


def clean_text(value: Any) -> Any:
    """``value`` as a plain ``str`` every encoder accepts: lone surrogates (text decoded with
    ``surrogateescape``, a broken client) become U+FFFD, ``str`` subclasses (LangChain's
    ``message.text``) plain ``str``. Records sanitise here so no caller has to."""
    if not isinstance(value, str):
        return value
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:  # utf-16 joins valid surrogate pairs, replaces lone ones
        return value.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return value if type(value) is str else str.__str__(value)


Text = Annotated[str, BeforeValidator(clean_text)]
"""Free text in a record (messages, replies, tool output): sanitised by :func:`clean_text`."""


class ToolCall(BaseModel):
    """One tool the router selected; arguments are optional (the reasoner fills them)."""

    name: str
    arguments: dict[str, Any] = Field(default_factory=dict)


class PastToolCall(BaseModel):
    """A tool called in an earlier turn, with a short result text."""

    model_config = ConfigDict(validate_assignment=True)  # readers fill results in: sanitise those too
    name: Text
    result: Text = ""


class PastTurn(BaseModel):
    """One earlier turn of the conversation, as the router sees it (compact by design)."""

    model_config = ConfigDict(validate_assignment=True)
    user: Text
    tools: list[PastToolCall] = Field(default_factory=list)
    reply: Text = ""


class RoutingDecision(BaseModel):
    """What the router decided for one turn."""

    decision_id: str = Field(default_factory=new_id)
    tool_calls: list[ToolCall] = Field(default_factory=list)
    valid: bool = True
    """False when no answer could be decoded (model fault, nothing fits the context window)."""
    confidence: float = Field(0.0, ge=0.0, le=1.0)
    """How sure the answer is: the weakest of its verdicts (:func:`..verdicts.confidence`)."""
    scores: dict[str, float] = Field(default_factory=dict)
    """Per offered tool: the model's P(needed) for this turn (see :mod:`..verdicts`)."""
    no_tool_score: float = 0.0
    """How sure the model is that no tool is needed (:attr:`..verdicts.Verdicts.no_tool_score`)."""
    latency_ms: float = 0.0
    raw: Text = ""
    """The answer as text (names joined by ``,``, or ``none``)."""
    error: Text | None = None
    notes: list[Text] = Field(default_factory=list)
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
    """Why it fell back: ``invalid``, ``low_confidence``, ``tool_threshold:NAME`` or ``unseen_tools`` (a
    "no tool" on a turn offering tools the run was not fitted on)."""
    fallback_tools: list[str] = Field(default_factory=list)
    """On a fallback over a long list, the tools ``narrow`` mode and the middleware bind: the
    best-scored share of them (see :class:`~openhoof_router.serving.policy.ThresholdPolicy`);
    empty: every offered tool."""
    extra_tools: list[str] = Field(default_factory=list)
    """Tools besides the answer's that ``narrow`` mode and the middleware also bind: each
    scored at least the run's keep threshold (the safe side of a close call; see
    :class:`~openhoof_router.serving.policy.ThresholdPolicy`)."""

    @property
    def tool_names(self) -> list[str]:
        return [call.name for call in self.tool_calls]

    @property
    def narrow_tools(self) -> list[str]:
        """What ``narrow`` mode binds for a followed decision: the answer's tools, then the extra ones."""
        return [*self.tool_names, *(n for n in self.extra_tools if n not in self.tool_names)]

    @property
    def no_tool(self) -> bool:
        return self.valid and not self.tool_calls

    def summary(self, **extra: Any) -> dict[str, Any]:
        """The decision as every view shows it: the decision log's metadata, the trace's
        decision run and a delegated reply's ``response_metadata``. ``selected`` (the tool
        names) and the :data:`SUMMARY_FIELDS` (latency rounded to microseconds), then
        ``extra`` (what the view adds: ``mode``, the tools sent on)."""
        data = {"selected": self.tool_names, **self.model_dump(include=set(SUMMARY_FIELDS))}
        data["latency_ms"] = round(self.latency_ms, 3)
        return {**data, **extra}


class RecordInput(BaseModel):
    model_config = ConfigDict(extra="allow")
    user_message: Text
    tools: list[str] = Field(default_factory=list)
    tool_schemas: list[dict[str, Any]] | None = None
    """The offered tools' schemas when they are not the built-in catalog's."""
    context: list[PastTurn] = Field(default_factory=list)
    toolset: str | None = None
    """Hash of the offered tool list stored once in ``toolsets/`` beside the log
    (:mod:`~openhoof_router.store.toolsets`): a logged decision carries this instead of
    ``tools`` / ``tool_schemas``, which readers fill back in."""

    @model_serializer(mode="wrap")
    def _seed_shape(self, handler: Any) -> dict[str, Any]:
        # Optional keys stay out of the line when unused: plain records keep the seed's shape.
        data = handler(self)
        if not self.context:
            data.pop("context", None)
        if self.tool_schemas is None:
            data.pop("tool_schemas", None)
        if self.toolset is None:
            data.pop("toolset", None)
        elif not self.tools:  # the names live in the toolset file
            data.pop("tools", None)
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
        toolset: str | None = None,
        **metadata: Any,
    ) -> Self:
        return cls(
            input=RecordInput(user_message=message, tools=list(tools), context=list(context or []),
                              tool_schemas=tool_schemas, toolset=toolset),
            output=RecordOutput(tool_calls=[ToolCall(name=n) for n in selected]),
            metadata={"source": source, "tool": ",".join(selected) or NO_TOOL, **metadata},
        )



class DecisionMetadata(BaseModel):
    """``metadata`` of a logged decision in ``training_data.jsonl``."""

    model_config = ConfigDict(extra="allow")
    source: str = LIVE_SOURCE
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
    fallback_tools: list[str] = Field(default_factory=list)
    extra_tools: list[str] = Field(default_factory=list)
    error: Text | None = None
    notes: list[Text] = Field(default_factory=list)
    truncated: bool = False
    """The logged message was cut to the log's length cap."""
    turn_key: str | None = None
    """Identifies the human turn (message id, or a hash of its content and context)."""

    @classmethod
    def of(cls, decision: RoutingDecision, **fields: Any) -> DecisionMetadata:
        """The log metadata of ``decision``: its :meth:`~RoutingDecision.summary` (the names
        joined into ``tool``), plus the log's own ``fields`` (mode, threshold, turn key, ...)."""
        summary = decision.summary()
        return cls(tool=",".join(summary.pop("selected")) or NO_TOOL, **summary, **fields)


class LoggedDecision(TrainingRecord):
    """A line of ``training_data.jsonl``: a training record with typed decision metadata."""

    metadata: DecisionMetadata  # type: ignore[assignment]  # narrows the base record's free-form dict


OutcomeKind = Literal["tool_end", "tool_error", "confirm", "correct"]


class OutcomeRecord(BaseModel):
    """Feedback on a decision: a tool ran (ok / error), or a person confirmed or corrected it."""

    model_config = ConfigDict(extra="allow")
    decision_id: str
    kind: OutcomeKind
    tool: str | None = None
    correct_tools: list[str] | None = None
    """For ``correct``: the right tool set (empty list = no tool was needed)."""
    detail: Text | None = None
    timestamp: float = Field(default_factory=time.time)
