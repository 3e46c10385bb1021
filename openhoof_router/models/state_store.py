"""Evaluated tool blocks on disk, so a restarted router serves a known tool list at once.

Reading a tool block costs seconds (4–9 s for a long list on 2 CPU cores), and a new process
would pay it again for every list. :class:`StateStore` keeps each block's evaluated state (the
backend's sequence-state blob, a few MB) in ``Paths.state_cache``, one file per
(model identity, token sequence):

- the file name is a hash of the model's identity (model file, adapter, cache layout, library
  version) and of the tokens; the file repeats both hashes in a header, so a renamed,
  truncated or foreign file is never restored (it is dropped and written again);
- files are written to a temporary name and renamed (a reader never sees half a file);
- the folder is bounded (``max_bytes``): the least recently used files go first; a read
  touches the file's mtime.
"""

from __future__ import annotations

import hashlib
import os
import struct
from collections.abc import Sequence
from pathlib import Path

import numpy as np

MAGIC = b"OHKV1\0"
_HEADER = struct.Struct("<6s32s32sQ")
"""magic, sha256(model identity), sha256(tokens), payload length."""
DEFAULT_MAX_BYTES = 512 * 2**20
MIN_TOKENS = 64
"""Shorter prefixes are cheaper to evaluate than to read back."""


def token_digest(tokens: Sequence[int]) -> bytes:
    return hashlib.sha256(np.asarray(tokens, dtype="<i4").tobytes()).digest()


class StateStore:
    """A bounded folder of state blobs for one model identity.

    Args:
        folder: where the files live (created on first write).
        identity: everything the blob depends on besides the tokens (see the module docs).
        max_bytes: total size kept; older files are removed past it.
    """

    def __init__(self, folder: str | os.PathLike[str], identity: str, *, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.folder = Path(folder)
        self.identity = identity
        self._model = hashlib.sha256(identity.encode("utf-8")).digest()
        self.max_bytes = max_bytes

    def path(self, tokens: Sequence[int]) -> Path:
        name = hashlib.sha256(self._model + token_digest(tokens)).hexdigest()[:40]
        return self.folder / f"{name}.kv"

    def load(self, tokens: Sequence[int]) -> bytes | None:
        """The blob saved for ``tokens``; None when there is none or the file is not whole
        (such a file is removed, so the next save writes it again)."""
        path = self.path(tokens)
        try:
            data = path.read_bytes()
        except OSError:
            return None
        if len(data) >= _HEADER.size:
            magic, model, digest, size = _HEADER.unpack_from(data)
            if (magic == MAGIC and model == self._model and digest == token_digest(tokens)
                    and size == len(data) - _HEADER.size):
                try:
                    os.utime(path)  # recently used: kept longest
                except OSError:
                    pass
                return data[_HEADER.size:]
        self.discard(tokens)
        return None

    def discard(self, tokens: Sequence[int]) -> None:
        """Remove the file for ``tokens`` (a blob the backend refused)."""
        try:
            self.path(tokens).unlink()
        except OSError:
            pass

    def save(self, tokens: Sequence[int], blob: bytes) -> Path | None:
        """Write ``blob`` for ``tokens`` atomically, then trim the folder; None if the disk refused
        (a full or read-only cache must not stop routing)."""
        path = self.path(tokens)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            with open(tmp, "wb") as fh:
                fh.write(_HEADER.pack(MAGIC, self._model, token_digest(tokens), len(blob)))
                fh.write(blob)
            os.replace(tmp, path)
        except OSError:
            try:
                tmp.unlink(missing_ok=True)
            except OSError:  # the folder itself is unusable
                pass
            return None
        self.trim()
        return path

    def trim(self) -> None:
        """Remove the least recently used files until the folder holds at most ``max_bytes``."""
        files = []
        for f in self.folder.glob("*.kv"):
            try:
                st = f.stat()
            except OSError:  # removed by another process meanwhile
                continue
            files.append((st.st_mtime_ns, st.st_size, f))
        total = sum(size for _, size, _ in files)
        for _, size, f in sorted(files, key=lambda item: item[0]):
            if total <= self.max_bytes:
                break
            try:
                f.unlink()
                total -= size
            except OSError:
                pass


__all__ = ["DEFAULT_MAX_BYTES", "MIN_TOKENS", "StateStore", "token_digest"]
