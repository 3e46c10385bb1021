"""File-locked JSONL: appends that never interleave, reads that never die on a bad line.

Writers take a ``filelock`` lock beside the file (``X.jsonl.lock``) and hand each batch of
lines to the kernel in one ``write`` on an ``O_APPEND`` descriptor, so threads and
processes never tear or lose each other's lines.

What holds when a writer is killed (even with SIGKILL) mid-append: Linux may cut a
``write`` short when a fatal signal arrives while it copies (at a page boundary), so the
dead writer's line can end torn, as the file's *last* line, never in the middle. Readers
skip such an unterminated last line and count it (``ReadResult.torn``); the next append,
under the lock (so the writer of that tail is gone), moves it aside to ``X.jsonl.torn``
before writing. Every line before the last is whole, always; after any completed append,
every line is. An append that fails part-way (a full disk) cuts its own partial line off.

Durability: the routing hot path does not wait for the disk. Appends reach the OS at
once (visible to every reader, and kept if the process dies); :data:`SYNCER` fsyncs the
files written to in the background, at most ``SYNC_INTERVAL`` seconds later, and at exit.
So a power loss or kernel crash can lose the last second of lines; nothing else can.
``append_jsonl(..., sync=True)`` waits for the disk when a caller needs it.

Readers skip lines that do not parse (hand edits, a line cut by a full disk) and count
them instead of failing.
"""

from __future__ import annotations

import atexit
import json
import os
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

from filelock import FileLock
from pydantic import BaseModel, ValidationError

T = TypeVar("T", bound=BaseModel)


class LogWriteError(OSError):
    """The log folder or file cannot be written."""


def _line(record: Any) -> str:
    if isinstance(record, BaseModel):  # via Python objects: pydantic's encoder rejects lone surrogates
        record = record.model_dump(mode="json")
    text = json.dumps(record, ensure_ascii=False, default=str)
    if "\n" in text:  # json never emits raw newlines; guard against custom encoders
        text = text.replace("\n", "\\n")
    return text + "\n"


def lock_for(path: Path) -> FileLock:
    return FileLock(str(path) + ".lock", timeout=30)


def ensure_writable(folder: Path) -> None:
    """Fail early, with the reason, if ``folder`` cannot hold logs."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise LogWriteError(f"cannot create log folder {folder}: {exc}") from exc
    if not os.access(folder, os.W_OK | os.X_OK):
        raise LogWriteError(f"log folder {folder} is not writable")


SYNC_INTERVAL = 1.0


class Syncer:
    """fsyncs files in the background, at most ``interval`` seconds after they were written."""

    def __init__(self, interval: float = SYNC_INTERVAL) -> None:
        self.interval = interval
        self._dirty: set[str] = set()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def mark(self, path: Path) -> None:
        with self._lock:
            self._dirty.add(str(path))
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="openhoof-fsync", daemon=True)
                self._thread.start()

    def flush(self) -> None:
        """fsync every file written since the last sync, now."""
        with self._lock:
            paths, self._dirty = self._dirty, set()
        for path in paths:
            try:
                fd = os.open(path, os.O_RDONLY)
            except OSError:
                continue
            try:
                os.fsync(fd)
            except OSError:
                pass
            finally:
                os.close(fd)

    def _run(self) -> None:
        while True:
            self._wake.wait(self.interval)
            self._wake.clear()
            self.flush()


SYNCER = Syncer()
atexit.register(SYNCER.flush)


def _write_all(fd: int, data: bytes) -> None:
    while data:  # one call in practice; loop only on a partial write (full disk, signals)
        written = os.write(fd, data)
        data = data[written:]


def _repair_tail(fd: int, path: Path, size: int) -> int:
    """Move an unterminated last line (a writer killed mid-append) to ``path.torn``, or end a
    whole one (a hand edit without its newline); returns the new size. Call under the lock."""
    if not size or os.pread(fd, 1, size - 1) == b"\n":
        return size
    start, block = size, 1 << 16
    while start > 0:  # the last newline, reading backwards
        begin = max(0, start - block)
        chunk = os.pread(fd, start - begin, begin)
        cut = chunk.rfind(b"\n")
        if cut >= 0:
            start = begin + cut + 1
            break
        start = begin
    tail = os.pread(fd, size - start, start)
    try:
        json.loads(tail)
        whole = True
    except ValueError:
        whole = False
    if whole:
        _write_all(fd, b"\n")
        return size + 1
    with open(str(path) + ".torn", "ab") as fh:  # kept for inspection, out of the readers' way
        fh.write(tail + b"\n")
    os.ftruncate(fd, start)
    return start


def append_jsonl(path: str | os.PathLike[str], records: Iterable[Any] | Any, *, sync: bool = False) -> int:
    """Append one record or many, under the file lock. Returns the number of lines written.

    ``sync``: wait until the lines are on disk (default: the background syncer sees to it).
    """
    path = Path(path)
    if isinstance(records, (dict, BaseModel)):
        records = [records]
    payload = "".join(_line(r) for r in records)
    if not payload:
        return 0
    ensure_writable(path.parent)
    data = payload.encode("utf-8", "backslashreplace")  # a lone surrogate stays a valid \uXXXX escape
    with lock_for(path):
        fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            size = _repair_tail(fd, path, os.fstat(fd).st_size)
            try:
                _write_all(fd, data)
            except OSError:
                os.ftruncate(fd, size)  # no partial line of ours stays behind
                raise
            if sync:
                os.fsync(fd)
        finally:
            os.close(fd)
    if not sync:
        SYNCER.mark(path)
    return payload.count("\n")


@dataclass
class ReadResult(Generic[T]):
    records: list[Any] = field(default_factory=list)
    skipped: int = 0
    """Lines that were not valid JSON or did not fit the record model (``torn`` included)."""
    torn: int = 0
    """1 when the last line is unterminated and unreadable: a writer died mid-append (the
    next append moves it aside) or is writing it now."""
    errors: list[str] = field(default_factory=list)
    """The first few reasons, with line numbers, for people to fix their files."""

    def __iter__(self) -> Iterator[Any]:
        return iter(self.records)

    def __len__(self) -> int:
        return len(self.records)


def read_jsonl(path: str | os.PathLike[str], model: type[T] | None = None, *, max_errors: int = 20) -> ReadResult:
    """Read every good line of ``path`` (optionally validated as ``model``); count the rest."""
    result: ReadResult = ReadResult()
    path = Path(path)
    if not path.exists():
        return result
    with open(path, encoding="utf-8", errors="replace", newline="\n") as fh:
        for number, raw in enumerate(fh, 1):
            line = raw.strip()
            if not line:
                continue
            try:
                data = json.loads(line)
                if not isinstance(data, dict):
                    raise ValueError("not a JSON object")
                result.records.append(model.model_validate(data) if model else data)
            except (ValueError, ValidationError) as exc:
                result.skipped += 1
                reason = str(exc).splitlines()[0][:160]
                if not raw.endswith("\n"):  # only the last line can lack its newline
                    result.torn, reason = 1, "torn last line (a writer died mid-append, or is writing it)"
                if len(result.errors) < max_errors:
                    result.errors.append(f"{path.name}:{number}: {reason}")
    return result
