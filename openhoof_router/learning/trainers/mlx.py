"""LoRA training with MLX (mlx-lm's tuner layers): Apple Silicon, and Linux CPU for tests.

How it maps the seed's (PEFT) hyperparameters:

- **LoRA scale.** mlx-lm's ``LoRALinear`` computes ``y = W x + scale * (x A) B`` with ``A``
  uniform(±1/sqrt(in)) and ``B`` zero: the same update and the same initialisation as
  PEFT's ``(alpha / r) * B A x``. So ``scale = lora_alpha / lora_rank`` (2.0 with the
  defaults 32/16) is exactly PEFT's meaning, and the learning rate carries over 1:1
  (mlx-lm's own default, scale 20, is 10x PEFT's update per step).
- **Targets.** q/k/v/o/gate/up/down projections of every layer (``TARGET_MODULES``).
- **Optimizer.** AdamW (no weight decay), the shared loop's warm-up + linear decay
  (:mod:`.loop`), global-norm gradient clipping at ``grad_clip``.
- **Loss.** The torch trainer's verdict loss (balanced yes/no cross-entropy per request plus
  the listwise term), summed per example and divided by the step's examples; only the
  verdict marks go through the 262k-token output head.
- **Tokens.** The prompt codec's ids, exactly what the router serves.
- **Precision.** float32 (bfloat16 is slow on CPU and gains nothing at 270M).
- **Outputs.** ``out_dir/"mlx"``: ``adapters.safetensors`` + ``adapter_config.json`` in
  mlx-lm's layout (every backend serves it: :mod:`openhoof_router.models.lora`).

On Linux, importing this module preloads MKL under MLX when it can (see
:mod:`openhoof_router.models.mlx_toolkit`); without it a step is ~10-50x slower.
"""

from __future__ import annotations

import json
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from openhoof_router.core.prompt import PromptCodec
from openhoof_router.learning.config import TARGET_MODULES, TrainConfig, TrainResult
from openhoof_router.learning.data.groups import EncodedGroup, Group, encode_groups
from openhoof_router.learning.trainers.loop import run_loop
from openhoof_router.learning.trainers.memory import PeakMemory
from openhoof_router.models import mlx_toolkit
from openhoof_router.models.base_model import BaseModelRef, float_checkpoint
from openhoof_router.models.lora import ADAPTER_CONFIG, MLX_WEIGHTS
from openhoof_router.store.paths import Paths
from openhoof_router.store.runs import RunLayout

mlx_toolkit.preload_mkl()  # before anything imports mlx.core

LORA_KEYS = tuple(
    f"self_attn.{m}" if m.endswith(("q_proj", "k_proj", "v_proj", "o_proj")) else f"mlp.{m}"
    for m in TARGET_MODULES
)


def lora_scale(cfg: TrainConfig) -> float:
    """PEFT's ``alpha / r``: mlx-lm's ``scale`` with the same meaning (see module docstring)."""
    return float(cfg.lora_alpha) / float(cfg.lora_rank)


def _batch(groups: Sequence[EncodedGroup], pad_id: int):
    """Inputs (B, L), gather positions of the verdict marks, labels and their weights."""
    import mlx.core as mx

    seqs = [list(g.prefix) + list(it.ids) for g in groups for it in g.items]
    items = [(len(g.prefix), it) for g in groups for it in g.items]
    length = max(len(s) for s in seqs)
    width = max(len(it.positions) for _, it in items)
    inputs = np.full((len(seqs), length), pad_id, dtype=np.int32)
    positions = np.zeros((len(seqs), width), dtype=np.int32)
    labels = np.zeros((len(seqs), width), dtype=np.float32)
    valid = np.zeros((len(seqs), width), dtype=np.float32)
    for i, (seq, (offset, it)) in enumerate(zip(seqs, items, strict=False)):
        inputs[i, : len(seq)] = seq
        n = len(it.positions)
        positions[i, :n] = i * length + offset + np.asarray(it.positions)
        positions[i, n:] = i * length
        labels[i, :n] = it.labels
        valid[i, :n] = 1.0
    return (mx.array(inputs), mx.array(positions.reshape(-1)), mx.array(labels), mx.array(valid), len(seqs))


def verdict_loss(model: Any, pair: tuple[int, int], inputs: Any, positions: Any, labels: Any, valid: Any,
                 n_examples: int):
    """The torch trainer's verdict loss (:func:`..torch_lora.group_loss`), batched: balanced
    yes/no cross-entropy per request plus the listwise term, over the two logits that matter."""
    import mlx.core as mx
    import mlx.nn as nn

    from openhoof_router.learning.trainers.torch_lora import LISTWISE_WEIGHT

    hidden = model.model(inputs)
    flat = hidden.reshape(-1, hidden.shape[-1])[positions]
    logits = mlx_toolkit.head(model, flat).astype(mx.float32)
    margins = (logits[:, pair[0]] - logits[:, pair[1]]).reshape(labels.shape)
    per = labels * nn.softplus(-margins) + (1 - labels) * nn.softplus(margins)
    pos, neg = labels * valid, (1 - labels) * valid
    bce = (per * pos).sum(1) / mx.maximum(pos.sum(1), 1) + (per * neg).sum(1) / mx.maximum(neg.sum(1), 1)
    masked = mx.where(valid > 0, margins, -1e9)
    logp = masked - mx.logsumexp(masked, axis=1, keepdims=True)
    listwise = -(logp * pos).sum(1) / mx.maximum(pos.sum(1), 1)
    return (bce + LISTWISE_WEIGHT * listwise).sum() / n_examples


def _load_start(model: Any, start_from: Path, scale: float) -> None:
    """Initialise the LoRA layers from an adapter (PEFT or mlx-lm), scales reconciled."""
    import mlx.core as mx

    from openhoof_router.models.lora import AdapterError, read_lora

    modules = dict(model.named_modules())
    for name, (a, b, their_scale) in read_lora(start_from).items():
        layer = modules.get(name)
        if layer is None or not hasattr(layer, "lora_a"):
            raise AdapterError(f"{start_from}: no LoRA layer for {name}")
        layer.lora_a = mx.array(a.T)
        layer.lora_b = mx.array(b.T * (their_scale / scale))


def save_adapter(model: Any, adapter_dir: Path, cfg: TrainConfig, *, num_layers: int, base: BaseModelRef) -> None:
    """``adapters.safetensors`` + ``adapter_config.json`` in mlx-lm's layout."""
    import mlx.core as mx
    from mlx.utils import tree_flatten

    adapter_dir.mkdir(parents=True, exist_ok=True)
    weights = dict(tree_flatten(model.trainable_parameters()))
    mx.save_safetensors(str(adapter_dir / MLX_WEIGHTS), weights)
    config = {
        "fine_tune_type": "lora",
        "num_layers": num_layers,
        "lora_parameters": {"rank": cfg.lora_rank, "scale": lora_scale(cfg), "dropout": cfg.lora_dropout,
                            "keys": list(LORA_KEYS)},
        "base_model": base.identity,
        "peft_equivalent": {"r": cfg.lora_rank, "lora_alpha": cfg.lora_alpha, "target_modules": list(TARGET_MODULES)},
    }
    (adapter_dir / ADAPTER_CONFIG).write_text(json.dumps(config, indent=2))


def train_mlx(
    train: Sequence[Group],
    val: Sequence[Group],
    cfg: TrainConfig,
    out_dir: Path,
    base: BaseModelRef,
    paths: Paths | None = None,
    progress: bool = True,
    *,
    start_from: Path | None = None,
) -> TrainResult:
    """Train a LoRA adapter with MLX; write ``out_dir/mlx``."""
    mx, nn, _ = mlx_toolkit.import_mlx()
    import mlx.optimizers as optim
    from mlx_lm.tuner.utils import linear_to_lora_layers

    from openhoof_router.models.hf import HFTokenizer

    if not mlx_toolkit.mlx_fast():
        warnings.warn(mlx_toolkit.SLOW_HINT, RuntimeWarning, stacklevel=2)
    mlx_toolkit.set_mkl_threads(cfg.threads)
    out_dir = Path(out_dir)
    started = time.perf_counter()
    peak = PeakMemory().start()
    try:
        mx.random.seed(cfg.seed)
        model, tokenizer = mlx_toolkit.load_model(float_checkpoint(base, paths))
        pad_id = tokenizer.pad_token_id or 0
        codec = PromptCodec(HFTokenizer(tokenizer))
        train_enc, dropped = encode_groups(codec, train, max_tokens=cfg.max_tokens)
        val_enc, _ = encode_groups(codec, val, max_tokens=cfg.max_tokens)

        def loss_fn(m: Any, *batch: Any) -> Any:
            return verdict_loss(m, (codec.yes_id, codec.no_id), *batch)

        def make_batch(groups: Sequence[EncodedGroup]) -> Any:
            return _batch(groups, pad_id)
        if not train_enc:
            raise ValueError(f"no training examples left ({dropped} longer than {cfg.max_tokens} tokens)")

        model.freeze()
        num_layers = len(model.layers)
        linear_to_lora_layers(model, num_layers, {"rank": cfg.lora_rank, "scale": lora_scale(cfg),
                                                  "dropout": cfg.lora_dropout, "keys": list(LORA_KEYS)})
        n_lora = sum(1 for _, m in model.named_modules() if hasattr(m, "lora_a"))
        if n_lora != num_layers * len(LORA_KEYS):
            raise RuntimeError(f"LoRA on {n_lora} layers, expected {num_layers * len(LORA_KEYS)}")
        if start_from is not None:
            _load_start(model, start_from, lora_scale(cfg))
        model.train()
        optimizer = optim.AdamW(learning_rate=cfg.lr, weight_decay=0.0, bias_correction=True)
        loss_and_grad = nn.value_and_grad(model, loss_fn)

        def step(groups: Sequence[EncodedGroup], lr: float) -> float:
            optimizer.learning_rate = lr
            loss, grads = loss_and_grad(model, *make_batch(groups))
            if cfg.grad_clip and cfg.grad_clip > 0:
                grads, _ = optim.clip_grad_norm(grads, cfg.grad_clip)
            optimizer.update(model, grads)
            mx.eval(loss, model.trainable_parameters(), optimizer.state)
            return float(loss)

        def validate(groups: Sequence[EncodedGroup]) -> float:
            model.eval()
            total, count = 0.0, 0
            for group in groups:
                batch = make_batch([group])
                loss = loss_fn(model, *batch)
                mx.eval(loss)
                total += float(loss) * batch[-1]
                count += batch[-1]
            model.train()
            return total / max(1, count)

        history, steps, seen = run_loop(train_enc, val_enc, cfg, step, validate, progress=progress, desc="mlx lora")
        model.eval()
        adapter_dir = RunLayout(root=out_dir).adapter("mlx")
        save_adapter(model, adapter_dir, cfg, num_layers=num_layers, base=base)
    finally:
        peak.stop()
    return TrainResult(backend="mlx", adapter_dir=adapter_dir, history=history, steps=steps, examples=seen,
                       duration_s=time.perf_counter() - started, peak_rss_mb=peak.peak_rss_mb)
