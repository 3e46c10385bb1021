"""Which hardware path to take, decided in one place for serving and training.

``auto`` follows the seed: Apple Silicon → MLX (serving and training); anything else
serves with llama.cpp and trains on CUDA when a GPU is visible, else on the CPU.
``OPENHOOF_BACKEND`` overrides the serving choice.
"""

from __future__ import annotations

import os
import platform

SERVING = ("llama.cpp", "mlx", "transformers")
TRAINING = ("cpu", "cuda", "mlx")
ALIASES = {"llamacpp": "llama.cpp", "llama_cpp": "llama.cpp", "gguf": "llama.cpp", "hf": "transformers",
           "torch": "transformers"}


def apple_silicon() -> bool:
    return platform.system() == "Darwin" and platform.machine() == "arm64"


def cuda_available() -> bool:
    if os.environ.get("OPENHOOF_FORCE_CPU") == "1":
        return False
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def serving_backend(choice: str | None = "auto") -> str:
    """The serving backend for ``choice`` (``auto``, a name or an alias); ValueError if unknown."""
    choice = (choice or "auto").lower()
    if choice == "auto":
        choice = os.environ.get("OPENHOOF_BACKEND", "auto").lower()
    if choice == "auto":
        return "mlx" if apple_silicon() else "llama.cpp"
    choice = ALIASES.get(choice, choice)
    if choice not in SERVING:
        raise ValueError(f"unknown backend {choice!r}: choose one of auto, {', '.join(SERVING)}")
    return choice


def training_backend(choice: str | None = "auto") -> str:
    """``auto`` → cuda when a GPU is visible, mlx on Apple Silicon, else cpu."""
    choice = (choice or "auto").lower()
    if choice == "auto":
        if apple_silicon():
            return "mlx"
        return "cuda" if cuda_available() else "cpu"
    if choice not in TRAINING:
        raise ValueError(f"unknown training backend {choice!r}: choose one of auto, {', '.join(TRAINING)}")
    return choice


def hardware() -> dict[str, object]:
    """What a manifest records about the machine a run was made on."""
    info: dict[str, object] = {"platform": platform.platform(), "machine": platform.machine(),
                               "cpus": os.cpu_count(), "python": platform.python_version()}
    try:
        with open("/proc/cpuinfo") as fh:
            info["cpu"] = next((line.split(":", 1)[1].strip() for line in fh if line.startswith("model name")), None)
    except OSError:
        info["cpu"] = platform.processor() or None
    try:
        import psutil

        info["memory_gb"] = round(psutil.virtual_memory().total / 2**30, 1)
    except ImportError:
        pass
    if cuda_available():
        import torch

        info["gpu"] = torch.cuda.get_device_name(0)
    return info
