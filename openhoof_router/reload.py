"""Hot reload: follow the registry's ``latest`` pointer without a restart.

The trainer writes ``runs/ID`` and switches ``latest.json`` atomically
(:meth:`~openhoof_router.registry.ModelRegistry.promote`). :meth:`HotReloader.poll` is
called on every routing call; at most every ``interval`` seconds it compares the pointer's
(mtime, size) stamp, which is one ``stat``. On a change the new run is loaded *outside* the
engine lock (on a background thread by default, so no caller waits), checked with a probe
route, and only then swapped in with :meth:`RouterEngine.swap_backend`; calls in flight
finish on the old model. A run that fails to load or to probe is refused: the old model
keeps serving, a warning is logged and :attr:`HotReloader.last_error` says why.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .backends import Backend, BackendError
from .engine import RouterEngine
from .prompt import render_tool_block, render_user_turn
from .registry import ModelRegistry
from .tools import builtin_tools

logger = logging.getLogger(__name__)

PROBE_MESSAGE = "Check disk space on the server"

Loader = Callable[[Path], Backend]


def probe_backend(backend: Backend, *, max_tools: int = 3) -> None:
    """Raise ``BackendError`` unless ``backend`` routes a probe message sanely.

    Checks that the next-token scores are finite (a corrupt merge can load and still
    produce NaNs, which the confidence would hide) and that a real route is valid.
    """
    tools = builtin_tools()
    decision = RouterEngine(backend, max_tools=max_tools).route(PROBE_MESSAGE, tools)
    if not decision.valid or decision.error:
        raise BackendError(f"probe route invalid: {decision.error or decision.raw!r}")
    try:  # the route above cached the tool block, so this costs one short evaluation
        backend.start(backend.tokenize(render_tool_block(tools), bos=True))
        logits = backend.feed(backend.tokenize(render_user_turn(PROBE_MESSAGE), bos=False))
    except Exception as exc:
        raise BackendError(f"probe failed: {exc}") from exc
    if not np.all(np.isfinite(logits)):
        raise BackendError("probe failed: the model produced non-finite scores")


class HotReloader:
    """Watches the ``latest`` pointer and swaps ``engine``'s backend when it changes.

    Args:
        engine: the engine to keep current.
        registry: where the pointer lives.
        load: turns a run folder into a backend (e.g. ``load_backend(..., model=run_dir)``).
        interval: seconds between pointer checks (0: every call).
        background: load on a daemon thread (``poll`` never blocks) or inline.
        current_run: the run the engine serves now, if any.
        stamp: the pointer stamp the engine's model corresponds to (default: read it now;
            pass the one read before loading so a promotion during startup is not missed).
    """

    def __init__(
        self,
        engine: RouterEngine,
        registry: ModelRegistry,
        load: Loader,
        *,
        interval: float = 2.0,
        background: bool = True,
        current_run: str | None = None,
        stamp: Any = "read",
    ) -> None:
        self.engine = engine
        self.registry = registry
        self.load = load
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
            info = self.registry.latest() or {}  # read once: run id and folder must match
            run_id = info.get("run_id")
            started = time.perf_counter()
            try:
                run_dir = Path(info["path"]) if info.get("path") else None
                if run_dir is None or not run_dir.is_dir():
                    raise BackendError(f"the latest pointer names no usable run: {info or 'unreadable'}")
                backend = self.load(run_dir)
                try:
                    probe_backend(backend, max_tools=self.engine.max_tools)
                except Exception:
                    backend.close()
                    raise
            except Exception as exc:  # anything: the old model must keep serving
                self.last_error = f"refused run {run_id!r}: {exc}"
                self.history.append({"run_id": run_id, "ok": False, "error": str(exc),
                                     "seconds": time.perf_counter() - started, "at": time.time()})
                logger.warning("openhoof-router hot reload %s; still serving %s", self.last_error,
                               repr(self.current_run) if self.current_run else "the base model")
                return False
            old = self.engine.swap_backend(backend)
            old.close()  # swap_backend waited for calls in flight; nobody uses it now
            self.current_run, self.last_error = run_id, None
            self.history.append({"run_id": run_id, "ok": True, "error": None,
                                 "seconds": time.perf_counter() - started, "at": time.time()})
            logger.info("openhoof-router now serving run %s", run_id)
            return True
