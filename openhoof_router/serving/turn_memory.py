"""Routing each human turn once: the memory of recent turns, and single-flight.

An agent calls its model several times in one human turn (after each tool result); the
router answers each of those calls with the turn's first decision, so a turn is routed,
logged and given feedback once. A turn is known by its key
(:func:`~openhoof_router.core.turns.turn_key`). Concurrent calls for one turn (threads, or
asyncio calls run in executor threads) wait for the first one's decision: the same turn
routes once, whatever the concurrency.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from concurrent.futures import Future

from openhoof_router.core.records import RoutingDecision


class TurnMemory:
    """The decisions of the last ``size`` turns, and the turns being routed right now.

    :meth:`route_once` runs ``route`` for a key it has not seen; a call for a key whose
    decision is being made waits for it (single-flight) instead of routing again; a call
    for a remembered key returns the remembered decision. Thread-safe.
    """

    def __init__(self, size: int = 1024) -> None:
        if size < 0:
            raise ValueError("turn memory size must be >= 0")
        self.size = size
        self._done: OrderedDict[Hashable, RoutingDecision] = OrderedDict()
        self._flight: dict[Hashable, Future[RoutingDecision]] = {}
        self._lock = threading.Lock()

    def route_once(self, key: Hashable, route: Callable[[], RoutingDecision]) -> RoutingDecision:
        """The decision for ``key``: remembered, awaited from the call making it, or ``route()``'s.
        An exception from ``route`` reaches every caller waiting on it; the next call retries."""
        with self._lock:
            hit = self._done.get(key)
            if hit is not None:
                self._done.move_to_end(key)
                return hit
            flight = self._flight.get(key)
            leader = flight is None
            if flight is None:
                flight = self._flight[key] = Future()
        if not leader:
            return flight.result()
        try:
            decision = route()
        except BaseException as exc:
            with self._lock:
                self._flight.pop(key, None)
            flight.set_exception(exc)
            raise
        with self._lock:
            if self.size:
                self._done[key] = decision
                while len(self._done) > self.size:
                    self._done.popitem(last=False)
            self._flight.pop(key, None)
        flight.set_result(decision)
        return decision

    def clear(self) -> None:
        """Forget every remembered decision (a new model serves); calls in flight finish."""
        with self._lock:
            self._done.clear()

    def __len__(self) -> int:
        return len(self._done)


__all__ = ["TurnMemory"]
