"""Training examples as the trainers see them: groups of requests that share one tool list.

A :class:`Group` is one tool list (in the order it is shown) and the requests routed over
it. Every trainer encodes groups with the one :class:`~openhoof_router.core.prompt.PromptCodec`
into an :class:`EncodedGroup`: the tool block's ids once, then each request's user turn
and verdict marks as ids with a label per mark, exactly as the router tokenizes a call. The
torch trainer (CPU, CUDA) runs the tool block once per group; MLX repeats it per example.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace

from openhoof_router.core.prompt import PromptCodec
from openhoof_router.core.records import PastTurn, TrainingRecord
from openhoof_router.core.tools import ToolSpec, builtin_catalog, to_spec


@dataclass
class Sample:
    """One request in a group: the message, its earlier turns, and the tools it needs."""

    message: str
    answer: list[str]
    context: list[PastTurn] = field(default_factory=list)


@dataclass
class Group:
    tools: list[ToolSpec]
    samples: list[Sample]
    level: int = 0
    """Level of detail of the tool lines (``prompt.DETAIL_LEVELS``)."""
    source: str = ""


def record_tools(rec: TrainingRecord, catalog: dict[str, ToolSpec] | None = None) -> list[ToolSpec]:
    """The tool specs a record offered (described from the built-in catalog when known)."""
    catalog = catalog if catalog is not None else builtin_catalog()
    if rec.input.tool_schemas:
        return [to_spec(t) for t in rec.input.tool_schemas]
    return [catalog.get(name) or ToolSpec(name=name) for name in rec.input.tools]


def records_to_groups(records: Iterable[TrainingRecord], *, group_size: int, seed: int = 0,
                      shuffle_tools: bool = True, source: str = "") -> list[Group]:
    """Records offering the same tools, in chunks of ``group_size``, each chunk with its own
    (seeded) tool order; chunks come out shuffled."""
    rng = random.Random(seed)
    by_tools: dict[str, list[TrainingRecord]] = {}
    tools_of: dict[str, list[ToolSpec]] = {}
    catalog = builtin_catalog()
    for rec in records:
        tools = record_tools(rec, catalog)
        key = "\x1f".join(t.model_dump_json() for t in tools)
        by_tools.setdefault(key, []).append(rec)
        tools_of.setdefault(key, tools)
    groups = []
    for key, recs in by_tools.items():
        recs = recs[:]
        rng.shuffle(recs)
        for start in range(0, len(recs), group_size):
            tools = tools_of[key][:]
            if shuffle_tools:
                rng.shuffle(tools)
            chunk = recs[start:start + group_size]
            groups.append(Group(tools, [Sample(r.input.user_message, r.tool_names, list(r.input.context))
                                        for r in chunk], source=source))
    rng.shuffle(groups)
    return groups


@dataclass(frozen=True)
class EncodedItem:
    """One request of a group as ids: user turn (earlier turns included) + verdict segment,
    the verdict positions within them, and the label at each (1 = needed; "no tool" last)."""

    ids: tuple[int, ...]
    positions: tuple[int, ...]
    labels: tuple[int, ...]


@dataclass(frozen=True)
class EncodedGroup:
    prefix: tuple[int, ...]
    items: tuple[EncodedItem, ...]

    @property
    def tokens(self) -> int:
        return len(self.prefix) + sum(len(i.ids) for i in self.items)

    @property
    def lengths(self) -> list[int]:
        return [len(i.ids) for i in self.items]


def split_group(group: EncodedGroup, budget: int) -> list[EncodedGroup]:
    """``group`` in pieces whose requests, padded to the piece's longest, take at most
    ``budget`` tokens (a request longer than that is a piece of its own); the group itself
    when it fits.

    A CPU step's memory grows with a group's padded requests (about 2 MB a token for Gemma
    3 270M with LoRA, measured): eight follow-ups of 169 tokens took 2.7 GB over the resting
    RSS. Pieces run the tool block once each; requests go in by length, so padding is small.
    """
    lengths = group.lengths
    if not lengths or len(lengths) * max(lengths) <= budget:
        return [group]
    pieces: list[list[int]] = [[]]
    for i in sorted(range(len(lengths)), key=lengths.__getitem__):  # shortest first
        if pieces[-1] and (len(pieces[-1]) + 1) * lengths[i] > budget:
            pieces.append([])
        pieces[-1].append(i)
    return [replace(group, items=tuple(group.items[i] for i in piece)) for piece in pieces]


def encode_groups(codec: PromptCodec, groups: Sequence[Group], *,
                  max_tokens: int) -> tuple[list[EncodedGroup], int]:
    """Encode groups for training; requests longer than ``max_tokens`` are dropped (and counted)."""
    out, dropped = [], 0
    for group in groups:
        items = []
        for s in group.samples:
            ex = codec.encode(group.tools, s.message, s.answer, s.context, level=group.level)
            ids = ex.user + ex.segment.ids
            if len(ex.prefix) + len(ids) > max_tokens:
                dropped += 1
                continue
            items.append(EncodedItem(ids, tuple(len(ex.user) + p for p in ex.segment.positions), ex.labels))
        if items:
            out.append(EncodedGroup(codec.tool_block(group.tools, group.level), tuple(items)))
    return out, dropped


def split_records(records: Sequence[TrainingRecord],
                  fraction: float) -> tuple[list[TrainingRecord], list[TrainingRecord]]:
    """A stable train/validation split: by a hash of the message, so it survives new data."""
    train: list[TrainingRecord] = []
    val: list[TrainingRecord] = []
    for rec in records:
        digest = hashlib.sha256(rec.input.user_message.encode("utf-8", "replace")).digest()
        (val if fraction and digest[0] / 256 < fraction else train).append(rec)
    return train, val
