"""LoRA training with MLX (mlx-lm's tuner layers): Apple Silicon, and Linux CPU for tests.

What it does, and how it maps the seed's (PEFT) hyperparameters:

- **LoRA scale.** mlx-lm's ``LoRALinear`` computes ``y = W x + scale * (x A) B`` with ``A``
  uniform(±1/sqrt(in)) and ``B`` zero: the same update and the same initialisation as
  PEFT's ``(alpha / r) * B A x``. So ``scale = lora_alpha / lora_rank`` (2.0 with the
  defaults 32/16) is *exactly* PEFT's semantic, and the learning rate carries over 1:1.
  mlx-lm's own default, scale 20, is 10x PEFT's update for the same step: that is why
  lr 2e-4 diverged there and 3e-5 trained (with Adam the change of ``scale * B A`` per
  step grows with ``scale * lr``; 20 x 3e-5 ≈ 2 x 2e-4 / 6.7). With scale = alpha/r the
  seed's default lr 2e-4 is used as given; no rescaling of lr is needed or done.
- **Targets.** q/k/v/o/gate/up/down projections of every layer (``TARGET_MODULES``).
- **Optimizer.** AdamW (betas 0.9/0.999, eps 1e-8, bias correction, no weight decay),
  HF's ``linear`` schedule: ``int(total * warmup_ratio)`` warm-up steps from 0, then linear
  decay to 0; global-norm gradient clipping at ``grad_clip``: what the trl/PEFT trainer uses.
- **Loss.** Cross-entropy on the completion tokens only (the prompt is masked), mean over
  the batch's completion tokens. Only the completion positions go through the 262k-token
  output head (hidden states are gathered first), the rest of the sequence never does.
- **Tokens.** ``<bos>`` + tool block, user turn, completion, each tokenized on its own:
  the same token boundaries the router sees (cached tool block, then the user turn, then
  the answer pieces). Examples longer than ``MAX_LEN`` tokens are dropped.
- **Precision.** float32 (bfloat16 is slow on CPU and gains nothing at 270M).
- **Steps.** ``max_steps`` if set, else ``round(epochs * ceil(len(train) / batch_size))``;
  the data is reshuffled every epoch (seeded). Validation loss every ``total // 6`` steps
  and at the end.
- **Outputs.** ``out_dir/"mlx"``: ``adapters.safetensors`` + ``adapter_config.json``
  (loadable by ``mlx_lm.load(base, adapter_path=...)`` and by :class:`MLXBackend`);
  ``out_dir/"merged"``: the LoRA fused into float32 weights, saved as a Hugging Face
  folder (``model.safetensors`` with HF tensor names, ``config.json``, tokenizer files) for
  the GGUF exporter and for transformers.
- ``cfg.format`` / ``cfg.shuffle_tools`` act when examples are rendered
  (:func:`..training.dataset.to_examples`); the trainer takes the rendered text as is.

On Linux, importing this module preloads MKL under MLX when it can (see
:mod:`openhoof_router.mlx_env`); without it a step is ~10-50x slower.
"""

from __future__ import annotations

import json
import math
import random
import shutil
import time
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np

from .. import mlx_env
from ..base_model import BaseModelRef, float_checkpoint
from ..paths import Paths
from .config import TARGET_MODULES, Example, TrainConfig, TrainResult
from .memory import PeakMemory

mlx_env.preload_mkl()  # before anything imports mlx.core

MAX_LEN = 2048
LORA_KEYS = tuple(
    f"self_attn.{m}" if m.endswith(("q_proj", "k_proj", "v_proj", "o_proj")) else f"mlp.{m}"
    for m in TARGET_MODULES
)
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model",
                   "special_tokens_map.json", "generation_config.json", "chat_template.jinja")


def lora_scale(cfg: TrainConfig) -> float:
    """PEFT's ``alpha / r``: mlx-lm's ``scale`` with the same meaning (see module docstring)."""
    return float(cfg.lora_alpha) / float(cfg.lora_rank)


def linear_schedule(lr: float, total: int, warmup: int):
    """HF's ``get_linear_schedule_with_warmup`` as an MLX schedule (step counted from 0)."""
    import mlx.core as mx

    def schedule(step):
        s = mx.array(step, dtype=mx.float32)
        up = lr * s / max(1, warmup)
        down = lr * mx.maximum(0.0, (total - s) / max(1, total - warmup))
        return mx.where(s < warmup, up, down)

    return schedule


def _tokenize(tokens, examples: Sequence[Example]) -> tuple[list[tuple[list[int], list[int]]], int]:
    out, dropped = [], 0
    for ex in examples:
        prefix, user = getattr(ex, "prefix", None), getattr(ex, "user", None)
        if prefix is not None and user is not None:  # tokenized apart, exactly as the router does
            prompt = tokens.encode(prefix, bos=True) + tokens.encode(user)
        else:
            prompt = tokens.encode(ex.prompt, bos=True)
        completion = tokens.encode(ex.completion)
        if not completion or len(prompt) + len(completion) > MAX_LEN:
            dropped += 1
            continue
        out.append((prompt, completion))
    return out, dropped


def _batch(items: Sequence[tuple[list[int], list[int]]], pad_id: int):
    """Inputs (B, L-1), gather positions into the flattened hidden states, targets, mask."""
    import mlx.core as mx

    seqs = [p + c for p, c in items]
    length = max(len(s) for s in seqs) - 1
    width = max(len(c) for _, c in items)
    inputs = np.full((len(items), length), pad_id, dtype=np.int32)
    positions = np.zeros((len(items), width), dtype=np.int32)
    targets = np.zeros((len(items), width), dtype=np.int32)
    mask = np.zeros((len(items), width), dtype=np.float32)
    for i, ((prompt, completion), seq) in enumerate(zip(items, seqs)):
        inputs[i, : len(seq) - 1] = seq[:-1]
        n = len(completion)
        # hidden state at position t predicts token t + 1
        positions[i, :n] = i * length + np.arange(len(prompt) - 1, len(prompt) - 1 + n)
        positions[i, n:] = i * length
        targets[i, :n] = completion
        mask[i, :n] = 1.0
    return (mx.array(inputs), mx.array(positions.reshape(-1)), mx.array(targets.reshape(-1)),
            mx.array(mask.reshape(-1)))


def completion_loss(model, inputs, positions, targets, mask):
    """Mean cross-entropy over the completion tokens; (loss, number of tokens)."""
    import mlx.core as mx
    import mlx.nn as nn

    from ..backends.mlx_backend import head

    hidden = model.model(inputs)
    flat = hidden.reshape(-1, hidden.shape[-1])[positions]
    logits = head(model, flat).astype(mx.float32)
    ce = nn.losses.cross_entropy(logits, targets, reduction="none")
    ntoks = mask.sum()
    return (ce * mask).sum() / ntoks, ntoks


def _evaluate(model, batches) -> float:
    import mlx.core as mx

    total, count = 0.0, 0.0
    for batch in batches:
        loss, ntoks = completion_loss(model, *batch)
        mx.eval(loss, ntoks)
        total += float(loss) * float(ntoks)
        count += float(ntoks)
    return total / max(count, 1.0)


def save_adapter(model, adapter_dir: Path, cfg: TrainConfig, *, num_layers: int, model_dir: Path,
                 base: BaseModelRef) -> None:
    """``adapters.safetensors`` + ``adapter_config.json`` in mlx-lm's layout."""
    import mlx.core as mx
    from mlx.utils import tree_flatten

    adapter_dir.mkdir(parents=True, exist_ok=True)
    weights = dict(tree_flatten(model.trainable_parameters()))
    mx.save_safetensors(str(adapter_dir / "adapters.safetensors"), weights)
    config = {
        "fine_tune_type": "lora",
        "num_layers": num_layers,
        "lora_parameters": {
            "rank": cfg.lora_rank,
            "scale": lora_scale(cfg),
            "dropout": cfg.lora_dropout,
            "keys": list(LORA_KEYS),
        },
        "model": str(model_dir),
        "base_model": base.identity,
        "peft_equivalent": {"r": cfg.lora_rank, "lora_alpha": cfg.lora_alpha,
                            "target_modules": list(TARGET_MODULES)},
        "learning_rate": cfg.lr,
        "batch_size": cfg.batch_size,
        "seed": cfg.seed,
    }
    (adapter_dir / "adapter_config.json").write_text(json.dumps(config, indent=2))


def save_merged(model, merged_dir: Path, model_dir: Path) -> None:
    """Fuse the LoRA layers into the weights and write a Hugging Face float32 folder."""
    import mlx.core as mx
    from mlx.utils import tree_flatten

    from ..backends.mlx_backend import fuse_lora

    fuse_lora(model)
    tmp = merged_dir.with_name(merged_dir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    weights = {k: v.astype(mx.float32) for k, v in tree_flatten(model.parameters())}
    mx.save_safetensors(str(tmp / "model.safetensors"), weights, metadata={"format": "pt"})
    config = json.loads((model_dir / "config.json").read_text())
    config["dtype"] = "float32"
    config.pop("quantization_config", None)
    (tmp / "config.json").write_text(json.dumps(config, indent=2))
    for name in TOKENIZER_FILES:
        if (model_dir / name).is_file():
            shutil.copy2(model_dir / name, tmp / name)
    shutil.rmtree(merged_dir, ignore_errors=True)
    tmp.rename(merged_dir)


def train_mlx(
    train: list[Example],
    val: list[Example],
    cfg: TrainConfig,
    out_dir: Path,
    base: BaseModelRef,
    paths: Paths | None = None,
    progress: bool = True,
    *,
    merge: bool = True,
) -> TrainResult:
    """Train a LoRA adapter with MLX; write ``out_dir/mlx`` (+ ``out_dir/merged``)."""
    from ..backends.mlx_backend import HFTokens, import_mlx, load_float_model

    mx, nn, _ = import_mlx()
    import mlx.optimizers as optim
    from mlx_lm.tuner.utils import linear_to_lora_layers

    if not mlx_env.mlx_fast():
        warnings.warn(mlx_env.SLOW_HINT, RuntimeWarning, stacklevel=2)
    mlx_env.set_mkl_threads(cfg.threads)
    out_dir = Path(out_dir)
    started = time.perf_counter()
    peak = PeakMemory().start()
    try:
        mx.random.seed(cfg.seed)
        model_dir = float_checkpoint(base, paths)
        model, tokenizer = load_float_model(model_dir)
        tokens = HFTokens(tokenizer)
        pad_id = getattr(tokens.tok, "pad_token_id", None) or 0
        train_items, dropped = _tokenize(tokens, train)
        val_items, _ = _tokenize(tokens, val)
        if not train_items:
            raise ValueError("no training examples (all empty or longer than "
                             f"{MAX_LEN} tokens: {dropped} dropped)")

        model.freeze()
        num_layers = len(model.layers)
        linear_to_lora_layers(
            model, num_layers,
            {"rank": cfg.lora_rank, "scale": lora_scale(cfg), "dropout": cfg.lora_dropout,
             "keys": list(LORA_KEYS)},
        )
        n_lora = sum(1 for _, m in model.named_modules() if hasattr(m, "lora_a"))
        if n_lora != num_layers * len(LORA_KEYS):
            raise RuntimeError(f"LoRA on {n_lora} layers, expected {num_layers * len(LORA_KEYS)}")
        model.train()

        steps_per_epoch = max(1, math.ceil(len(train_items) / cfg.batch_size))
        total = cfg.max_steps or max(1, int(round(steps_per_epoch * cfg.epochs)))
        warmup = int(total * cfg.warmup_ratio)
        optimizer = optim.AdamW(learning_rate=linear_schedule(cfg.lr, total, warmup),
                                weight_decay=0.0, bias_correction=True)
        loss_and_grad = nn.value_and_grad(model, completion_loss)
        eval_every = max(1, total // 6)
        val_batches = [_batch(val_items[i: i + max(cfg.batch_size, 8)], pad_id)
                       for i in range(0, len(val_items), max(cfg.batch_size, 8))]

        def step(batch):
            (loss, ntoks), grads = loss_and_grad(model, *batch)
            if cfg.grad_clip and cfg.grad_clip > 0:
                grads, _ = optim.clip_grad_norm(grads, cfg.grad_clip)
            optimizer.update(model, grads)
            return loss

        rng = random.Random(cfg.seed)

        def epochs():  # reshuffled every epoch; an epoch's last batch may be short
            while True:
                perm = list(range(len(train_items)))
                rng.shuffle(perm)
                for i in range(0, len(perm), cfg.batch_size):
                    yield perm[i: i + cfg.batch_size]

        history: list[dict] = []
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=total, desc="mlx lora", unit="step")
        for n, idx in zip(range(1, total + 1), epochs()):
            loss = step(_batch([train_items[i] for i in idx], pad_id))
            mx.eval(loss, model.trainable_parameters(), optimizer.state)
            row = {"step": n, "epoch": round(n / steps_per_epoch, 4), "loss": float(loss)}
            if val_batches and (n % eval_every == 0 or n == total):
                model.eval()
                row["val_loss"] = _evaluate(model, val_batches)
                model.train()
            history.append(row)
            if bar is not None:
                bar.update(1)
                bar.set_postfix({k: f"{v:.4f}" for k, v in row.items() if k.endswith("loss")})
        if bar is not None:
            bar.close()
        model.eval()

        adapter_dir = out_dir / "mlx"
        save_adapter(model, adapter_dir, cfg, num_layers=num_layers, model_dir=model_dir, base=base)
        merged_dir = None
        if merge:
            merged_dir = out_dir / "merged"
            save_merged(model, merged_dir, model_dir)
    finally:
        peak.stop()
    return TrainResult(
        backend="mlx",
        adapter_dir=adapter_dir,
        merged_dir=merged_dir,
        history=history,
        steps=total,
        duration_s=time.perf_counter() - started,
        peak_rss_mb=peak.peak_rss_mb,
    )
