"""Tool lists stored once, content-addressed, beside the decision log.

A logged decision names its tool list by hash (``input.toolset``) instead of carrying every
tool's schema, so a decision line does not grow with the number of tools offered.
``toolsets/<hash>.json`` holds the list (the tools' OpenAI function schemas, in the order
offered); the hash is the sha256 of the file's bytes, so a file can be checked against its
name. Each file is written once, atomically (temp file, fsync, rename), before the first
line that refers to it; concurrent writers of the same list write the same bytes.

Readers (:func:`resolve_toolsets`) fill ``tools`` (and ``tool_schemas`` when a tool is not
the built-in catalog's, as lines used to carry them) back in. Lines written before
toolsets existed, with names and schemas inline, read as they are.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import uuid
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from openhoof_router.core.records import LoggedDecision, TrainingRecord
from openhoof_router.core.tools import ToolSpec, needs_schemas, normalize_tools
from openhoof_router.store.jsonl import ReadResult, read_jsonl

TOOLSETS_DIR = "toolsets"
"""Folder of the tool lists, inside the folder of the log that refers to them."""
HASH_CHARS = 32


def encode_toolset(schemas: Sequence[dict[str, Any]]) -> bytes:
    """The canonical bytes of a tool list (what is stored and hashed)."""
    return json.dumps(list(schemas), sort_keys=True, separators=(",", ":"), ensure_ascii=True,
                      default=str).encode("ascii")


def toolset_hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:HASH_CHARS]


def _write_once(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())  # on disk before any decision line can name it
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    try:
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)  # the rename too
        finally:
            os.close(fd)
    except OSError:
        pass


class ToolsetStore:
    """The tool lists of one log folder: :meth:`put` when writing, :meth:`get` when reading."""

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self.folder = Path(folder)
        self._lock = threading.Lock()
        # Tool lists written by this process, by the identity of their specs: the hot path
        # neither re-serialises nor stats a list it has stored (the tuple keeps ids unique).
        self._written: OrderedDict[tuple[int, ...], tuple[tuple[ToolSpec, ...], str]] = OrderedDict()
        self._read: dict[str, tuple[list[str], list[dict[str, Any]] | None] | None] = {}

    def path(self, digest: str) -> Path:
        return self.folder / f"{digest}.json"

    def put(self, tools: Sequence[ToolSpec]) -> str:
        """Store ``tools`` (once) and return their hash. Raises ``OSError`` if it cannot."""
        tools = tuple(tools)
        key = tuple(id(t) for t in tools)
        with self._lock:
            hit = self._written.get(key)
        if hit is not None and all(a is b for a, b in zip(hit[0], tools, strict=True)):
            return hit[1]
        data = encode_toolset([t.openai_schema() for t in tools])
        digest = toolset_hash(data)
        path = self.path(digest)
        if not path.is_file() or path.stat().st_size != len(data):
            _write_once(path, data)
        with self._lock:
            self._written[key] = (tools, digest)
            while len(self._written) > 64:
                self._written.popitem(last=False)
        return digest

    def get(self, digest: str) -> tuple[list[str], list[dict[str, Any]] | None] | None:
        """(tool names, schemas when they are needed for training) of a stored list; None when
        the file is missing or does not match its hash."""
        if digest in self._read:
            return self._read[digest]
        found = None
        try:
            data = self.path(digest).read_bytes()
            if toolset_hash(data) == digest:
                schemas = json.loads(data)
                specs = normalize_tools(schemas)
                found = ([s.name for s in specs], schemas if needs_schemas(specs) else None)
        except (OSError, ValueError):
            found = None
        self._read[digest] = found
        return found


def resolve_toolsets(records: Iterable[TrainingRecord], folder: str | os.PathLike[str],
                     errors: list[str] | None = None) -> tuple[list[TrainingRecord], int]:
    """``records`` with their ``toolset`` references filled in from ``folder``; returns the
    records that could be read back and the number dropped (their tool list is missing or
    damaged; the reason goes to ``errors``)."""
    store = ToolsetStore(folder)
    kept: list[TrainingRecord] = []
    dropped = 0
    for rec in records:
        digest = rec.input.toolset
        if digest and not rec.input.tools:
            found = store.get(digest)
            if found is None:
                dropped += 1
                if errors is not None and len(errors) < 20:
                    errors.append(f"tool list {digest} is missing or damaged in {store.folder}")
                continue
            rec.input.tools = list(found[0])
            if found[1] is not None and rec.input.tool_schemas is None:
                rec.input.tool_schemas = found[1]
        kept.append(rec)
    return kept, dropped


def read_decisions(path: str | os.PathLike[str]) -> ReadResult:
    """A decision log's good records (:class:`LoggedDecision`) with their tool lists read
    back from ``toolsets/`` beside it (a record whose list is missing is skipped and counted)."""
    path = Path(path)
    result = read_jsonl(path, LoggedDecision)
    result.records, dropped = resolve_toolsets(result.records, path.parent / TOOLSETS_DIR, result.errors)
    result.skipped += dropped
    return result


__all__ = ["TOOLSETS_DIR", "ToolsetStore", "encode_toolset", "read_decisions", "resolve_toolsets", "toolset_hash"]
