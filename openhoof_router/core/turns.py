"""A conversation read into what the router routes on: the latest human turn and, before it,
compact :class:`~openhoof_router.core.records.PastTurn` records.

This is the one turn reader, on plain :class:`ChatLine` values: the LangChain layer maps its
messages to them (:mod:`openhoof_router.langchain.conversation`) and evaluation maps
OpenAI-style message dicts (:func:`openai_lines`, for the BFCL-derived files), so neither
framework is needed below the LangChain layer. System lines are not part of a turn (they do
not change which tools a request needs).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from openhoof_router.core.prompt import CONTEXT_TURNS
from openhoof_router.core.records import PastToolCall, PastTurn

Role = Literal["user", "assistant", "tool", "system"]
_ROLES: dict[str, Role] = {"user": "user", "human": "user", "assistant": "assistant", "ai": "assistant",
                           "tool": "tool", "system": "system", "developer": "system"}


@dataclass(frozen=True)
class ChatLine:
    """One message of a conversation, as much of it as routing reads."""

    role: Role
    text: str = ""
    tool_calls: tuple[tuple[str, str | None], ...] = ()
    """Tools an assistant line calls: (name, call id)."""
    tool_call_id: str | None = None
    """For a tool line: the call it answers."""
    message_id: str | None = None


def past_turns(lines: Sequence[ChatLine], limit: int = CONTEXT_TURNS) -> list[PastTurn]:
    """Earlier turns from a history (oldest first, the last ``limit``): each human line, the
    tools called after it with their results, and the assistant's final reply."""
    turns: list[PastTurn] = []
    pending: dict[str, PastToolCall] = {}
    for line in lines:
        if line.role == "user":
            turns.append(PastTurn(user=line.text))
            pending = {}
        elif not turns:
            continue  # system prompt, or assistant lines before any human turn
        elif line.role == "assistant":
            for name, call_id in line.tool_calls:
                past = PastToolCall(name=name)
                turns[-1].tools.append(past)
                if call_id:
                    pending[call_id] = past
            text = line.text.strip()
            if text and not line.tool_calls:
                turns[-1].reply = text
        elif line.role == "tool" and line.tool_call_id is not None:
            answered = pending.get(line.tool_call_id)
            if answered is not None:
                answered.result = line.text
    return turns[-limit:] if limit else []


def latest_turn(lines: Sequence[ChatLine], context_turns: int = CONTEXT_TURNS) -> tuple[int, list[PastTurn]]:
    """Index of the latest human line and the turns before it; ValueError when there is none."""
    for index in range(len(lines) - 1, -1, -1):
        if lines[index].role == "user":
            return index, past_turns(lines[:index], context_turns)
    raise ValueError("the input holds no human turn to route on")


def _content_text(content: Any) -> str:
    # Content blocks: the text ones joined, as LangChain's ``message.text`` does.
    if isinstance(content, str):
        return content
    return "".join(b if isinstance(b, str) else b["text"] for b in content or ()
                   if isinstance(b, str) or (b.get("type") == "text" and isinstance(b.get("text"), str)))


def openai_lines(messages: Sequence[Mapping[str, Any]]) -> list[ChatLine]:
    """OpenAI-style chat message dicts as :class:`ChatLine` values (unknown roles: ValueError)."""
    lines = []
    for message in messages:
        role = _ROLES.get(str(message.get("role")))
        if role is None:
            raise ValueError(f"unknown message role {message.get('role')!r}")
        calls = tuple((call["function"]["name"], call.get("id")) for call in message.get("tool_calls") or ())
        lines.append(ChatLine(role, _content_text(message.get("content")), calls, message.get("tool_call_id"),
                              message.get("id")))
    return lines


def turn_key(text: str, context: Sequence[PastTurn] = (), message_id: str | None = None,
             conversation: str | None = None) -> str:
    """Identifies a human turn: within its ``conversation`` (a LangGraph thread, a chat
    session: see ``conversation_id`` in the LangChain layer), by its message id, else by a
    hash of its text and earlier turns.

    Only when there is neither a conversation nor a message id does the text alone tell
    turns apart: two conversations that open with the same text are then one turn (one
    decision, one log line, shared feedback).
    """
    scope = ""
    if conversation:
        scope = "conv:" + hashlib.sha256(conversation.encode("utf-8", "surrogatepass")).hexdigest()[:16] + "/"
    if message_id:
        return f"{scope}id:{message_id}"
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass"))
    for turn in context:
        digest.update(turn.model_dump_json().encode("utf-8", "surrogatepass"))
    return f"{scope}sha:" + digest.hexdigest()[:24]
