"""LoRA training on CPU (transformers + peft), shaped by where the time goes.

Two facts rule a CPU step of Gemma 3 270M:
  - the 262k-token output head dominates when it runs on every position, so logits are
    computed only at the answer positions (4.5 s instead of 15 s a step, measured);
  - the tool block is most of every prompt and identical within a group, so it runs
    *once* per group: its KV state, computed with the LoRA weights and gradients
    attached, is repeated across the group's requests, and only their short user turns
    and answers run per request.
The loss equals a full forward pass over each prompt+answer (tested), at a fraction of the
cost. Results are deterministic for a given seed and thread count (tested).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Sequence

from openhoof_router.models.base_model import BaseModelRef
from openhoof_router.store.paths import Paths
from openhoof_router.core.prompt import PromptCodec
from openhoof_router.learning.config import TARGET_MODULES, TrainConfig, TrainResult
from openhoof_router.learning.data.groups import EncodedGroup, Group, encode_groups
from openhoof_router.learning.trainers.loop import run_loop
from openhoof_router.learning.trainers.memory import PeakMemory

PEFT_DIR = "peft"


def group_loss(lm: Any, group: EncodedGroup, pad_id: int = 0):
    """Summed cross-entropy over the answer tokens of a group sharing one prefix."""
    import torch
    from transformers import DynamicCache

    prefix, items = group.prefix, group.items
    decoder, head = lm.model, lm.lm_head
    size = len(items)
    cache = DynamicCache(config=lm.config)
    decoder(input_ids=torch.tensor([prefix]), cache=cache, use_cache=True)
    if size > 1:
        cache.batch_repeat_interleave(size)  # differentiable copy: gradients flow back into the prefix
    width = max(len(u) + len(a) for u, a in items)
    suffix = torch.full((size, width), pad_id, dtype=torch.long)
    mask = torch.zeros((size, len(prefix) + width), dtype=torch.long)
    mask[:, : len(prefix)] = 1
    rows, cols, targets = [], [], []
    for i, (user, answer) in enumerate(items):
        seq = user + answer
        suffix[i, : len(seq)] = torch.tensor(seq)
        mask[i, len(prefix) : len(prefix) + len(seq)] = 1
        for j, token in enumerate(answer):  # the hidden state *before* each answer token predicts it
            rows.append(i)
            cols.append(len(user) - 1 + j)
            targets.append(token)
    hidden = decoder(input_ids=suffix, attention_mask=mask, cache=cache, use_cache=True).last_hidden_state
    logits = head(hidden[rows, cols])
    softcap = getattr(lm.config, "final_logit_softcapping", None)
    if softcap:
        logits = torch.tanh(logits / softcap) * softcap
    return torch.nn.functional.cross_entropy(logits.float(), torch.tensor(targets), reduction="sum")


def cpu_has_bf16() -> bool:
    """True where the CPU multiplies bfloat16 natively (AVX512-BF16 or AMX): there a bf16
    base makes a training step about twice as fast; elsewhere bf16 is emulated and slow."""
    try:
        with open("/proc/cpuinfo") as fh:
            flags = next((line for line in fh if line.startswith("flags")), "")
    except OSError:
        return False
    return " avx512_bf16" in flags or " amx_bf16" in flags


def train_dtype(cfg: TrainConfig) -> str:
    if cfg.dtype != "auto":
        return cfg.dtype
    return "bfloat16" if cpu_has_bf16() else "float32"


def attach_lora(model: Any, cfg: TrainConfig, start_from: Path | None = None) -> Any:
    """A PEFT model: new LoRA layers, or the adapter in ``start_from`` made trainable."""
    from peft import LoraConfig, PeftModel, get_peft_model

    if start_from is not None:
        peft_model = PeftModel.from_pretrained(model, str(start_from), is_trainable=True)
    else:
        peft_model = get_peft_model(model, LoraConfig(
            r=cfg.lora_rank, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
            target_modules=list(TARGET_MODULES), bias="none", task_type="CAUSAL_LM",
        ))
    for param in peft_model.parameters():  # the adapter trains in float32 over any base precision
        if param.requires_grad:
            param.data = param.data.float()
    return peft_model


def train_cpu(
    train: Sequence[Group],
    val: Sequence[Group],
    cfg: TrainConfig,
    out_dir: Path,
    base: BaseModelRef | None,
    *,
    paths: Paths | None = None,
    progress: bool = True,
    model: Any = None,
    tokenizer: Any = None,
    start_from: Path | None = None,
    checkpoint_every: int = 0,
) -> TrainResult:
    """Train a LoRA adapter; saves it in PEFT format to ``out_dir/peft``.

    ``model``/``tokenizer`` may be passed in (tests use a tiny Gemma 3 configuration);
    ``start_from`` is a PEFT adapter folder to continue from.
    """
    import torch

    from openhoof_router.models.hf import HFTokenizer, load_float_model

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    torch.use_deterministic_algorithms(True)
    started = time.perf_counter()
    peak = PeakMemory().start()
    if model is None:
        model, tokenizer = load_float_model(base, paths, dtype=train_dtype(cfg))
    codec = PromptCodec(HFTokenizer(tokenizer))
    train_enc, dropped = encode_groups(codec, train, max_tokens=cfg.max_tokens)
    val_enc, _ = encode_groups(codec, val, max_tokens=cfg.max_tokens)
    if not train_enc:
        raise ValueError(f"no training examples left ({dropped} longer than {cfg.max_tokens} tokens)")
    peft_model = attach_lora(model, cfg, start_from)
    lm = peft_model.get_base_model()  # LoRA layers are injected in place
    pad_id = tokenizer.pad_token_id or 0
    params = [p for p in peft_model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.0)
    adapter_dir = out_dir / PEFT_DIR

    def step(groups: Sequence[EncodedGroup], lr: float) -> float:
        for g in optimizer.param_groups:
            g["lr"] = lr
        n = sum(len(g.items) for g in groups)
        total = 0.0
        for group in groups:  # one backward per group: only one group's graph is alive at a time
            loss = group_loss(lm, group, pad_id) / n
            loss.backward()
            total += float(loss.item())
        torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return total

    def validate(groups: Sequence[EncodedGroup]) -> float:
        peft_model.eval()
        with torch.no_grad():
            total = sum(float(group_loss(lm, g, pad_id).item()) for g in groups)
        peft_model.train()
        return total / sum(len(g.items) for g in groups)

    def save(step_no: int | None = None) -> None:
        target = adapter_dir if step_no is None else out_dir / "checkpoints" / f"step-{step_no:06d}"
        peft_model.save_pretrained(str(target))

    peft_model.train()
    history, steps, seen = run_loop(train_enc, val_enc, cfg, step, validate, progress=progress,
                                    checkpoint=save, checkpoint_every=checkpoint_every)
    save()
    peak.stop()
    return TrainResult(backend=f"cpu-{train_dtype(cfg) if base is not None else 'given'}", adapter_dir=adapter_dir, history=history, steps=steps, examples=seen,
                       duration_s=time.perf_counter() - started, peak_rss_mb=peak.peak_rss_mb)
