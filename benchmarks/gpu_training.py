"""The torch trainer on a CUDA GPU beside the CPU, in one process on one machine.

    python benchmarks/gpu_training.py [--compare-steps 8] [--cpu-threads 2] [--full]
                                      [--pretrain-steps 240 --corpus DIR] [--out DIR]

Stages, one JSON line each:
  compare   the first N steps of ``hoof-train run``'s recipe (its data and settings, from the
            shipped general adapter, schedule cut to N steps) on the CPU and then on the GPU:
            the losses side by side, seconds a step on each, and their ratio;
  full      (--full) the whole training stage of ``hoof-train run`` on the GPU: steps, time,
            validation losses, peak memory; the adapter and history go to OUT/run-cuda;
  pretrain  (--pretrain-steps) steps of the general adapter's recipe (``hoof-train
            pretrain``'s data from the Seal-Tools corpus in --corpus) on the GPU, from the bare base.

Seconds a step leave out each device's first step (kernel set-up). Needs a CUDA GPU and the
[train] extra; the base is resolved as hoof-train resolves it (OPENHOOF_BASE_MODEL, else
the embedded GGUF).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any


def per_step_s(history: list[dict]) -> float:
    times = [r["elapsed_s"] for r in history]
    if len(times) < 2:
        return float("nan")
    return (times[-1] - times[0]) / (len(times) - 1)


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--compare-steps", type=int, default=8, help="steps of the run recipe on each device (0: skip)")
    ap.add_argument("--cpu-threads", type=int, default=2, help="CPU threads for the CPU side (the 2-core machine)")
    ap.add_argument("--full", action="store_true", help="train the whole hoof-train run recipe on the GPU")
    ap.add_argument("--pretrain-steps", type=int, default=0, help="steps of the pretraining recipe on the GPU")
    ap.add_argument("--corpus", type=Path, default=Path("../shared/corpora/seal_tools"))
    ap.add_argument("--out", type=Path, default=None, help="where the full run's adapter goes (default: a temp dir)")
    args = ap.parse_args()

    import torch

    from openhoof_router.learning.config import OPENHOOF_PASSES, SEAL_GROUPS, TrainConfig
    from openhoof_router.learning.data.assemble import assemble
    from openhoof_router.learning.data.groups import records_to_groups, split_records
    from openhoof_router.learning.run import epoch_groups, start_adapter
    from openhoof_router.learning.trainers.torch_lora import train_torch
    from openhoof_router.models.base_model import resolve_base_model
    from openhoof_router.store.paths import resolve_paths

    if not torch.cuda.is_available():
        raise SystemExit("no CUDA GPU visible to torch")
    paths = resolve_paths(None)
    base = resolve_base_model(None, paths)
    out = args.out or Path(tempfile.mkdtemp(prefix="gpu-training-"))
    out.mkdir(parents=True, exist_ok=True)
    print(json.dumps({"stage": "machine", "gpu": torch.cuda.get_device_name(0), "cpu": cpu_name(),
                      "torch": torch.__version__, "base": base.identity}), flush=True)

    data = assemble(paths)
    run_cfg = TrainConfig(threads=args.cpu_threads)
    train_recs, val_recs = split_records(data.train, run_cfg.val_fraction)
    groups = epoch_groups(train_recs, run_cfg)
    start, start_name = start_adapter(run_cfg.start_from, base)

    def train(cfg: TrainConfig, device: str, name: str, train_groups: Any, val_groups: Any = (),
              start_from: Path | None = None) -> Any:
        return train_torch(train_groups, list(val_groups), cfg, out / name, base, device=device, paths=paths,
                           progress=False, start_from=start_from)

    if args.compare_steps:
        cfg = run_cfg.model_copy(update={"max_steps": args.compare_steps})
        cpu = train(cfg, "cpu", "compare-cpu", groups, start_from=start)
        gpu = train(cfg, "cuda", "compare-cuda", groups, start_from=start)
        cpu_s, gpu_s = per_step_s(cpu.history), per_step_s(gpu.history)
        cpu_loss, gpu_loss = [r["loss"] for r in cpu.history], [r["loss"] for r in gpu.history]
        print(json.dumps({
            "stage": "compare", "recipe": f"hoof-train run from {start_name}", "steps": args.compare_steps,
            "cpu_backend": cpu.backend, "cpu_threads": args.cpu_threads, "gpu_backend": gpu.backend,
            "cpu_loss": cpu_loss, "gpu_loss": gpu_loss,
            "max_rel_loss_diff": max(abs(a - b) / max(abs(a), 1e-9) for a, b in zip(cpu_loss, gpu_loss, strict=True)),
            "cpu_s_per_step": round(cpu_s, 3), "gpu_s_per_step": round(gpu_s, 4),
            "speedup": round(cpu_s / gpu_s, 1), "peak_gpu_mb": round(gpu.peak_gpu_mb or 0, 1),
        }), flush=True)

    if args.full:
        val = records_to_groups(val_recs, group_size=run_cfg.group_size, seed=run_cfg.seed, source="val")
        started = time.perf_counter()
        full = train(run_cfg, "cuda", "run-cuda", groups, val, start_from=start)
        (out / "run-cuda" / "history.json").write_text(json.dumps(full.history))
        print(json.dumps({
            "stage": "full", "recipe": f"hoof-train run from {start_name}", "steps": full.steps,
            "examples": full.examples, "train_s": round(time.perf_counter() - started, 1),
            "s_per_step": round(per_step_s(full.history), 4), "backend": full.backend,
            "val_loss": [r["val_loss"] for r in full.history if "val_loss" in r],
            "final_loss_mean_last10": round(statistics.fmean(r["loss"] for r in full.history[-10:]), 4),
            "peak_gpu_mb": round(full.peak_gpu_mb or 0, 1), "peak_rss_mb": round(full.peak_rss_mb, 1),
            "adapter": str(full.adapter_dir),
        }), flush=True)

    if args.pretrain_steps:
        from openhoof_router.learning.data.general_corpus import general_groups, load_seal
        from openhoof_router.learning.pretrain import GENERAL_DEFAULTS

        general = general_groups(load_seal(args.corpus), seal_groups_n=SEAL_GROUPS, openhoof_passes=OPENHOOF_PASSES,
                                 seed=1)
        cfg = GENERAL_DEFAULTS.model_copy(update={"max_steps": args.pretrain_steps})
        started = time.perf_counter()
        pre = train(cfg, "cuda", "pretrain-cuda", general)
        print(json.dumps({
            "stage": "pretrain",
            "recipe": f"hoof-train pretrain defaults, {args.pretrain_steps} steps from the bare base",
            "groups": len(general), "steps": pre.steps, "examples": pre.examples,
            "train_s": round(time.perf_counter() - started, 1), "s_per_step": round(per_step_s(pre.history), 4),
            "loss_first10": round(statistics.fmean(r["loss"] for r in pre.history[:10]), 4),
            "loss_last10": round(statistics.fmean(r["loss"] for r in pre.history[-10:]), 4),
            "peak_gpu_mb": round(pre.peak_gpu_mb or 0, 1),
        }), flush=True)


if __name__ == "__main__":
    main()
