"""The prompt format and its codec: the only place either exists.

Layout (FunctionGemma's turns; the base model has no chat template of its own)::

    <bos><start_of_turn>developer
    You route requests to tools. ...
    Tools:
    memory_read(file): Read one of the agent's own workspace files ...
    ...<end_of_turn>
    <start_of_turn>user
    {message}<end_of_turn>
    <start_of_turn>model
    {answer}<end_of_turn>

With earlier turns of the conversation (``context``), the user turn reads::

    <start_of_turn>user
    Earlier:
    user: Check disk space on the prod box
    tools: exec -> /dev/sda1 42% used
    assistant: Prod's root disk is 42% full.
    Now: What about staging?<end_of_turn>

The developer turn (the *tool block*) depends only on the tools, so backends cache its KV
state and evaluate just the user turn; the context lives in the user turn for that reason.
The answer is the selected tool names **in the order they are listed**, joined by ``,``, or
``none``: a handful of tokens, because decoding costs ~10 ms a token on a laptop CPU.

:class:`PromptCodec` turns all of it into token ids for one tokenizer, piece by piece:
control tokens are inserted as ids and every text piece (tool descriptions, user text,
context) is tokenized with special tokens *off*, so no text can write a turn marker.
The engine, the hot-reload probe and every trainer encode through it, so training sees
exactly the tokens serving sees. (:mod:`.answer_text` reads answers back from text.)
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from openhoof_router.core.records import NO_TOOL, PastTurn
from openhoof_router.core.text import ELLIPSIS, _cut_middle, _one_line, clean_text  # noqa: F401 - clean_text is public here
from openhoof_router.core.tools import ToolSpec

PROMPT_FORMAT = "openhoof-v2"
"""Name of this layout; stored in every run's manifest (a run trained on another is refused)."""

START = "<start_of_turn>"
END = "<end_of_turn>"
SEPARATOR = ","

INSTRUCTION = (
    "You route requests to tools. Reply with the names of the tools the user's request needs, "
    f"in the order they are listed, separated by '{SEPARATOR}', or {NO_TOOL} if it needs no tool."
)

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


def _developer_text(tools: Sequence[ToolSpec], level: int, instruction: str = INSTRUCTION) -> str:
    return "developer\n" + instruction + "\nTools:\n" + "\n".join(render_tool_line(t, level) for t in tools)


def render_tool_block(tools: Sequence[ToolSpec], level: int = 0) -> str:
    """The developer turn: constant for a given tool list (the cacheable prefix)."""
    return f"{START}{_developer_text(tools, level)}{END}\n"


def render_context(context: Sequence[PastTurn]) -> str:
    """Earlier turns, oldest first, one short line per user message, tool batch and reply."""
    lines = ["Earlier:"]
    for turn in context:
        if turn.user.strip():
            lines.append("user: " + _one_line(turn.user, CONTEXT_USER_CHARS))
        if turn.tools:
            calls = "; ".join(f"{_one_line(c.name, 64)} -> {_one_line(c.result, CONTEXT_RESULT_CHARS)}"
                              if c.result.strip() else _one_line(c.name, 64) for c in turn.tools)
            lines.append("tools: " + calls)
        if turn.reply.strip():
            lines.append("assistant: " + _one_line(turn.reply, CONTEXT_REPLY_CHARS))
    return "\n".join(lines) if len(lines) > 1 else ""


def _user_text(message: str, context: Sequence[PastTurn] = ()) -> str:
    message = clean_text(message).strip()
    earlier = render_context(context) if context else ""
    return f"user\n{earlier}\nNow: {message}" if earlier else f"user\n{message}"


def render_user_turn(message: str, context: Sequence[PastTurn] = ()) -> str:
    """The user turn plus the opening of the model turn: what a cached call evaluates."""
    return f"{START}{_user_text(message, context)}{END}\n{START}model\n"


def render_prompt(tools: Sequence[ToolSpec], message: str, context: Sequence[PastTurn] = ()) -> str:
    return render_tool_block(tools) + render_user_turn(message, context)


def answer_order(names: Iterable[str], offered: Sequence[str]) -> list[str]:
    """A tool set in the canonical answer order: the order the tools are listed in."""
    position = {name: i for i, name in enumerate(offered)}
    return sorted(dict.fromkeys(names), key=lambda n: position.get(n, len(position)))


def render_answer(names: Sequence[str]) -> str:
    """The model's answer for a tool set, end marker included (the training target)."""
    return (SEPARATOR.join(names) if names else NO_TOOL) + END


# -- token ids ---------------------------------------------------------------------------

class Tokenizer(Protocol):
    """What the codec needs of a tokenizer (backends and :class:`..hf.HFTokenizer` provide it)."""

    bos_id: int

    def encode(self, text: str) -> list[int]:
        """Token ids of plain text: no BOS, special-token strings stay text."""

    def control(self, piece: str) -> int:
        """The id of a control token such as ``<end_of_turn>``."""


@dataclass(frozen=True)
class AnswerVocabulary:
    """Token ids of every piece an answer can be made of, for one tool list (in list order)."""

    names: tuple[str, ...]
    name_ids: dict[str, tuple[int, ...]]
    none_ids: tuple[int, ...]
    sep_ids: tuple[int, ...]
    end_ids: tuple[int, ...]

    def answer_ids(self, names: Sequence[str]) -> list[int]:
        """The answer's ids, assembled from the same pieces the decoder chooses between."""
        if not names:
            return [*self.none_ids, *self.end_ids]
        ids: list[int] = []
        for i, name in enumerate(answer_order(names, self.names)):
            ids.extend((self.sep_ids if i else ()) + self.name_ids[name])
        return ids + list(self.end_ids)


@dataclass(frozen=True)
class EncodedExample:
    """One example as ids: the cacheable tool block, the user turn, the answer (loss target)."""

    prefix: tuple[int, ...]
    user: tuple[int, ...]
    answer: tuple[int, ...]


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
        self._vocabs: dict[tuple[str, ...], AnswerVocabulary] = {}

    def _turn(self, text: str) -> list[int]:
        return [self.start_id, *self.tokenizer.encode(text), self.end_id, *self._newline]

    # -- tool block ----------------------------------------------------------------------
    def _developer(self, tools: Sequence[ToolSpec], level: int) -> str:
        """The tool block's text (a format's own rendering of the list)."""
        return _developer_text(tools, level)

    def tool_block(self, tools: Sequence[ToolSpec], level: int = 0) -> tuple[int, ...]:
        text = self._developer(tools, level)
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
    def user_turn(self, message: str, context: Sequence[PastTurn] = ()) -> list[int]:
        return [*self._turn(_user_text(message, context)), *self._model_open]

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

    # -- answer --------------------------------------------------------------------------
    def vocabulary(self, names: Sequence[str]) -> AnswerVocabulary:
        key = tuple(names)
        vocab = self._vocabs.get(key)
        if vocab is None:
            enc = self.tokenizer.encode
            vocab = AnswerVocabulary(
                names=key,
                name_ids={n: tuple(enc(n)) for n in names},
                none_ids=tuple(enc(NO_TOOL)),
                sep_ids=tuple(enc(SEPARATOR)),
                end_ids=(self.end_id,),
            )
            if len(self._vocabs) > 64:
                self._vocabs.clear()
            self._vocabs[key] = vocab
        return vocab

    def encode(self, tools: Sequence[ToolSpec], message: str, answer: Sequence[str],
               context: Sequence[PastTurn] = (), *, level: int = 0) -> EncodedExample:
        """A training example, tokenized exactly as the router tokenizes a call."""
        names = [t.name for t in tools]
        return EncodedExample(
            prefix=self.tool_block(tools, level),
            user=tuple(self.user_turn(message, context)),
            answer=tuple(self.vocabulary(names).answer_ids(answer)),
        )
