"""Pictures people would rather look at: the loss curve and the confusion matrix."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # headless: files only
    import matplotlib.pyplot as plt

    return plt


def plot_loss(history: Sequence[dict], out: Path, title: str = "LoRA training loss") -> Path | None:
    """Train loss per step and validation loss where measured."""
    train = [(r["step"], r["loss"]) for r in history if "loss" in r]
    val = [(r["step"], r["val_loss"]) for r in history if "val_loss" in r]
    if not train and not val:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    if train:
        ax.plot(*zip(*train, strict=True), label="train", linewidth=1)
    if val:
        ax.plot(*zip(*val, strict=True), "o-", label="validation")
    ax.set_xlabel("step")
    ax.set_ylabel("loss (verdicts)")
    ax.set_yscale("log")
    ax.set_title(title)
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def plot_confusion(confusion: dict[str, dict[str, int]], out: Path, title: str = "Routing confusion") -> Path | None:
    """Rows: expected label; columns: predicted label."""
    if not confusion:
        return None
    labels = sorted(set(confusion) | {c for row in confusion.values() for c in row})
    matrix = [[confusion.get(r, {}).get(c, 0) for c in labels] for r in labels]
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(1.0 + 0.6 * len(labels), 1.0 + 0.55 * len(labels)))
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(len(labels)), labels, rotation=60, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    top = max(max(row) for row in matrix) or 1
    for i, row in enumerate(matrix):
        for j, value in enumerate(row):
            if value:
                ax.text(j, i, str(value), ha="center", va="center",
                        color="white" if value > top / 2 else "black", fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("expected")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def plot_tradeoff(items, thresholds: dict[str, float], default: float, out: Path,
                  title: str = "Thresholds: fallback rate vs accuracy of decisions kept") -> Path | None:
    """Sweep one global threshold (and scale the fitted per-tool ones) and plot both curves."""
    from openhoof_router.learning.evaluation.calibrate import kept

    if not items:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    for label, make in (("one threshold for all", lambda x: ({}, x)),
                        ("fitted per tool, scaled", lambda x: ({k: min(1.0, v * x * 2) for k, v in thresholds.items()},
                                                               min(1.0, default * x * 2)))):
        xs, ys = [], []
        for step in range(0, 101, 2):
            per_tool, base = make(step / 100)
            keep = [it for it in items if kept(it, per_tool, base)]
            xs.append(1 - len(keep) / len(items))
            ys.append(sum(it.right for it in keep) / len(keep) if keep else float("nan"))
        ax.plot(xs, ys, marker=".", label=label)
    fitted = [it for it in items if kept(it, thresholds, default)]
    if fitted:
        ax.plot([1 - len(fitted) / len(items)], [sum(it.right for it in fitted) / len(fitted)], "r*",
                markersize=14, label="fitted")
    ax.set_xlabel("fallback rate (turns sent to the reasoner with all tools)")
    ax.set_ylabel("accuracy of the decisions kept")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
