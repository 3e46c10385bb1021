"""Seconds a CPU training step takes with the tool block run once per group (what the trainer
does) against once per piece (before: a group split into pieces to bound memory ran its tool
block again for each piece), on the same steps in one process.

    python benchmarks/train_steps.py [--steps 30] [--threads 2] [--dtype auto]

The steps are the first ones of ``hoof-train run``'s recipe (its data and settings, from the
shipped general adapter). Each step is run both ways from the same weights, in alternating
order (so neither way always runs on a warmer cache), and the gradients are compared; the
optimizer then steps with the per-group gradient. Prints one line per step and a JSON
summary: total seconds each way, their ratio, the largest gradient difference relative to
the gradient's largest entry, and the tokens each way runs over the whole recipe.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=30, help="steps of the recipe to time")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--dtype", choices=("auto", "float32", "bfloat16"), default="auto",
                    help="the base's precision (auto: as the trainer picks); float32 shows the two ways agree "
                         "to float rounding, bfloat16's rounding is ~1e-2 of a gradient either way")
    args = ap.parse_args()

    import torch

    from openhoof_router.core.prompt import PromptCodec
    from openhoof_router.learning.config import TrainConfig
    from openhoof_router.learning.data.assemble import assemble
    from openhoof_router.learning.data.groups import EncodedGroup, encode_groups, split_group, split_records
    from openhoof_router.learning.run import epoch_groups, start_adapter
    from openhoof_router.learning.trainers.loop import plan_steps
    from openhoof_router.learning.trainers.torch_lora import (
        attach_lora,
        group_backward,
        group_loss,
        padded_width,
        train_dtype,
    )
    from openhoof_router.models.base_model import resolve_base_model
    from openhoof_router.models.hf import HFTokenizer, load_float_model
    from openhoof_router.store.paths import resolve_paths

    paths = resolve_paths(None)
    base = resolve_base_model(None, paths)
    cfg = TrainConfig(threads=args.threads, dtype=args.dtype)
    train_recs, _ = split_records(assemble(paths).train, cfg.val_fraction)
    start, start_name = start_adapter(cfg.start_from, base)
    torch.set_num_threads(args.threads)
    torch.manual_seed(cfg.seed)
    dtype = train_dtype(cfg)
    model, tokenizer = load_float_model(base, paths, dtype=dtype)
    codec = PromptCodec(HFTokenizer(tokenizer))
    encoded, _ = encode_groups(codec, epoch_groups(train_recs, cfg), max_tokens=cfg.max_tokens)
    peft_model = attach_lora(model, cfg, start)
    lm = peft_model.get_base_model()
    peft_model.train()
    params = [p for p in peft_model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.0)
    pad = tokenizer.pad_token_id or 0

    def backward(groups: list[EncodedGroup], once_per_group: bool) -> None:
        n = sum(len(g.items) for g in groups)
        for group in groups:
            if once_per_group:  # what the trainer runs
                group_backward(lm, group, cfg.step_tokens, codec.yes_id, codec.no_id, pad, n)
                continue
            for piece in split_group(group, cfg.step_tokens):  # each piece runs the tool block itself
                (group_loss(lm, piece, codec.yes_id, codec.no_id, pad) / n).backward()

    def tokens(once_per_group: bool) -> int:
        total = 0
        for group in encoded:
            pieces = split_group(group, cfg.step_tokens)
            total += len(group.prefix) * (1 if once_per_group else len(pieces))
            total += sum(padded_width(len(it.ids) for it in p.items) * len(p.items) for p in pieces)
        return total

    seconds: dict[bool, float] = {True: 0.0, False: 0.0}
    worst = 0.0
    plan = plan_steps(encoded, cfg.batch_size)[: args.steps]
    for step, indices in enumerate(plan, 1):
        groups = [encoded[i] for i in indices]
        grads: dict[bool, list[Any]] = {}
        for way in (True, False) if step % 2 else (False, True):
            optimizer.zero_grad(set_to_none=True)
            started = time.perf_counter()
            backward(groups, way)
            seconds[way] += time.perf_counter() - started
            grads[way] = [p.grad.clone() for p in params]
        diff = max(float((a - b).abs().max() / b.abs().max().clamp_min(1e-12))
                   for a, b in zip(grads[True], grads[False], strict=True))
        worst = max(worst, diff)
        for p, g in zip(params, grads[True], strict=True):
            p.grad = g
        optimizer.step()
        split = sum(len(split_group(g, cfg.step_tokens)) > 1 for g in groups)
        print(f"step {step}: {len(groups)} groups, {split} split; gradient difference {diff:.1e}", flush=True)
    print(json.dumps({
        "recipe": f"hoof-train run from {start_name}", "steps": len(plan), "threads": args.threads, "dtype": dtype,
        "once_per_group_s": round(seconds[True], 1), "once_per_piece_s": round(seconds[False], 1),
        "ratio": round(seconds[True] / seconds[False], 3), "max_relative_gradient_difference": worst,
        "recipe_tokens_once_per_group": tokens(True), "recipe_tokens_once_per_piece": tokens(False),
    }))


if __name__ == "__main__":
    main()
