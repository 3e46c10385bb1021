"""The pieces of state reuse that need no model: the longest-prefix LRU, the on-disk store of
evaluated tool blocks (real files), the process-wide registry of shared backends, and the
text bound applied before tokenizing."""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import pytest

from openhoof_router.core.engine import bound_text
from openhoof_router.models.backend import Backend, PrefixCache, common_prefix
from openhoof_router.models.shared import acquire, holders, release
from openhoof_router.models.state_store import StateStore


def test_common_prefix():
    assert common_prefix([1, 2, 3], [1, 2, 4, 5]) == 2
    assert common_prefix((1, 2), [1, 2, 3]) == 2
    assert common_prefix([], [1]) == 0
    assert common_prefix([7], [8]) == 0


def test_longest_prefix_lru():
    cache: PrefixCache[str] = PrefixCache(3)
    cache.put([1, 2, 3], "block")
    cache.put([1, 2, 3, 10, 11], "turn1")
    cache.put([1, 2, 3, 20], "other")
    key, state, n = cache.longest([1, 2, 3, 10, 11, 12])
    assert (state, n) == ("turn1", 5)
    assert cache.longest([9, 9]) is None
    assert cache.longest([1, 2, 9], minimum=3) is None
    assert cache.longest([1, 2, 9])[2] == 2
    cache.retire(key)  # superseded: the first to go
    cache.put([1, 2, 3, 10, 11, 12], "turn2")
    assert cache.get([1, 2, 3, 10, 11]) is None and len(cache) == 3
    cache.put([1, 2, 3, 20], "other again")  # same key: replaced, not added
    assert cache.get([1, 2, 3, 20]) == "other again" and len(cache) == 3
    assert cache.pop([1, 2, 3]) == "block" and len(cache) == 2
    cache.clear()
    assert len(cache) == 0


def test_prefix_cache_bounded_by_weight():
    cache: PrefixCache[bytes] = PrefixCache(100, weigh=len, max_weight=250)
    for i in range(5):
        cache.put([i], bytes(100))
        assert cache.weight <= 250
    assert [k for k in range(5) if cache.get([k]) is not None] == [3, 4]
    cache.put([9], bytes(1000))  # one entry over the bound is still kept (the newest)
    assert len(cache) == 1 and cache.weight == 1000


def test_state_store_round_trip_corruption_and_identity(tmp_path):
    store = StateStore(tmp_path / "states", "model-a")
    tokens = list(range(100))
    blob = os.urandom(5000)
    path = store.save(tokens, blob)
    assert path is not None and path.parent == tmp_path / "states"
    assert store.load(tokens) == blob
    assert store.load(tokens[:-1]) is None  # other tokens, other file
    assert StateStore(tmp_path / "states", "model-b").load(tokens) is None  # another model never reads it
    assert not list((tmp_path / "states").glob(".*.tmp"))  # written atomically: no leftovers

    path.write_bytes(path.read_bytes()[:-10])  # truncated: ignored and removed, so it is written again
    assert store.load(tokens) is None and not path.exists()
    store.save(tokens, blob)
    path.write_bytes(b"garbage")
    assert store.load(tokens) is None and not path.exists()

    other = StateStore(tmp_path / "states", "model-b")  # a foreign file renamed to this name is refused
    foreign = other.save(tokens, blob)
    os.replace(foreign, store.path(tokens))
    assert store.load(tokens) is None


def test_state_store_is_bounded_least_recently_used_first(tmp_path):
    store = StateStore(tmp_path, "m", max_bytes=3 * 1100)
    for i in range(3):
        store.save([i] * 70, bytes(1000))
        os.utime(store.path([i] * 70), ns=(i * 10**9, i * 10**9))
    assert store.load([0] * 70) is not None  # a read makes it the most recent
    store.save([3] * 70, bytes(1000))
    kept = {i for i in range(4) if store.path([i] * 70).exists()}
    assert kept == {0, 2, 3}


def test_state_store_survives_an_unwritable_folder(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    assert StateStore(blocker / "states", "m").save([1] * 70, b"x") is None


class _Counting(Backend):
    """A backend that holds nothing; counts how often its memory would be freed."""

    freed = 0

    def encode(self, text: str) -> list[int]:
        return [ord(c) for c in text]

    def control(self, piece: str) -> int:
        return 1

    def detokenize(self, ids: Sequence[int]) -> str:
        return "".join(map(chr, ids))

    def start(self, prefix: Sequence[int], *, use_cache: bool = True) -> None:
        pass

    def feed(self, ids: Sequence[int]) -> np.ndarray:
        return np.zeros(4, dtype=np.float32)

    def _free(self) -> None:
        type(self).freed += 1


def test_shared_backends_are_reference_counted():
    _Counting.freed = 0
    loads = []

    def load() -> Backend:
        loads.append(1)
        return _Counting()

    a = acquire(("test", "model-x"), load)
    b = acquire(("test", "model-x"), load)
    c = acquire(("test", "model-y"), load)
    assert a is b and a is not c and len(loads) == 2 and holders(a) == 2
    a.close()
    assert _Counting.freed == 0 and holders(b) == 1
    b.close()
    assert _Counting.freed == 1 and holders(b) == 0
    d = acquire(("test", "model-x"), load)  # freed: the next holder loads it again
    assert d is not a and len(loads) == 3
    for backend in (c, d):
        backend.close()
    assert _Counting.freed == 3
    assert release(_Counting()) is True  # never shared: its owner frees it
    assert a.lock is a.lock and a.lock is not c.lock


@pytest.mark.parametrize("limit", [60, 3000])
def test_bound_text_keeps_start_and_end(limit):
    text = "A" * 10 + "x" * 200_000 + "Z" * 10
    cut, notes = bound_text(text, limit)
    assert len(cut) == limit and cut.startswith("A" * 10) and cut.endswith("Z" * 10)
    assert notes == [f"message cut from {len(text)} to {limit} characters before tokenizing"]
    assert bound_text("short", limit) == ("short", [])
