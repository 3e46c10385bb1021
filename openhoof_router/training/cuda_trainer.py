"""LoRA training on CUDA: unsloth ``FastLanguageModel`` + trl ``SFTTrainer``.

trl's ``SFTTrainer`` on prompt/completion pairs computes the loss on the answer only, and
through its fused LM head projects only the answer positions through the 262k-token
output head. Without unsloth installed, plain transformers + peft load the model on the
GPU instead. (The CPU backend lives in :mod:`.cpu_trainer`: on CPU, sharing the tool
block's forward pass across a batch matters more than anything a GPU trainer does.)
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Sequence

from ..base_model import BaseModelRef, float_checkpoint
from ..paths import Paths
from .config import TARGET_MODULES, Example, TrainConfig, TrainResult
from .cpu_trainer import load_float_model
from .memory import PeakMemory


def _dataset(examples: Sequence[Example]):
    from datasets import Dataset

    return Dataset.from_list([{"prompt": e.prompt, "completion": e.completion} for e in examples])


def _load_unsloth(base: BaseModelRef, paths: Paths | None, cfg: TrainConfig):
    from unsloth import FastLanguageModel  # noqa: I001 - unsloth must patch before trl loads

    folder = float_checkpoint(base, paths)
    model, tokenizer = FastLanguageModel.from_pretrained(str(folder), max_seq_length=1024, load_in_4bit=False,
                                                         dtype=None)
    model = FastLanguageModel.get_peft_model(
        model, r=cfg.lora_rank, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
        target_modules=list(TARGET_MODULES), bias="none", random_state=cfg.seed,
    )
    return model, tokenizer


def train_cuda(
    train: Sequence[Example],
    val: Sequence[Example],
    cfg: TrainConfig,
    out_dir: Path,
    base: BaseModelRef,
    *,
    device: str = "cuda",
    paths: Paths | None = None,
    progress: bool = True,
    model: Any = None,
    tokenizer: Any = None,
) -> TrainResult:
    """Train a LoRA adapter and save it (PEFT format) to ``out_dir/peft``.

    ``model``/``tokenizer`` may be passed in (tests use a tiny Gemma 3 configuration).
    """
    import torch
    from peft import LoraConfig
    from transformers import TrainerCallback
    from trl import SFTConfig, SFTTrainer

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    started = time.perf_counter()
    peak = PeakMemory().start()
    use_unsloth = False
    peft_config = LoraConfig(
        r=cfg.lora_rank, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
        target_modules=list(TARGET_MODULES), bias="none", task_type="CAUSAL_LM",
    )
    if model is None:
        if device == "cuda":
            try:
                model, tokenizer = _load_unsloth(base, paths, cfg)
                use_unsloth, peft_config = True, None
            except ImportError:
                model, tokenizer = load_float_model(base, paths)
        else:
            model, tokenizer = load_float_model(base, paths)

    history: list[dict] = []

    class _History(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            if not logs:
                return
            row = {"step": state.global_step, "epoch": round(state.epoch or 0, 4)}
            if "loss" in logs:
                row["loss"] = float(logs["loss"])
            if "eval_loss" in logs:
                row["val_loss"] = float(logs["eval_loss"])
            if len(row) > 2:
                history.append(row)

    steps_per_epoch = max(1, -(-len(train) // cfg.batch_size))
    total_steps = cfg.max_steps or int(round(steps_per_epoch * cfg.epochs))
    eval_every = max(1, total_steps // 6)
    args = SFTConfig(
        output_dir=str(out_dir / "trainer_state"),
        num_train_epochs=cfg.epochs,
        max_steps=cfg.max_steps or -1,
        learning_rate=cfg.lr,
        per_device_train_batch_size=cfg.batch_size,
        per_device_eval_batch_size=max(cfg.batch_size, 8),
        lr_scheduler_type="linear",
        warmup_steps=int(total_steps * cfg.warmup_ratio),
        max_grad_norm=cfg.grad_clip,
        logging_steps=1,
        eval_strategy="steps" if val else "no",
        eval_steps=eval_every,
        save_strategy="no",
        report_to=[],
        seed=cfg.seed,
        completion_only_loss=True,
        max_length=2048,
        use_cpu=device == "cpu",
        bf16=device == "cuda" and torch.cuda.is_available() and torch.cuda.is_bf16_supported(),
        dataloader_num_workers=0,
        disable_tqdm=not progress,
        gradient_checkpointing=False,
    )
    trainer = SFTTrainer(
        model=model,
        args=args,
        train_dataset=_dataset(train),
        eval_dataset=_dataset(val) if val else None,
        processing_class=tokenizer,
        peft_config=peft_config,
        callbacks=[_History()],
    )
    trainer.train()
    if val:
        final = trainer.evaluate()
        history.append({"step": trainer.state.global_step, "epoch": round(trainer.state.epoch or 0, 4),
                        "val_loss": float(final["eval_loss"])})
    adapter_dir = out_dir / "peft"
    trainer.model.save_pretrained(str(adapter_dir))
    tokenizer.save_pretrained(str(adapter_dir))
    peak.stop()
    return TrainResult(
        backend=("cuda-unsloth" if use_unsloth else device),
        adapter_dir=adapter_dir,
        history=history,
        steps=trainer.state.global_step,
        duration_s=time.perf_counter() - started,
        peak_rss_mb=peak.peak_rss_mb,
        peak_gpu_mb=(torch.cuda.max_memory_allocated() / 2**20) if device == "cuda" and torch.cuda.is_available() else None,
    )


def default_device() -> str:
    try:
        import torch

        return "cuda" if torch.cuda.is_available() and os.environ.get("OPENHOOF_FORCE_CPU") != "1" else "cpu"
    except ImportError:
        return "cpu"
