"""Training hyperparameters and results: shared by every trainer backend and the manifest."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

TARGET_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


class TrainConfig(BaseModel):
    """The seed's flags, with its defaults."""

    epochs: float = 3
    lr: float = 2e-4
    batch_size: int = 4
    lora_rank: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.0
    format: Literal["chat", "instruction"] = "chat"
    backend: Literal["auto", "cpu", "cuda", "mlx"] = "auto"
    max_steps: int | None = None
    """Stop after this many optimizer steps (tests and smoke runs)."""
    seed: int = 0
    val_fraction: float = 0.1
    shuffle_tools: bool = True
    """Present the tool list in a shuffled order per example, so no position is learned."""
    threads: int | None = None
    grad_clip: float = 1.0
    warmup_ratio: float = 0.05


class Example(BaseModel):
    """One rendered training example: tool block + user turn, and the answer the loss is on.

    The tool block and the user turn are kept apart because inference tokenizes them
    apart (the block is the cached prefix), and the CPU trainer shares one forward pass
    of the block between the examples of a batch.
    """

    prefix: str
    user: str
    completion: str

    @property
    def prompt(self) -> str:
        return self.prefix + self.user


class TrainResult(BaseModel):
    """What a trainer backend returns; the pipeline turns it into the manifest."""

    backend: str
    adapter_dir: Path
    """PEFT adapter (cpu/cuda) or MLX adapter folder."""
    merged_dir: Path | None = None
    """Float safetensors with the LoRA merged, when the trainer produced it."""
    history: list[dict] = Field(default_factory=list)
    """One row per logged step: step, epoch, loss, and val_loss when measured."""
    steps: int = 0
    duration_s: float = 0.0
    peak_rss_mb: float = 0.0
    peak_gpu_mb: float | None = None
