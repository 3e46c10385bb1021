"""Prompt format v3, built beside the sequential answer (v2) and measured against it:
earlier turns as real user/model turns (append-only), and after the user turn one verdict
mark per tool, named (``get_weather?``, one after the other), plus one for "no tool"
(``none?``), whose "yes"/"no" logits give each tool's P(needed). Named marks: a 270M model
ties a verdict to its tool far better by the tool's name than by a number (numbered marks
lost to v2 on the BFCL dev files; named ones won in the first short try, see DESIGN.md).
See :mod:`openhoof_router.core.verdicts`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from openhoof_router.core.prompt import (
    CONTEXT_REPLY_CHARS,
    CONTEXT_RESULT_CHARS,
    CONTEXT_USER_CHARS,
    END,
    PROMPT_FORMAT,
    START,
    PromptCodec,
    Tokenizer,
    _developer_text,
)
from openhoof_router.core.records import PastTurn
from openhoof_router.core.text import _one_line, clean_text
from openhoof_router.core.tools import ToolSpec

VERDICT_FORMAT = "openhoof-v3"
PROMPT_FORMATS = (PROMPT_FORMAT, VERDICT_FORMAT)
"""The prompt formats this router speaks: the sequential answer (v2) and per-tool verdicts (v3)."""
VERDICT_INSTRUCTION = (
    "You route requests to tools. After the request, say for each tool whether the request "
    "needs it; \"none\" stands for \"no tool is needed\"."
)
VERDICT_MARK = "?"
NO_TOOL_MARK = "none"
MARK_NAME_CHARS = 64
YES, NO = "yes", "no"


def mark_names(tools: Sequence[ToolSpec]) -> list[str]:
    """The text before each verdict mark: the tools' names, then "none"."""
    return [*(_one_line(t.name, MARK_NAME_CHARS) for t in tools), NO_TOOL_MARK]


def render_past_turn(turn: PastTurn) -> str:
    """One earlier turn as a user turn and a model turn (what was called, what was said)."""
    user = _one_line(turn.user, CONTEXT_USER_CHARS)
    said = []
    if turn.tools:
        said.append("tools: " + "; ".join(
            f"{_one_line(c.name, 64)} -> {_one_line(c.result, CONTEXT_RESULT_CHARS)}" if c.result.strip()
            else _one_line(c.name, 64) for c in turn.tools))
    if turn.reply.strip():
        said.append("assistant: " + _one_line(turn.reply, CONTEXT_REPLY_CHARS))
    return f"{START}user\n{user}{END}\n{START}model\n" + ("\n".join(said) or "-") + f"{END}\n"


def render_verdict_prompt(tools: Sequence[ToolSpec], message: str, context: Sequence[PastTurn] = ()) -> str:
    """The whole v3 prompt as text, verdict segment included (for reading, not for encoding)."""
    marks = "".join(f"{n}{VERDICT_MARK}" for n in mark_names(tools))
    return (f"{START}{_developer_text(tools, 0, VERDICT_INSTRUCTION)}{END}\n"
            + "".join(render_past_turn(t) for t in context)
            + f"{START}user\n{clean_text(message).strip()}{END}\n{START}model\n{marks}")


@dataclass(frozen=True)
class VerdictSegment:
    """The model turn's verdict marks for a tool list: ``name?`` for each, then ``none?``
    (no separator: the mark ends each name, and every token here costs routing time).

    ``positions[i]`` is the index in ``ids`` of the mark whose next-token logits hold
    the verdict on tool ``i``; the last one is "no tool".
    """

    ids: tuple[int, ...]
    positions: tuple[int, ...]


@dataclass(frozen=True)
class VerdictExample:
    """One training example as ids: tool block, earlier turns + user turn, verdict segment,
    and the label (1 = needed) at each verdict position, "no tool" last."""

    prefix: tuple[int, ...]
    user: tuple[int, ...]
    segment: VerdictSegment
    labels: tuple[int, ...]


class VerdictCodec(PromptCodec):
    """The v3 layout: earlier turns as real turns (append-only, so a conversation's
    evaluated state can be reused), and a named verdict mark per tool."""

    name = VERDICT_FORMAT

    def __init__(self, tokenizer: Tokenizer) -> None:
        super().__init__(tokenizer)
        self.yes_id = tokenizer.encode(YES)[0]  # one token each in Gemma's vocabulary
        self.no_id = tokenizer.encode(NO)[0]
        self._mark = tuple(tokenizer.encode(VERDICT_MARK))
        self._names: dict[str, tuple[int, ...]] = {}
        self._segments: dict[tuple[str, ...], VerdictSegment] = {}

    def _developer(self, tools: Sequence[ToolSpec], level: int) -> str:
        return _developer_text(tools, level, VERDICT_INSTRUCTION)

    def past_turn(self, turn: PastTurn) -> list[int]:
        said = render_past_turn(turn)
        user_part, model_part = said.split(f"{END}\n{START}model\n", 1)
        # the model turn opens exactly as the current turn's does: a conversation's tokens only grow
        return [*self._turn(user_part[len(START):]), *self._model_open,
                *self.tokenizer.encode(model_part[: -len(END) - 1]), self.end_id, *self._newline]

    def user_turn(self, message: str, context: Sequence[PastTurn] = ()) -> list[int]:
        ids: list[int] = []
        for turn in context:
            ids.extend(self.past_turn(turn))
        return [*ids, *self._turn("user\n" + clean_text(message).strip()), *self._model_open]

    def segment(self, tools: Sequence[ToolSpec]) -> VerdictSegment:
        """The verdict marks for ``tools`` (cached per list of names). Each name and each mark is
        encoded on its own, so the mark is always the same token whatever the name ends with."""
        names = tuple(mark_names(tools))
        seg = self._segments.get(names)
        if seg is None:
            ids: list[int] = []
            positions = []
            for name in names:
                name_ids = self._names.get(name)
                if name_ids is None:
                    if len(self._names) > 4096:
                        self._names.clear()
                    name_ids = self._names[name] = tuple(self.tokenizer.encode(name))
                ids.extend([*name_ids, *self._mark])
                positions.append(len(ids) - 1)
            seg = VerdictSegment(tuple(ids), tuple(positions))
            if len(self._segments) > 256:
                self._segments.clear()
            self._segments[names] = seg
        return seg

    def encode_verdicts(self, tools: Sequence[ToolSpec], message: str, needed: Sequence[str],
                        context: Sequence[PastTurn] = (), *, level: int = 0) -> VerdictExample:
        """A training example, tokenized exactly as the router tokenizes a call."""
        wanted = set(needed)
        labels = [int(t.name in wanted) for t in tools]
        labels.append(int(not any(labels)))
        return VerdictExample(self.tool_block(tools, level), tuple(self.user_turn(message, context)),
                              self.segment(tools), tuple(labels))


