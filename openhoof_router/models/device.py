"""Which hardware path to take, decided in one place for serving and training.

``auto`` follows the seed: Apple Silicon → MLX (serving and training); anything else
serves with llama.cpp and trains on CUDA when a GPU is visible, else on the CPU.
``OPENHOOF_BACKEND`` overrides the serving choice (:class:`ModelSettings`, the one place the
model variables are read; the router's settings extend it).
"""

from __future__ import annotations

import os
import platform

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings

from openhoof_router.store.paths import SETTINGS_CONFIG

SERVING = ("llama.cpp", "mlx", "transformers")
TRAINING = ("cpu", "cuda", "mlx")
ALIASES = {"llamacpp": "llama.cpp", "llama_cpp": "llama.cpp", "gguf": "llama.cpp", "hf": "transformers",
           "torch": "transformers"}


def canonical_backend(choice: str | None) -> str:
    """``auto`` or a serving backend's name, aliases resolved; ValueError if unknown."""
    choice = ALIASES.get((choice or "auto").lower(), (choice or "auto").lower())
    if choice != "auto" and choice not in SERVING:
        raise ValueError(f"unknown backend {choice!r}: choose one of auto, {', '.join(SERVING)}")
    return choice


class ModelSettings(BaseSettings):
    """Which model to load and how, from arguments, else ``OPENHOOF_*`` variables."""

    model_config = SETTINGS_CONFIG
    base_model: str | None = Field(None, description="Base model: 'embedded' (Gemma 3 270M), a .gguf file or a "
                                                     "Hugging Face folder (OPENHOOF_BASE_MODEL).")
    backend: str = Field("auto", description="Serving backend: auto, llama.cpp, mlx or transformers "
                                             "(OPENHOOF_BACKEND; auto: MLX on Apple Silicon, else llama.cpp).")
    n_threads: int | None = Field(None, ge=1, validation_alias="OPENHOOF_THREADS",
                                  description="CPU threads of the model (OPENHOOF_THREADS; default: up to 4).")
    n_ctx: int | None = Field(None, ge=256, le=32768,
                              description="Context window in tokens (OPENHOOF_N_CTX); unset: 2048, grown to fit a "
                                          "long tool list up to 32768 (llama.cpp; the model is not reloaded).")
    cache_float: bool = Field(True, description="The transformers backend writes the base's float32 copy "
                                                "(~1 GB for Gemma 3 270M) into the cache once (OPENHOOF_CACHE_FLOAT; "
                                                "off: it converts the GGUF in memory at every load).")

    @field_validator("backend", mode="after")
    @classmethod
    def _known(cls, value: str) -> str:
        return canonical_backend(value)


def apple_silicon() -> bool:
    return platform.system() == "Darwin" and platform.machine() == "arm64"


def cuda_available() -> bool:
    # A training-hardware switch, read where the trainer picks its device; not a router setting.
    if os.environ.get("OPENHOOF_FORCE_CPU") == "1":
        return False
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def serving_backend(choice: str | None = "auto") -> str:
    """The serving backend for ``choice`` (``auto``, a name or an alias); ValueError if unknown."""
    choice = canonical_backend(choice)
    if choice == "auto":
        choice = ModelSettings().backend
    if choice == "auto":
        return "mlx" if apple_silicon() else "llama.cpp"
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
