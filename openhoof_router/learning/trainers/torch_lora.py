"""LoRA training with torch (transformers + peft), on the CPU or a CUDA GPU: one verdict loss
for both, so a GPU run trains the recipe a CPU run trains, only faster.

It is shaped by where a CPU's time goes. Two facts rule a CPU step of Gemma 3 270M:
  - the 262k-token output head dominates when it runs on every position, so only the
    "yes" and "no" rows of it run, and only at the verdict marks;
  - the tool block is most of every prompt and identical within a group, so it runs
    *once* per group: its KV state, computed with the LoRA weights and gradients
    attached, is repeated across the group's requests, and only their short user turns
    and verdict marks run per request (also when a group is split into pieces to bound
    memory: :class:`ToolBlockState`).
The loss equals the one computed from a full forward pass over each prompt (tested; it needs
transformers >= 5.24), at a fraction of the cost. Results on the CPU are deterministic for a
given seed and thread count (tested).

On a GPU the same steps run in bfloat16 (the LoRA weights in float32), with checkpoints and
resume as on the CPU. trl's ``SFTTrainer`` is not used: its loss is cross-entropy over the
whole vocabulary, not this balanced, listwise verdict loss, so a GPU run trained with it
optimised another objective than a CPU run of the same recipe. Measured on an H200: 5.0x a
CPU's 2 threads per step (benchmarks/gpu_training.py); the step is bound by kernel launches.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from openhoof_router.core.prompt import PromptCodec
from openhoof_router.learning.config import TARGET_MODULES, TrainConfig, TrainResult
from openhoof_router.learning.data.groups import EncodedGroup, Group, encode_groups, split_group
from openhoof_router.learning.trainers.loop import run_loop
from openhoof_router.learning.trainers.memory import PeakMemory
from openhoof_router.models.allocator import steady_allocator, trim_heap
from openhoof_router.models.base_model import BaseModelRef
from openhoof_router.store.paths import Paths
from openhoof_router.store.runs import RunLayout

WIDTH_STEP = 32
"""Padded request widths are multiples of this (see :func:`padded_width`)."""


class ToolBlockState:
    """The tool block's KV state after one pass over it, read by any number of request batches.

    ``detach=False``: batches read the pass itself, so each backward runs back through it
    (one batch per group). ``detach=True``: batches read detached copies, whose gradients
    add up; :meth:`backward` then sends their sum back through the pass once. A group split
    into pieces (to bound memory) so runs its tool block once forward and once backward,
    not once per piece: the same gradient (tested), 17 % fewer tokens in ``hoof-train run``
    and 19 % less time over its first 30 steps (measured side by side on 2 cores).
    """

    def __init__(self, lm: Any, prefix: Sequence[int], *, detach: bool = False) -> None:
        import torch
        from transformers import DynamicCache

        self.length = len(prefix)
        cache: Any = DynamicCache(config=lm.config)  # Any: its layers' union type knows no keys
        lm.model(input_ids=torch.tensor([prefix], device=lm.device), cache=cache, use_cache=True)
        self._cache = cache
        self._source: list[tuple[Any, Any]] = [(layer.keys, layer.values) for layer in cache.layers]
        self._kv = self._source
        if detach:
            self._kv = [(k.detach().requires_grad_(k.requires_grad), v.detach().requires_grad_(v.requires_grad))
                        for k, v in self._source]

    def cache(self, size: int) -> Any:
        """A cache holding the state ``size`` times (a differentiable copy), for one batch to extend."""
        import copy

        cache = copy.copy(self._cache)  # the batch extends its own layers, never the shared ones
        cache.layers = [copy.copy(layer) for layer in self._cache.layers]
        for layer, (keys, values) in zip(cache.layers, self._kv, strict=True):
            layer.keys = keys.repeat_interleave(size, dim=0) if size > 1 else keys
            layer.values = values.repeat_interleave(size, dim=0) if size > 1 else values
        return cache

    def backward(self) -> None:
        """Send the gradients the batches left on the detached state back through the pass
        (nothing to do when they read the pass itself)."""
        import torch

        if self._kv is self._source:
            return
        pairs = [(src, read.grad) for src_pair, read_pair in zip(self._source, self._kv, strict=True)
                 for src, read in zip(src_pair, read_pair, strict=True) if read.grad is not None]
        if pairs:
            torch.autograd.backward([src for src, _ in pairs], [grad for _, grad in pairs])


def padded_width(lengths: Iterable[int]) -> int:
    """The width a batch of requests is padded to: the longest, rounded up to a multiple of
    WIDTH_STEP. Fewer distinct shapes, so fewer of the kernels oneDNN builds and caches per
    shape (the resting RSS crept ~11 MB a step with exact widths)."""
    return -(-max(lengths) // WIDTH_STEP) * WIDTH_STEP


def _after_prefix(lm: Any, state: ToolBlockState, seqs: Sequence[Sequence[int]], pad_id: int) -> Any:
    """The last hidden states of ``seqs``, each read after the tool block in ``state``."""
    import torch

    size, device = len(seqs), lm.device
    cache = state.cache(size)
    width = padded_width(len(s) for s in seqs)
    suffix = torch.full((size, width), pad_id, dtype=torch.long)
    mask = torch.zeros((size, state.length + width), dtype=torch.long)
    mask[:, : state.length] = 1
    for i, seq in enumerate(seqs):
        suffix[i, : len(seq)] = torch.tensor(seq)
        mask[i, state.length : state.length + len(seq)] = 1
    return lm.model(input_ids=suffix.to(device), attention_mask=mask.to(device), cache=cache,
                    use_cache=True).last_hidden_state


LISTWISE_WEIGHT = 0.5
"""Weight of the listwise term: the offered tools (and "no tool") compete for the request."""


def group_loss(lm: Any, group: EncodedGroup, yes_id: int, no_id: int, pad_id: int = 0,
               state: ToolBlockState | None = None):
    """Summed verdict loss of a group sharing one prefix (the tool block runs once; ``state``:
    its pass, already run, e.g. for the group this piece was split from).

    At each verdict position only two logits matter, "yes" and "no": their difference is
    the tool's margin. Per request: a yes/no cross-entropy averaged separately over needed
    and not-needed positions (so twenty unneeded tools do not drown the one needed), plus a
    listwise softmax over all margins ("no tool" included) that puts the mass on the
    needed ones: tools compete, and several can still win.
    """
    import torch
    import torch.nn.functional as F

    items, head = group.items, lm.lm_head
    state = state or ToolBlockState(lm, group.prefix)
    hidden = _after_prefix(lm, state, [it.ids for it in items], pad_id)
    rows: list[int] = []
    cols: list[int] = []
    for i, it in enumerate(items):
        rows.extend([i] * len(it.positions))
        cols.extend(it.positions)
    pair = head.weight[[yes_id, no_id]]
    logits = (hidden[rows, cols] @ pair.T).float()
    softcap = getattr(lm.config, "final_logit_softcapping", None)
    if softcap:
        logits = torch.tanh(logits / softcap) * softcap
    margins = logits[:, 0] - logits[:, 1]
    total = margins.new_zeros(())
    start = 0
    for it in items:
        m = margins[start: start + len(it.positions)]
        start += len(it.positions)
        y = torch.tensor(it.labels, dtype=torch.bool, device=m.device)
        per = torch.where(y, F.softplus(-m), F.softplus(m))
        total = total + per[y].mean() + (per[~y].mean() if (~y).any() else 0.0)
        total = total - LISTWISE_WEIGHT * torch.log_softmax(m, dim=0)[y].mean()
    return total


def group_backward(lm: Any, group: EncodedGroup, step_tokens: int, yes_id: int, no_id: int, pad_id: int,
                   examples: int) -> float:
    """Backpropagate ``group``'s verdict loss divided by ``examples`` (the step's); returns that
    loss. The group runs in pieces of at most ``step_tokens`` padded request tokens, so only
    one piece's graph (beside the tool block's) is alive at a time; the tool block runs once
    for all of them (:class:`ToolBlockState`)."""
    pieces = split_group(group, step_tokens)
    state = ToolBlockState(lm, group.prefix, detach=len(pieces) > 1)
    total = 0.0
    for piece in pieces:
        loss = group_loss(lm, piece, yes_id, no_id, pad_id, state) / examples
        loss.backward()
        total += float(loss.item())
    state.backward()
    return total


def cpu_has_bf16() -> bool:
    """True where the CPU multiplies bfloat16 natively (AVX512-BF16 or AMX): there a bf16
    base makes a training step about twice as fast; elsewhere bf16 is emulated and slow."""
    try:
        with open("/proc/cpuinfo") as fh:
            flags = next((line for line in fh if line.startswith("flags")), "")
    except OSError:
        return False
    return " avx512_bf16" in flags or " amx_bf16" in flags


def train_dtype(cfg: TrainConfig, device: str = "cpu") -> str:
    """The base model's precision: bfloat16 on a GPU, and on CPUs that multiply it natively."""
    if cfg.dtype != "auto":
        return cfg.dtype
    if device == "cuda":
        import torch

        return "bfloat16" if torch.cuda.is_bf16_supported() else "float32"
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


def train_torch(
    train: Sequence[Group],
    val: Sequence[Group],
    cfg: TrainConfig,
    out_dir: Path,
    base: BaseModelRef | None,
    *,
    device: str = "cpu",
    paths: Paths | None = None,
    progress: bool = True,
    model: Any = None,
    tokenizer: Any = None,
    start_from: Path | None = None,
    checkpoint_every: int = 0,
    resume: bool = False,
) -> TrainResult:
    """Train a LoRA adapter on ``device`` (``cpu`` or ``cuda``); saves it in PEFT format to
    ``out_dir/peft``.

    ``model``/``tokenizer`` may be passed in (tests use a tiny Gemma 3 configuration);
    ``start_from`` is a PEFT adapter folder to continue from. ``checkpoint_every`` saves
    the adapter, the optimizer state and the history under ``out_dir/checkpoints``;
    ``resume`` continues from the latest of them, with the same result as an uninterrupted
    run.
    """
    on_gpu = device == "cuda"
    if on_gpu:  # cuBLAS is deterministic only with a fixed workspace, set before it starts
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    import torch

    from openhoof_router.models.hf import HFTokenizer, load_float_model
    from openhoof_router.models.quiet import quiet_transformers

    if on_gpu and not torch.cuda.is_available():
        raise RuntimeError("--backend cuda: torch sees no CUDA GPU (is a CUDA build of torch installed?)")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    # GPU attention backward kernels have no deterministic variant: warn there, do not fail
    torch.use_deterministic_algorithms(True, warn_only=on_gpu)
    started = time.perf_counter()
    if not on_gpu:
        steady_allocator()  # measured: 30 steps of `hoof-train run` peaked at 3.6 GB instead of 4.4 GB, same speed
    else:
        torch.cuda.reset_peak_memory_stats()
    peak = PeakMemory().start()
    dtype = train_dtype(cfg, device) if base is not None else None
    if model is None:
        assert base is not None and dtype is not None, "a base model or a given model is needed"
        model, tokenizer = load_float_model(base, paths, dtype=dtype)
    model = model.to(device)
    pad_id = tokenizer.pad_token_id or 0
    codec = PromptCodec(HFTokenizer(tokenizer))
    train_enc, dropped = encode_groups(codec, train, max_tokens=cfg.max_tokens)
    val_enc, _ = encode_groups(codec, val, max_tokens=cfg.max_tokens)

    if not train_enc:
        raise ValueError(f"no training examples left ({dropped} longer than {cfg.max_tokens} tokens)")
    layout = RunLayout(root=out_dir)
    checkpoints = layout.checkpoints
    latest = sorted(checkpoints.glob("step-*")) if resume and checkpoints.is_dir() else []
    with quiet_transformers():
        peft_model = attach_lora(model, cfg, latest[-1] if latest else start_from)
    lm = peft_model.get_base_model()  # LoRA layers are injected in place
    params = [p for p in peft_model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.0)
    adapter_dir = layout.adapter(device)

    def step(groups: Sequence[EncodedGroup], lr: float) -> float:
        for g in optimizer.param_groups:
            g["lr"] = lr
        n = sum(len(g.items) for g in groups)
        total = sum(group_backward(lm, g, cfg.step_tokens, codec.yes_id, codec.no_id, pad_id, n) for g in groups)
        torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if not on_gpu:
            trim_heap()  # measured: keeps the resting RSS at ~1.3 GB instead of creeping past 2 GB
        return total

    def validate(groups: Sequence[EncodedGroup]) -> float:
        peft_model.eval()
        with torch.no_grad():
            total = sum(float(group_loss(lm, g, codec.yes_id, codec.no_id, pad_id).item()) for g in groups)
        peft_model.train()
        return total / sum(len(g.items) for g in groups)

    def save_checkpoint(step_no: int, history: list[dict]) -> None:
        import json

        target = layout.checkpoint(step_no)
        peft_model.save_pretrained(str(target), save_embedding_layers=False)
        torch.save(optimizer.state_dict(), target / "optimizer.pt")
        (target / "history.json").write_text(json.dumps(history))

    resumed = None
    if latest:
        import json

        optimizer.load_state_dict(torch.load(latest[-1] / "optimizer.pt", map_location=device))
        done = int(latest[-1].name.split("-")[1])
        resumed = (done, json.loads((latest[-1] / "history.json").read_text()))
    peft_model.train()
    with quiet_transformers():
        history, steps, seen = run_loop(train_enc, val_enc, cfg, step, validate, progress=progress,
                                        checkpoint=save_checkpoint, checkpoint_every=checkpoint_every,
                                        resume=resumed)
    # embeddings are never trained: saying so spares PEFT a hub lookup (offline: a warning, or a DNS wait)
    peft_model.save_pretrained(str(adapter_dir), save_embedding_layers=False)
    peak.stop()
    return TrainResult(backend=f"{device}-{dtype or 'given'}", adapter_dir=adapter_dir,
                       history=history, steps=steps, examples=seen,
                       duration_s=time.perf_counter() - started, peak_rss_mb=peak.peak_rss_mb,
                       peak_gpu_mb=torch.cuda.max_memory_allocated() / 2**20 if on_gpu else None)
