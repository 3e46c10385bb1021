"""Peak memory of a run: the process's high-water RSS, sampled so it covers the whole run."""

from __future__ import annotations

import resource
import sys
import threading


def peak_rss_mb() -> float:
    """The process's lifetime peak RSS (ru_maxrss is KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (2**20 if sys.platform == "darwin" else 2**10)


class PeakMemory:
    """Samples current RSS in a thread; ``peak_rss_mb`` is the highest seen during the run."""

    def __init__(self, interval_s: float = 0.5) -> None:
        self.interval_s = interval_s
        self.peak_rss_mb = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _sample(self) -> None:
        import psutil

        proc = psutil.Process()
        while not self._stop.is_set():
            self.peak_rss_mb = max(self.peak_rss_mb, proc.memory_info().rss / 2**20)
            self._stop.wait(self.interval_s)

    def start(self) -> PeakMemory:
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> float:
        self._stop.set()
        if self._thread:
            self._thread.join()
        return self.peak_rss_mb


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
    if not sys.platform.startswith("linux"):
        return False
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD))
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return False


def release_memory() -> None:
    """Hand memory freed by a finished stage back to the system (glibc keeps freed heap
    pages otherwise, and the run's next stages would carry the trainer's high-water mark)."""
    import gc

    gc.collect()
    if sys.platform.startswith("linux"):
        import ctypes
        import ctypes.util

        try:
            ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim(0)
        except (OSError, AttributeError):
            pass
