"""Hot reload: follow the ``latest`` pointer without a restart.

The trainer writes ``runs/ID`` and switches ``latest.json`` atomically
(:meth:`~openhoof_router.store.runs.ModelRegistry.promote`). :meth:`HotReloader.poll` is
called on every routing call; at most every ``interval`` seconds it compares the pointer's
(mtime, size) stamp, which is one ``stat``. On a change the new run is loaded *outside* the
engine lock (on a background thread by default, so no caller waits) and checked by
:func:`~openhoof_router.serving.selection.serve` (``promoted_only``: the same checks as at
start-up), and only then swapped in (the service's
:meth:`~openhoof_router.core.engine.RouterEngine.swap_backend`); calls in flight finish on
the old model. A run that fails to load or to probe is refused: the old model keeps
serving, a warning is logged and :attr:`HotReloader.last_error` says why.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from openhoof_router.serving.selection import RunRefused, Selection
from openhoof_router.store.runs import ModelRegistry

logger = logging.getLogger(__name__)


class HotReloader:
    """Watches the ``latest`` pointer and hands new runs to ``install`` when it changes.

    Args:
        registry: where the pointer lives.
        select: loads and checks the promoted run (``serve(..., promoted_only=True)``);
            raises (:class:`~openhoof_router.serving.selection.RunRefused`) to refuse it.
        install: puts a selection into service (the service's engine swap).
        interval: seconds between pointer checks (0: every call).
        background: load on a daemon thread (``poll`` never blocks) or inline.
        current_run: the run served now, if any.
        stamp: the pointer stamp the current model corresponds to (default: read it now;
            pass the one read before loading so a promotion during startup is not missed).
    """

    def __init__(
        self,
        registry: ModelRegistry,
        select: Callable[[], Selection],
        install: Callable[[Selection], None],
        *,
        interval: float = 2.0,
        background: bool = True,
        current_run: str | None = None,
        stamp: Any = "read",
    ) -> None:
        self.registry = registry
        self.select = select
        self.install = install
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
            started = time.perf_counter()
            try:
                selection = self.select()
            except Exception as exc:  # anything: the old model must keep serving
                self.last_error = str(exc) if isinstance(exc, RunRefused) else f"refused the promoted run: {exc}"
                self.history.append({"run_id": getattr(exc, "run_id", None), "ok": False, "error": self.last_error,
                                     "seconds": time.perf_counter() - started, "at": time.time()})
                logger.warning("openhoof-router hot reload %s; still serving %s", self.last_error,
                               repr(self.current_run) if self.current_run else "the model it had")
                return False
            self.install(selection)
            self.current_run, self.last_error = selection.run_id, None
            self.history.append({"run_id": selection.run_id, "ok": True, "error": None,
                                 "seconds": time.perf_counter() - started, "at": time.time()})
            logger.info("openhoof-router now serving run %s", selection.run_id)
            return True
