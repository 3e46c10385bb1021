"""Reading a LangChain conversation into what the router routes on.

A :class:`Turn` is the latest human message (its text and id) plus the earlier turns as
compact :class:`~openhoof_router.core.records.PastTurn` records: each earlier human message,
the tools the assistant called after it with their results, and its final reply. System
messages are not part of it (they do not change which tools a request needs).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage, convert_to_messages
from langchain_core.prompt_values import PromptValue

from openhoof_router.core.prompt import CONTEXT_TURNS
from openhoof_router.core.records import PastToolCall, PastTurn
from openhoof_router.serving.service import turn_key


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

    @property
    def key(self) -> str:
        """Identifies this human turn across the agent's model calls (see ``service.turn_key``)."""
        return turn_key(self.text, self.context, self.message_id)


def _text(message: BaseMessage) -> str:
    return message.text if isinstance(message.text, str) else str(message.content)


def past_turns(messages: Sequence[BaseMessage], limit: int = CONTEXT_TURNS) -> list[PastTurn]:
    """Earlier turns from a message history (oldest first, the last ``limit``)."""
    turns: list[PastTurn] = []
    pending: dict[str, PastToolCall] = {}
    for message in messages:
        if isinstance(message, HumanMessage):
            turns.append(PastTurn(user=_text(message)))
            pending = {}
        elif not turns:
            continue  # system prompt, or assistant lines before any human turn
        elif isinstance(message, AIMessage):
            for call in message.tool_calls:
                past = PastToolCall(name=call["name"])
                turns[-1].tools.append(past)
                if call.get("id"):
                    pending[call["id"]] = past
            text = _text(message).strip()
            if text and not message.tool_calls:
                turns[-1].reply = text
        elif isinstance(message, ToolMessage):
            past = pending.get(message.tool_call_id)
            if past is not None:
                past.result = _text(message)
    return turns[-limit:] if limit else []


def read_turn(messages: Sequence[BaseMessage], tools: Sequence[Any] | None = None,
              context_turns: int = CONTEXT_TURNS) -> Turn:
    """The latest human turn of ``messages`` with its context; ValueError when there is none."""
    for index in range(len(messages) - 1, -1, -1):
        message = messages[index]
        if isinstance(message, HumanMessage):
            return Turn(list(messages), _text(message), past_turns(messages[:index], context_turns),
                        message.id, tools)
    raise ValueError("the input holds no human turn to route on")


def parse_turn(value: Any, context_turns: int = CONTEXT_TURNS) -> Turn:
    """Read a string, message, message list, prompt value or dict into a :class:`Turn`.

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
    return read_turn(messages, tools, context_turns)
