"""The training loop every CPU-side trainer shares (torch on CPU, MLX): step plan, learning
rate schedule, validation, history, progress, checkpoints. A backend supplies two
functions: ``step(groups, lr) -> loss`` and ``val(groups) -> loss``.

A step holds whole groups until it has at least ``batch_size`` examples, and its loss is
the sum over its examples divided by their number: every example weighs the same, whether
its group held one request or twelve.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

from openhoof_router.learning.config import TrainConfig

StepFn = Callable[[Sequence[Any], float], float]
ValFn = Callable[[Sequence[Any]], float]


VAL_POINTS = 4
"""Validation passes in a run, evenly spaced, the last at the last step: enough for the loss
plot. Each costs a forward pass over the validation split (~11 s for the 92 requests of
``hoof-train run`` on 2 cores; it ran 7 times, 77 s of a 15.6-minute run, at 1 in 6 steps)."""


def plan_steps(groups: Sequence[Any], batch_size: int) -> list[list[int]]:
    """Consecutive groups packed into steps of at least ``batch_size`` examples."""
    steps: list[list[int]] = []
    current: list[int] = []
    count = 0
    for i, group in enumerate(groups):
        current.append(i)
        count += len(group.items)
        if count >= batch_size:
            steps.append(current)
            current, count = [], 0
    if current:
        steps.append(current)
    return steps


def learning_rate(cfg: TrainConfig, step: int, total: int) -> float:
    """Linear warm-up from 0, then linear decay to 0 (HF's ``linear`` schedule); step from 0."""
    warmup = int(total * cfg.warmup_ratio)
    if step < warmup:
        return cfg.lr * (step + 1) / (warmup + 1)
    return cfg.lr * max(0.0, (total - step) / max(1, total - warmup))


def show_progress(progress: bool) -> bool:
    """Bars only for people: off when asked, and when stderr is not a terminal."""
    return progress and sys.stderr.isatty()


LOG_EVERY_S = 60.0
"""Without a bar (stderr not a terminal, e.g. cron or nohup), one plain progress line this often."""


def log_line(desc: str, n: int, total: int, loss: float, elapsed: float) -> str:
    left = elapsed / n * (total - n)
    return f"{desc}: step {n}/{total}, loss {loss:.4f}, {elapsed / 60:.1f} min elapsed, ~{left / 60:.1f} min left"


def run_loop(
    train: Sequence[Any],
    val: Sequence[Any],
    cfg: TrainConfig,
    step: StepFn,
    validate: ValFn,
    *,
    progress: bool = True,
    desc: str = "training",
    checkpoint: Callable[[int, list[dict]], None] | None = None,
    checkpoint_every: int = 0,
    resume: tuple[int, list[dict]] | None = None,
) -> tuple[list[dict], int, int]:
    """Run the planned steps; returns (history, steps, examples seen).

    ``checkpoint(step, history)`` is called every ``checkpoint_every`` steps; ``resume``
    = (steps done, their history) skips those steps of the same plan (the trainer has
    restored the weights and optimizer state saved at that step), so an interrupted run
    ends where an uninterrupted one would.
    """
    from tqdm.auto import tqdm

    plan = plan_steps(train, cfg.batch_size)
    if cfg.max_steps:
        while len(plan) < cfg.max_steps:  # smoke runs may ask for more steps than one pass has
            plan = plan + plan_steps(train, cfg.batch_size)
        plan = plan[: cfg.max_steps]
    total = len(plan)
    val_steps = {math.ceil(total * k / VAL_POINTS) for k in range(1, VAL_POINTS + 1)}
    done, history = resume if resume is not None else (0, [])
    history = list(history[:done])
    seen = sum(len(train[i].items) for indices in plan[:done] for i in indices)
    started = time.perf_counter()
    bar = tqdm(total=total, initial=done, desc=desc, unit="step", disable=not show_progress(progress))
    plain_log = progress and bar.disable
    last_log = started
    for n, indices in enumerate(plan, 1):
        if n <= done:
            continue
        groups = [train[i] for i in indices]
        lr = learning_rate(cfg, n - 1, total)
        loss = step(groups, lr)
        if not math.isfinite(loss):
            raise FloatingPointError(f"training diverged at step {n} (loss {loss}); try a lower --lr")
        seen += sum(len(g.items) for g in groups)
        row: dict = {"step": n, "examples": seen, "loss": round(loss, 5), "lr": lr,
                     "elapsed_s": round(time.perf_counter() - started, 1)}
        if val and n in val_steps:
            row["val_loss"] = round(validate(val), 5)
        history.append(row)
        bar.update(1)
        bar.set_postfix({k: f"{v:.3f}" for k, v in row.items() if k.endswith("loss")})
        now = time.perf_counter()
        if plain_log and (now - last_log >= LOG_EVERY_S or n == total):
            print(log_line(desc, n - done, total - done, loss, now - started), file=sys.stderr, flush=True)
            last_log = now
        if checkpoint is not None and checkpoint_every and n % checkpoint_every == 0 and n < total:
            checkpoint(n, history)
    bar.close()
    return history, total, seen
