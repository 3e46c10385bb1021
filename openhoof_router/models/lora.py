"""LoRA adapters as plain factors, whichever trainer wrote them.

The CPU and CUDA trainers write PEFT folders, the MLX trainer mlx-lm folders. Serving
reads either into ``{module: (A, B, scale)}`` and adds ``scale * B @ A`` to the base's
weights: the numpy GGUF merge for llama.cpp (:func:`openhoof_router.models.merge.merge_lora_gguf`),
an in-place add for transformers and MLX. So any backend serves any run.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

LoraFactors = dict[str, tuple[np.ndarray, np.ndarray, float]]
"""HF module path (``model.layers.0.self_attn.q_proj``) -> (A: rank x in, B: out x rank, scale)."""

ADAPTER_CONFIG = "adapter_config.json"
PEFT_WEIGHTS = "adapter_model.safetensors"
MLX_WEIGHTS = "adapters.safetensors"
PEFT_FILES = (PEFT_WEIGHTS, ADAPTER_CONFIG)
MLX_FILES = (MLX_WEIGHTS, ADAPTER_CONFIG)


class AdapterError(ValueError):
    """A folder that holds no readable LoRA adapter, or one that does not fit the base."""


def adapter_kind(folder: Path) -> str | None:
    """``"peft"``, ``"mlx"`` or None for a folder."""
    folder = Path(folder)
    if all((folder / n).is_file() for n in PEFT_FILES):
        return "peft"
    if all((folder / n).is_file() for n in MLX_FILES):
        return "mlx"
    return None


def _module(key: str) -> str:
    # PEFT prefixes "base_model.model."; multimodal Gemma 3 checkpoints nest the text model
    key = key.removeprefix("base_model.model.")
    return key.replace("model.language_model.", "model.").replace("language_model.model.", "model.")


def read_lora(folder: Path) -> LoraFactors:
    """The factors of a PEFT or mlx-lm adapter folder (float32)."""
    from safetensors.numpy import load_file

    folder = Path(folder)
    kind = adapter_kind(folder)
    if kind is None:
        raise AdapterError(f"{folder} holds no LoRA adapter (PEFT {' + '.join(PEFT_FILES)} or "
                           f"mlx-lm {' + '.join(MLX_FILES)})")
    try:
        config = json.loads((folder / ADAPTER_CONFIG).read_text())
        if kind == "peft":
            rank = config["r"]
            alpha = config.get("lora_alpha", rank)
            scale = alpha / (rank ** 0.5) if config.get("use_rslora") else alpha / rank
            weights = load_file(str(folder / PEFT_WEIGHTS))
            return {_module(key.split(".lora_A.")[0]): (a.astype(np.float32),
                                                        weights[key.replace(".lora_A.", ".lora_B.")].astype(np.float32),
                                                        float(scale))
                    for key, a in weights.items() if ".lora_A." in key}
        # mlx-lm: y += scale * (x @ a) @ b, with a: in x rank, b: rank x out
        scale = float(config["lora_parameters"]["scale"])
        weights = load_file(str(folder / MLX_WEIGHTS))
        return {_module(key.removesuffix(".lora_a")): (a.T.astype(np.float32),
                                                       weights[key[:-1] + "b"].T.astype(np.float32), scale)
                for key, a in weights.items() if key.endswith(".lora_a")}
    except (KeyError, ValueError, OSError) as exc:
        raise AdapterError(f"{folder}: unreadable {kind} adapter ({exc})") from exc


def check_fits(factors: tuple[np.ndarray, np.ndarray, float], shape: tuple[int, ...], module: str) -> None:
    """Raise :class:`AdapterError` unless ``B @ A`` has the base weight's (out, in) shape."""
    a, b, _ = factors
    if (b.shape[0], a.shape[1]) != tuple(shape):
        raise AdapterError(f"the adapter does not fit this base: {module} is {b.shape[0]}x{a.shape[1]}, "
                           f"the base's weight {tuple(shape)}")


def delta(factors: tuple[np.ndarray, np.ndarray, float], shape: tuple[int, ...], module: str) -> np.ndarray:
    """``scale * B @ A``, checked against the base weight's (out, in) shape."""
    check_fits(factors, shape, module)
    a, b, scale = factors
    return scale * (b @ a)


def adapter_digest(folder: Path) -> str:
    """A short hash of an adapter's files (names cached merges)."""
    folder = Path(folder)
    digest = hashlib.sha256()
    for name in (*PEFT_FILES, *MLX_FILES):
        path = folder / name
        if path.is_file():
            digest.update(name.encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]
