"""The shared training loop with stand-in step functions (the loop is the part under test)."""

from __future__ import annotations

from openhoof_router.learning.config import TrainConfig
from openhoof_router.learning.data.groups import EncodedGroup, EncodedItem
from openhoof_router.learning.trainers.loop import run_loop


def test_training_without_a_terminal_logs_plain_progress_lines(capfd):
    """Under cron or nohup there is no bar, but stderr still says how far training got."""
    groups = [EncodedGroup(prefix=(1, 2), items=(EncodedItem((3, 4), (1,), (1,)),) * 4) for _ in range(6)]
    losses = iter([3.0, 2.0, 1.5])
    history, steps, seen = run_loop(groups, [], TrainConfig(batch_size=8), lambda g, lr: next(losses),
                                    lambda v: 0.0, progress=True)
    err = capfd.readouterr().err  # pytest's captured stderr is not a terminal
    assert steps == 3 and seen == 24 and [r["loss"] for r in history] == [3.0, 2.0, 1.5]
    assert "training: step 3/3, loss 1.5000" in err
    run_loop(groups, [], TrainConfig(batch_size=8), lambda g, lr: 1.0, lambda v: 0.0, progress=False)
    assert capfd.readouterr().err == ""


def test_the_allocator_is_steadied_and_freed_memory_handed_back():
    import sys

    from openhoof_router.models.allocator import release_memory, steady_allocator

    assert steady_allocator() is sys.platform.startswith("linux")  # glibc's mallopt took the setting
    release_memory()  # never raises, whatever the platform


def test_groups_over_the_step_budget_run_in_pieces_by_length():
    from openhoof_router.learning.data.groups import split_group

    lengths = [10, 40, 12, 41, 11, 90]
    group = EncodedGroup(prefix=(1, 2, 3), items=tuple(EncodedItem((7,) * n, (n - 1,), (i % 2,))
                                                       for i, n in enumerate(lengths)))
    assert split_group(group, 6 * 90) == [group]  # fits whole: untouched
    pieces = split_group(group, 100)
    assert [p.lengths for p in pieces] == [[10, 11, 12], [40, 41], [90]]  # padded: 36, 82, 90 tokens
    assert all(p.prefix == group.prefix for p in pieces)
    assert sorted(it.ids for p in pieces for it in p.items) == sorted(it.ids for it in group.items)  # none lost
    assert sum(len(p.items) for p in pieces) == len(lengths)  # or doubled
    assert [p.lengths for p in split_group(group, 50)] == [[10, 11, 12], [40], [41], [90]]  # 90 > 50: alone
    small = EncodedGroup(prefix=(1,), items=tuple(EncodedItem((5,) * n, (n - 1,), (1,)) for n in (30, 5, 31)))
    assert [p.lengths for p in split_group(small, 62)] == [[5, 30], [31]]
