"""Loading a run safely, and hot reload: follow the ``latest`` pointer without a restart.

:func:`load_checked` is the one way a router takes a model: load it, route a probe
message, and close it again if the probe fails (a corrupt merge can load and still produce
NaNs). Start-up and hot reload both use it.

The trainer writes ``runs/ID`` and switches ``latest.json`` atomically
(:meth:`~openhoof_router.store.runs.ModelRegistry.promote`). :meth:`HotReloader.poll` is
called on every routing call; at most every ``interval`` seconds it compares the pointer's
(mtime, size) stamp, which is one ``stat``. On a change the new run is loaded *outside* the
engine lock (on a background thread by default, so no caller waits), checked, and only
then swapped in with :meth:`RouterEngine.swap_backend`; calls in flight finish on the old
model. A run that fails to load or to probe is refused: the old model keeps serving, a
warning is logged and :attr:`HotReloader.last_error` says why.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from typing import Any, Callable

from openhoof_router.models.loading import Backend, BackendError
from openhoof_router.core.engine import RouterEngine
from openhoof_router.store.runs import ModelRegistry, ServedRun
from openhoof_router.core.tools import builtin_tools

logger = logging.getLogger(__name__)

PROBE_MESSAGE = "Check disk space on the server"

Loader = Callable[[Any], Backend]
"""Turns a model target (a :class:`ServedRun`, ``None`` for the base) into a backend."""


def probe_backend(backend: Backend) -> None:
    """Raise ``BackendError`` unless ``backend`` routes a probe message sanely (finite scores,
    a valid decision)."""
    decision = RouterEngine(backend).route(PROBE_MESSAGE, builtin_tools())
    if not decision.valid:
        raise BackendError(f"probe route failed: {decision.error}")


def load_checked(load: Loader, target: Any) -> Backend:
    """Load ``target`` and probe it; a backend that fails the probe is closed, never returned."""
    backend = load(target)
    try:
        probe_backend(backend)
    except Exception:
        backend.close()
        raise
    return backend


class HotReloader:
    """Watches the ``latest`` pointer and hands new runs to ``swap`` when it changes.

    Args:
        registry: where the pointer lives.
        load: turns a :class:`ServedRun` into a backend.
        swap: installs a checked backend and its run (the service's engine swap).
        interval: seconds between pointer checks (0: every call).
        background: load on a daemon thread (``poll`` never blocks) or inline.
        current_run: the run served now, if any.
        stamp: the pointer stamp the current model corresponds to (default: read it now;
            pass the one read before loading so a promotion during startup is not missed).
    """

    def __init__(
        self,
        registry: ModelRegistry,
        load: Loader,
        swap: Callable[[Backend, ServedRun], None],
        *,
        interval: float = 2.0,
        background: bool = True,
        current_run: str | None = None,
        stamp: Any = "read",
    ) -> None:
        self.registry = registry
        self.load = load
        self.swap = swap
        self.interval = interval
        self.background = background
        self.current_run = current_run
        self.last_error: str | None = None
        """Why the most recent reload was refused (None after a successful one)."""
        self.history: deque[dict[str, Any]] = deque(maxlen=50)
        """Recent reload attempts: run_id, ok, error, seconds, at."""
        self._seen = registry.pointer_stamp() if stamp == "read" else stamp
        self._next_check = 0.0
        self._loading = threading.Lock()
        self._thread: threading.Thread | None = None

    def poll(self) -> None:
        """Cheap check; starts a reload when the pointer changed. Never raises."""
        now = time.monotonic()
        if now < self._next_check:
            return
        self._next_check = now + self.interval
        if self.registry.pointer_stamp() == self._seen or self._loading.locked():
            return
        if self.background:
            thread = threading.Thread(target=self.check, name="openhoof-reload", daemon=True)
            self._thread = thread
            thread.start()
        else:
            self.check()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for a background reload to finish; True if none is running any more."""
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
            return not thread.is_alive()
        return True

    def check(self) -> bool:
        """Reload now if the pointer changed since the last look. True if a new run was swapped in."""
        with self._loading:
            stamp = self.registry.pointer_stamp()
            if stamp == self._seen:
                return False
            self._seen = stamp  # a refused run is not retried until the pointer moves again
            pointer = self.registry.latest()
            run_id = pointer.run_id if pointer else None
            started = time.perf_counter()
            try:
                run = self.registry.latest_run()
                backend = load_checked(self.load, run)
            except Exception as exc:  # anything: the old model must keep serving
                self.last_error = f"refused run {run_id!r}: {exc}"
                self.history.append({"run_id": run_id, "ok": False, "error": str(exc),
                                     "seconds": time.perf_counter() - started, "at": time.time()})
                logger.warning("openhoof-router hot reload %s; still serving %s", self.last_error,
                               repr(self.current_run) if self.current_run else "the model it had")
                return False
            self.swap(backend, run)
            self.current_run, self.last_error = run.run_id, None
            self.history.append({"run_id": run.run_id, "ok": True, "error": None,
                                 "seconds": time.perf_counter() - started, "at": time.time()})
            logger.info("openhoof-router now serving run %s", run.run_id)
            return True
