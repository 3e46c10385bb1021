"""The prompt format and its codec: the only place either exists.

Layout (FunctionGemma's turns; the base model has no chat template of its own)::

    <bos><start_of_turn>developer
    You route requests to tools. After the request, say for each tool whether ...
    Tools:
    memory_read(file): Read one of the agent's own workspace files ...
    ...<end_of_turn>
    <start_of_turn>user
    {earlier message}<end_of_turn>
    <start_of_turn>model
    tools: exec -> /dev/sda1 42% used
    assistant: Prod's root disk is 42% full.<end_of_turn>
    <start_of_turn>user
    {message}<end_of_turn>
    <start_of_turn>model
    memory_read?exec?...none?

The developer turn (the *tool block*) depends only on the tools, so backends cache its KV
state. Earlier turns of the conversation (``context``) are real user/model turns, so a
conversation's tokens only grow and its evaluated state can be reused for the next message.
After the user turn the model turn holds one *verdict mark* per tool, its name then ``?``,
and one for "no tool" (``none?``); the "yes"/"no" logits after each mark give that tool's
P(needed) (:mod:`.verdicts`). Named marks: a 270M model ties a verdict to its tool far
better by the tool's name than by a number (numbered marks lost in the first short try,
see DESIGN.md). All marks are read from one evaluation.

:class:`PromptCodec` turns all of it into token ids for one tokenizer, piece by piece:
control tokens are inserted as ids and every text piece (tool descriptions, user text,
context) is tokenized with special tokens *off*, so no text can write a turn marker.
The engine, the hot-reload probe and every trainer encode through it, so training sees
exactly the tokens serving sees.

(Format v2, the tool names decoded one after the other, was measured beside this one on
the same messages and removed: see benchmarks/README.md, "Per-tool verdicts shipped".)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from openhoof_router.core.records import NO_TOOL, PastTurn
from openhoof_router.core.text import ELLIPSIS, _cut_middle, _one_line, clean_text  # noqa: F401 - clean_text is public here
from openhoof_router.core.tools import ToolSpec

PROMPT_FORMAT = "openhoof-v3"
"""Name of this layout; stored in every run's manifest (a run trained on another is refused)."""

START = "<start_of_turn>"
END = "<end_of_turn>"

INSTRUCTION = (
    "You route requests to tools. After the request, say for each tool whether the request "
    "needs it; \"none\" stands for \"no tool is needed\"."
)
VERDICT_MARK = "?"
NO_TOOL_MARK = NO_TOOL
MARK_NAME_CHARS = 64
YES, NO = "yes", "no"

# Tool lines, from the full form down to bare names: the codec takes the first that fits.
DETAIL_LEVELS: tuple[tuple[int, int], ...] = ((120, 8), (60, 8), (30, 4), (0, 0))
"""(description characters, parameter names) per level of detail."""

CONTEXT_TURNS = 3
"""Earlier turns the router reads by default."""
CONTEXT_USER_CHARS, CONTEXT_RESULT_CHARS, CONTEXT_REPLY_CHARS = 160, 80, 100

# -- text rendering (what the token ids spell) ------------------------------------------

def render_tool_line(tool: ToolSpec, level: int = 0) -> str:
    desc_chars, n_params = DETAIL_LEVELS[level]
    params = [clean_text(p) for p in tool.parameters[:n_params]]
    if len(tool.parameters) > n_params and n_params:
        params.append(ELLIPSIS)
    desc = _one_line(tool.description, desc_chars)
    head = f"{tool.name}({', '.join(params)})" if n_params else tool.name
    return head + (f": {desc}" if desc else "")


def _developer_text(tools: Sequence[ToolSpec], level: int) -> str:
    return "developer\n" + INSTRUCTION + "\nTools:\n" + "\n".join(render_tool_line(t, level) for t in tools)


def render_tool_block(tools: Sequence[ToolSpec], level: int = 0) -> str:
    """The developer turn: constant for a given tool list (the cacheable prefix)."""
    return f"{START}{_developer_text(tools, level)}{END}\n"


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


def render_user_turn(message: str, context: Sequence[PastTurn] = ()) -> str:
    """Earlier turns, the user turn and the opening of the model turn: what a cached call evaluates
    before the verdict marks."""
    return ("".join(render_past_turn(t) for t in context)
            + f"{START}user\n{clean_text(message).strip()}{END}\n{START}model\n")


def render_prompt(tools: Sequence[ToolSpec], message: str, context: Sequence[PastTurn] = ()) -> str:
    """The whole prompt as text, verdict marks included (for reading, not for encoding)."""
    marks = "".join(f"{n}{VERDICT_MARK}" for n in mark_names(tools))
    return render_tool_block(tools) + render_user_turn(message, context) + marks


# -- token ids ---------------------------------------------------------------------------

class Tokenizer(Protocol):
    """What the codec needs of a tokenizer (backends and :class:`..hf.HFTokenizer` provide it)."""

    bos_id: int

    def encode(self, text: str) -> list[int]:
        """Token ids of plain text: no BOS, special-token strings stay text."""

    def control(self, piece: str) -> int:
        """The id of a control token such as ``<end_of_turn>``."""


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


@dataclass
class UserTurn:
    """An encoded user turn and what had to give way for it to fit."""

    ids: list[int]
    context_turns: int
    dropped_turns: int = 0
    cut_chars: int = 0
    notes: list[str] = field(default_factory=list)


class PromptCodec:
    """Renders and encodes prompts for one tokenizer (cached per tool list)."""

    name = PROMPT_FORMAT

    def __init__(self, tokenizer: Tokenizer) -> None:
        self.tokenizer = tokenizer
        self.start_id = tokenizer.control(START)
        self.end_id = tokenizer.control(END)
        self._newline = tuple(tokenizer.encode("\n"))
        self._model_open = (self.start_id, *tokenizer.encode("model\n"))
        self._blocks: dict[tuple[str, int], tuple[int, ...]] = {}
        self.yes_id = tokenizer.encode(YES)[0]  # one token each in Gemma's vocabulary
        self.no_id = tokenizer.encode(NO)[0]
        self._mark = tuple(tokenizer.encode(VERDICT_MARK))
        self._names: dict[str, tuple[int, ...]] = {}
        self._segments: dict[tuple[str, ...], VerdictSegment] = {}

    def _turn(self, text: str) -> list[int]:
        return [self.start_id, *self.tokenizer.encode(text), self.end_id, *self._newline]

    # -- tool block ----------------------------------------------------------------------
    def tool_block(self, tools: Sequence[ToolSpec], level: int = 0) -> tuple[int, ...]:
        text = _developer_text(tools, level)
        ids = self._blocks.get((text, level))
        if ids is None:
            ids = (self.tokenizer.bos_id, *self._turn(text))
            if len(self._blocks) > 64:
                self._blocks.clear()
            self._blocks[(text, level)] = ids
        return ids

    def fit_tool_block(self, tools: Sequence[ToolSpec], budget: int) -> tuple[tuple[int, ...], int]:
        """The most detailed tool block within ``budget`` tokens, and its level of detail.

        Raises ``ValueError`` naming the limit when even bare names do not fit.
        """
        for level in range(len(DETAIL_LEVELS)):
            ids = self.tool_block(tools, level)
            if len(ids) <= budget:
                return ids, level
        raise ValueError(f"the tool list takes {len(ids)} tokens even as bare names, over the "
                         f"{budget} the context window leaves: offer fewer tools")

    # -- user turn -----------------------------------------------------------------------
    def past_turn(self, turn: PastTurn) -> list[int]:
        said = render_past_turn(turn)
        user_part, model_part = said.split(f"{END}\n{START}model\n", 1)
        # the model turn opens exactly as the current turn's does: a conversation's tokens only grow
        return [*self._turn(user_part[len(START):]), *self._model_open,
                *self.tokenizer.encode(model_part[: -len(END) - 1]), self.end_id, *self._newline]

    def user_turn(self, message: str, context: Sequence[PastTurn] = ()) -> list[int]:
        """Earlier turns, the user turn and the model turn's opening."""
        ids: list[int] = []
        for turn in context:
            ids.extend(self.past_turn(turn))
        return [*ids, *self._turn("user\n" + clean_text(message).strip()), *self._model_open]

    def fit_user_turn(self, message: str, context: Sequence[PastTurn], budget: int) -> UserTurn:
        """Encode the user turn within ``budget`` tokens: the oldest context turns go first,
        then the message is cut (its start and end kept, the middle dropped)."""
        context = list(context)
        dropped = 0
        while True:
            ids = self.user_turn(message, context)
            if len(ids) <= budget or not context:
                break
            context.pop(0)
            dropped += 1
        out = UserTurn(ids, len(context), dropped)
        if dropped:
            out.notes.append(f"dropped {dropped} earlier turn(s) to fit the context window")
        if len(ids) <= budget:
            return out
        text = clean_text(message).strip()
        lo, hi = 0, len(text)  # characters kept: the largest count that fits
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if len(self.user_turn(_cut_middle(text, mid), context)) <= budget:
                lo = mid
            else:
                hi = mid - 1
        out.ids = self.user_turn(_cut_middle(text, lo), context)
        if len(out.ids) > budget:
            raise ValueError("the context window leaves no room for the message")
        out.cut_chars = len(text) - lo
        out.notes.append(f"message cut by {out.cut_chars} of {len(text)} characters to fit the context window")
        return out

    # -- verdict marks -------------------------------------------------------------------
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

    def encode(self, tools: Sequence[ToolSpec], message: str, needed: Sequence[str],
               context: Sequence[PastTurn] = (), *, level: int = 0) -> VerdictExample:
        """A training example, tokenized exactly as the router tokenizes a call."""
        wanted = set(needed)
        labels = [int(t.name in wanted) for t in tools]
        labels.append(int(not any(labels)))
        return VerdictExample(self.tool_block(tools, level), tuple(self.user_turn(message, context)),
                              self.segment(tools), tuple(labels))
