"""Reading a LangChain router input into what the router routes on.

A :class:`Turn` is the latest human message (its text and id) plus the earlier turns as
compact :class:`~openhoof_router.core.records.PastTurn` records, read by
:mod:`openhoof_router.core.turns` (the one turn reader) from the messages mapped to plain lines.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage, convert_to_messages
from langchain_core.prompt_values import PromptValue

from openhoof_router.core.prompt import CONTEXT_TURNS
from openhoof_router.core.records import PastTurn
from openhoof_router.core.turns import ChatLine, latest_turn, past_turns, turn_key


@dataclass(frozen=True)
class Turn:
    """A router input read into the conversation, the text to route on, and its context."""

    messages: list[BaseMessage]
    text: str
    """The latest human turn's text."""
    context: list[PastTurn] = field(default_factory=list)
    """Earlier turns, oldest first (at most ``CONTEXT_TURNS`` unless asked otherwise)."""
    message_id: str | None = None
    tools: Sequence[Any] | None = None
    """Tools given with the input (a dict's ``tools``), overriding the router's own."""
    conversation: str | None = None
    """The conversation the turn belongs to, from the run config (:func:`conversation_id`)."""

    @property
    def key(self) -> str:
        """Identifies this human turn across the agent's model calls
        (:func:`~openhoof_router.core.turns.turn_key`)."""
        return turn_key(self.text, self.context, self.message_id, self.conversation)


CONVERSATION_KEYS = ("thread_id", "session_id", "conversation_id")
"""Run-config keys that name a conversation, first found wins: LangGraph's ``thread_id``,
``RunnableWithMessageHistory``'s ``session_id``, or your own ``conversation_id``."""


def conversation_id(config: Mapping[str, Any] | None) -> str | None:
    """The conversation a run belongs to: a :data:`CONVERSATION_KEYS` value in the config's
    ``configurable`` (or ``metadata``), as ``"key=value"``; None when the config names none."""
    for section in ("configurable", "metadata"):
        values = (config or {}).get(section) or {}
        for key in CONVERSATION_KEYS:
            value = values.get(key)
            if value is not None and value != "":
                return f"{key}={value}"
    return None


def _text(message: BaseMessage) -> str:
    return str(message.text) if isinstance(message.text, str) else str(message.content)


def _line(message: BaseMessage) -> ChatLine:
    if isinstance(message, HumanMessage):
        return ChatLine("user", _text(message), message_id=message.id)
    if isinstance(message, AIMessage):
        return ChatLine("assistant", _text(message), tuple((c["name"], c.get("id")) for c in message.tool_calls))
    if isinstance(message, ToolMessage):
        return ChatLine("tool", _text(message), tool_call_id=message.tool_call_id)
    return ChatLine("system")  # system and other messages: not part of a turn


def read_turn(messages: Sequence[BaseMessage], tools: Sequence[Any] | None = None,
              context_turns: int = CONTEXT_TURNS, conversation: str | None = None) -> Turn:
    """The latest human turn of ``messages`` with its context; ValueError when there is none."""
    lines = [_line(m) for m in messages]
    index, context = latest_turn(lines, context_turns)
    return Turn(list(messages), lines[index].text, context, lines[index].message_id, tools, conversation)


def finished_turns(messages: Sequence[BaseMessage], context_turns: int = CONTEXT_TURNS) -> list[PastTurn]:
    """The turns of a conversation whose latest reply is out: the next human turn's context."""
    return past_turns([_line(m) for m in messages], context_turns)


def merge_chunks(chunks: Sequence[Any]) -> Any:
    """A streamed input put back together (chunks added up; one that cannot be added replaces)."""
    if not chunks:
        raise ValueError("ToolRouter received no input")
    final = chunks[0]
    for chunk in chunks[1:]:
        try:
            final = final + chunk
        except TypeError:
            final = chunk
    return final


def parse_turn(value: Any, context_turns: int = CONTEXT_TURNS, conversation: str | None = None) -> Turn:
    """Read a string, message, message list, prompt value or dict into a :class:`Turn`
    (of ``conversation``, when given: see :func:`conversation_id`).

    Dicts: ``{"messages": [...]}`` or ``{"input": str | message, "chat_history": [...]}``,
    optionally with ``"tools"``. Raises ``ValueError`` when there is no human turn.
    """
    tools = None
    if isinstance(value, str):
        messages: list[BaseMessage] = [HumanMessage(content=value)]
    elif isinstance(value, BaseMessage):
        messages = [value]
    elif isinstance(value, PromptValue):
        messages = value.to_messages()
    elif isinstance(value, Mapping):
        tools = value.get("tools")
        if value.get("messages") is not None:
            messages = convert_to_messages(value["messages"])
        elif value.get("input") is not None:
            history = value.get("chat_history") or value.get("history") or []
            current = value["input"]
            current = [current] if isinstance(current, (str, BaseMessage, tuple, dict)) else current
            messages = convert_to_messages([*history, *current])
        else:
            raise ValueError("a dict input needs 'messages' or 'input'")
    elif isinstance(value, Sequence):
        messages = convert_to_messages(value)
    else:
        raise TypeError(f"cannot route on a {type(value).__name__}: give a string, messages or a dict")
    return read_turn(messages, tools, context_turns, conversation)
