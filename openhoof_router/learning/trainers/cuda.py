"""LoRA training on CUDA: unsloth ``FastLanguageModel`` + trl ``SFTTrainer``.

The examples reach trl already tokenized by the one prompt codec: each row is the tool
block, the user turn and the verdict marks as ids, with labels masked (-100) everywhere but
the verdict after each mark, so trl trains on exactly the tokens the router serves and
computes the loss on the verdicts only. Without unsloth installed, plain transformers + peft load the model on
the GPU instead. ``device="cpu"`` runs the same code path without a GPU (tests).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from openhoof_router.core.prompt import PromptCodec
from openhoof_router.learning.config import TARGET_MODULES, TrainConfig, TrainResult
from openhoof_router.learning.data.groups import EncodedGroup, Group, encode_groups
from openhoof_router.learning.trainers.memory import PeakMemory
from openhoof_router.models.base_model import BaseModelRef, float_checkpoint
from openhoof_router.store.paths import Paths
from openhoof_router.store.runs import RunLayout

IGNORE = -100


def verdict_rows(groups: Sequence[EncodedGroup], yes_id: int, no_id: int, end_id: int) -> list[dict[str, list[int]]]:
    """trl-ready rows: ``input_ids`` = tool block + user turn + verdict
    segment (+ an end marker, so the last mark has a successor), ``labels`` = "yes"/"no" at
    the token *after* each mark (causal LMs predict ``labels[t + 1]`` from position ``t``)
    and -100 elsewhere. The model never reads a verdict as input, as when serving. (Full-
    vocabulary cross-entropy at those positions; the CPU trainer's loss adds the balanced
    per-request weighting and the listwise term.)"""
    rows = []
    for group in groups:
        for item in group.items:
            ids = list(group.prefix) + list(item.ids) + [end_id]
            labels = [IGNORE] * len(ids)
            for pos, label in zip(item.positions, item.labels, strict=False):
                labels[len(group.prefix) + pos + 1] = yes_id if label else no_id
            rows.append({"input_ids": ids, "labels": labels})
    return rows


def _load_unsloth(base: BaseModelRef, paths: Paths | None, cfg: TrainConfig, start_from: Path | None):
    from unsloth import FastLanguageModel  # noqa: I001 - unsloth must patch before trl loads

    folder = float_checkpoint(base, paths)
    model, tokenizer = FastLanguageModel.from_pretrained(str(folder), max_seq_length=cfg.max_tokens,
                                                         load_in_4bit=False, dtype=None)
    if start_from is not None:
        from peft import PeftModel

        return PeftModel.from_pretrained(model, str(start_from), is_trainable=True), tokenizer
    model = FastLanguageModel.get_peft_model(
        model, r=cfg.lora_rank, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
        target_modules=list(TARGET_MODULES), bias="none", random_state=cfg.seed,
    )
    return model, tokenizer


def train_cuda(
    train: Sequence[Group],
    val: Sequence[Group],
    cfg: TrainConfig,
    out_dir: Path,
    base: BaseModelRef | None,
    *,
    device: str = "cuda",
    paths: Paths | None = None,
    progress: bool = True,
    model: Any = None,
    tokenizer: Any = None,
    start_from: Path | None = None,
) -> TrainResult:
    """Train a LoRA adapter and save it (PEFT format) to ``out_dir/peft``.

    ``model``/``tokenizer`` may be passed in (tests use a tiny Gemma 3 configuration).
    """
    import torch
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import SFTConfig, SFTTrainer

    from openhoof_router.learning.trainers.cpu import attach_lora
    from openhoof_router.learning.trainers.loop import show_progress
    from openhoof_router.models.hf import HFTokenizer, load_float_model

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    started = time.perf_counter()
    peak = PeakMemory().start()
    use_unsloth = False
    if model is None:
        assert base is not None, "a base model or a given model is needed"
        if device == "cuda":
            try:
                model, tokenizer = _load_unsloth(base, paths, cfg, start_from)
                use_unsloth = True
            except ImportError:
                model, tokenizer = load_float_model(base, paths)
        else:
            model, tokenizer = load_float_model(base, paths)
    if not use_unsloth:
        model = attach_lora(model, cfg, start_from)
    codec = PromptCodec(HFTokenizer(tokenizer))

    def rows_of(groups: Sequence[Group]) -> list[dict[str, list[int]]]:
        enc = encode_groups(codec, groups, max_tokens=cfg.max_tokens)[0]
        return verdict_rows(enc, codec.yes_id, codec.no_id, codec.end_id)
    train_rows = rows_of(train)
    val_rows = rows_of(val)
    if not train_rows:
        raise ValueError("no training examples left after encoding")

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

    total_steps = cfg.max_steps or max(1, -(-len(train_rows) // cfg.batch_size))
    args = SFTConfig(
        output_dir=str(out_dir / "trainer_state"),
        num_train_epochs=1,  # the groups already hold every epoch (fresh tool orders each)
        max_steps=cfg.max_steps or -1,
        learning_rate=cfg.lr,
        per_device_train_batch_size=cfg.batch_size,
        per_device_eval_batch_size=max(cfg.batch_size, 8),
        lr_scheduler_type="linear",
        warmup_steps=int(total_steps * cfg.warmup_ratio),
        max_grad_norm=cfg.grad_clip,
        logging_steps=1,
        eval_strategy="steps" if val_rows else "no",
        eval_steps=max(1, total_steps // 6),
        save_strategy="no",
        report_to=[],
        seed=cfg.seed,
        max_length=cfg.max_tokens,
        use_cpu=device == "cpu",
        bf16=device == "cuda" and torch.cuda.is_available() and torch.cuda.is_bf16_supported(),
        dataloader_num_workers=0,
        disable_tqdm=not show_progress(progress),
        gradient_checkpointing=False,
    )
    trainer = SFTTrainer(
        model=model,
        args=args,
        train_dataset=Dataset.from_list(train_rows),
        eval_dataset=Dataset.from_list(val_rows) if val_rows else None,
        processing_class=tokenizer,
        callbacks=[_History()],
    )
    trainer.train()
    adapter_dir = RunLayout(root=out_dir).adapter("cuda")
    trainer.model.save_pretrained(str(adapter_dir), save_embedding_layers=False)  # type: ignore[union-attr,operator]  # a PEFT model here
    peak.stop()
    on_gpu = device == "cuda" and torch.cuda.is_available()
    return TrainResult(
        backend=("cuda-unsloth" if use_unsloth else device),
        adapter_dir=adapter_dir,
        history=history,
        steps=trainer.state.global_step,
        examples=len(train_rows),
        duration_s=time.perf_counter() - started,
        peak_rss_mb=peak.peak_rss_mb,
        peak_gpu_mb=(torch.cuda.max_memory_allocated() / 2**20) if on_gpu else None,
    )
