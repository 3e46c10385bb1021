"""File-locked JSONL: appends that never interleave, reads that never die on a bad line.

Writers take a ``filelock`` lock beside the file (``X.jsonl.lock``) and write each batch of
lines with one ``write`` + ``flush`` + ``fsync``, so threads and processes never tear or
lose each other's lines. Readers skip lines that do not parse (a torn last line after a
crash, hand edits) and count them instead of failing.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, Iterable, Iterator, TypeVar

from filelock import FileLock
from pydantic import BaseModel, ValidationError

T = TypeVar("T", bound=BaseModel)


class LogWriteError(OSError):
    """The log folder or file cannot be written."""


def _line(record: Any) -> str:
    if isinstance(record, BaseModel):
        text = record.model_dump_json()
    else:
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


def append_jsonl(path: str | os.PathLike[str], records: Iterable[Any] | Any) -> int:
    """Append one record or many, under the file lock. Returns the number of lines written."""
    path = Path(path)
    if isinstance(records, (dict, BaseModel)):
        records = [records]
    payload = "".join(_line(r) for r in records)
    if not payload:
        return 0
    ensure_writable(path.parent)
    with lock_for(path):
        # A previous writer may have died mid-line: start on a fresh line so ours stays whole.
        needs_newline = False
        try:
            with open(path, "rb") as fh:
                fh.seek(-1, os.SEEK_END)
                needs_newline = fh.read(1) != b"\n"
        except (FileNotFoundError, OSError):
            pass
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(("\n" if needs_newline else "") + payload)
            fh.flush()
            os.fsync(fh.fileno())
    return payload.count("\n")


@dataclass
class ReadResult(Generic[T]):
    records: list[Any] = field(default_factory=list)
    skipped: int = 0
    """Lines that were not valid JSON or did not fit the record model."""
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
    with open(path, "r", encoding="utf-8", errors="replace") as fh:
        for number, line in enumerate(fh, 1):
            line = line.strip()
            if not line:
                continue
            try:
                data = json.loads(line)
                if not isinstance(data, dict):
                    raise ValueError("not a JSON object")
                result.records.append(model.model_validate(data) if model else data)
            except (ValueError, ValidationError) as exc:
                result.skipped += 1
                if len(result.errors) < max_errors:
                    result.errors.append(f"{path.name}:{number}: {str(exc).splitlines()[0][:160]}")
    return result
