"""One loaded model per process: a reference-counted registry of backends.

Every ``ToolRouter()`` / ``RouterService()`` without a ``service=`` or ``engine=`` loads its
model through :func:`~openhoof_router.models.loading.load_backend`; without sharing, each
would hold its own copy (about 1.9 s and 480 MB each). :func:`acquire` hands out the backend
already loaded for the same key (backend kind, model file, adapter, window, threads) and
counts the holders; :meth:`Backend.close` calls :func:`release`, and the last holder frees
the model. The backend's state cache (tool blocks, conversations) is shared with it.

Routers that share a backend serialise on :attr:`Backend.lock`, as one engine's calls do.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from typing import Any

Backend = Any
"""Any :class:`~openhoof_router.models.backend.Backend` (not imported: ``Backend.close`` calls
:func:`release`, and the import would close a cycle)."""

_lock = threading.Lock()
_by_key: dict[Hashable, Backend] = {}
_holders: dict[int, int] = {}
"""id(backend) -> number of holders, for backends handed out by :func:`acquire`."""
_keys: dict[int, Hashable] = {}


def acquire(key: Hashable, load: Callable[[], Backend]) -> Backend:
    """The backend registered under ``key``, with one more holder; ``load()`` makes it the first
    time (under the registry's lock: two routers starting together load it once)."""
    with _lock:
        backend = _by_key.get(key)
        if backend is None:
            backend = load()
            _by_key[key] = backend
            _keys[id(backend)] = key
            _holders[id(backend)] = 0
        _holders[id(backend)] += 1
        return backend


def release(backend: Backend) -> bool:
    """Drop one holder of ``backend``; True when the caller must free it (it was the last holder,
    or the backend was never shared)."""
    with _lock:
        count = _holders.get(id(backend))
        if count is None:
            return True
        if count > 1:
            _holders[id(backend)] = count - 1
            return False
        del _holders[id(backend)]
        _by_key.pop(_keys.pop(id(backend)), None)
        return True


def holders(backend: Backend) -> int:
    """How many holders share ``backend`` (0: not shared through this registry)."""
    with _lock:
        return _holders.get(id(backend), 0)


__all__ = ["acquire", "holders", "release"]
