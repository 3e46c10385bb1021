"""The C allocator's part in a process's memory (glibc; elsewhere these do nothing).

Long CPU work with tensors of many sizes (training; converting a GGUF into float weights)
leaves glibc holding freed memory that RSS still counts: the stages after it would carry
that high-water mark.
"""

from __future__ import annotations

import functools
import sys

M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter numbers (malloc.h)
MMAP_THRESHOLD = 1 << 20


def steady_allocator() -> bool:
    """Keep a long CPU training run's memory flat (glibc; elsewhere a no-op, False).

    glibc serves big blocks from ``mmap`` (handed back to the system when freed), but raises
    that threshold each time one is freed, up to 32 MB: a step's activations then come from
    the heap, whose holes of varied sizes (every tool list has its own length) are rarely
    reused or returned, and RSS grows step after step. A fixed threshold keeps every
    tensor of 1 MB or more on ``mmap``.
    """
    libc = _libc()
    try:
        return libc is not None and bool(libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD))
    except AttributeError:  # not glibc (musl has no mallopt)
        return False


def release_memory() -> None:
    """Hand memory freed by a finished stage back to the system (glibc keeps freed heap
    pages otherwise, and the run's next stages would carry the trainer's high-water mark)."""
    import gc

    gc.collect()
    trim_heap()


def trim_heap() -> None:
    """Return the heap's free pages to the system (glibc ``malloc_trim``; a few ms).

    Called after each training step: the blocks under the mmap threshold (a step's many
    small activations) leave holes that RSS keeps counting, so without it the resting RSS
    between steps crept from 1.2 to 2.2 GB in ten steps (measured), and each step's own
    ~1.2 GB of activations came on top of that."""
    libc = _libc()
    if libc is not None and hasattr(libc, "malloc_trim"):
        libc.malloc_trim(0)


@functools.cache
def _libc():
    if not sys.platform.startswith("linux"):
        return None
    import ctypes
    import ctypes.util

    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None
