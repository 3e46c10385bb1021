"""Local model backends behind one interface, and the ``auto`` choice between them.

``auto`` follows the seed: Apple Silicon (Darwin) → MLX, anything else → llama.cpp.
``OPENHOOF_BACKEND`` or the ``backend`` argument overrides it.

What a *model* argument may be, for every backend:
  - a training run folder (``runs/ID`` with ``manifest.json``): each backend takes the
    form it serves (merged GGUF for llama.cpp, PEFT for transformers, MLX adapters);
  - a ``.gguf`` file: a full model, or a LoRA adapter applied on the base (llama.cpp);
  - ``None``: the base model alone.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path

from ..base_model import BaseModelRef, resolve_base_model
from ..paths import Paths
from .base import Backend, BackendError

BACKENDS = ("llama.cpp", "mlx", "transformers")
ALIASES = {"llamacpp": "llama.cpp", "llama_cpp": "llama.cpp", "gguf": "llama.cpp", "hf": "transformers", "torch": "transformers"}


def pick_backend(backend: str | None = "auto") -> str:
    choice = (backend or os.environ.get("OPENHOOF_BACKEND") or "auto").lower()
    if choice == "auto":
        choice = os.environ.get("OPENHOOF_BACKEND", "auto").lower()
    if choice == "auto":
        return "mlx" if platform.system() == "Darwin" and platform.machine() == "arm64" else "llama.cpp"
    choice = ALIASES.get(choice, choice)
    if choice not in BACKENDS:
        raise BackendError(f"unknown backend {backend!r}: choose one of auto, {', '.join(BACKENDS)}")
    return choice


def _is_lora_gguf(path: Path) -> bool:
    from gguf import GGUFReader

    try:
        field = GGUFReader(str(path)).fields.get("general.type")
    except Exception as exc:
        raise BackendError(f"{path} is not a readable GGUF file: {exc}") from exc
    return field is not None and bytes(field.parts[-1]).decode() == "adapter"


def load_backend(
    backend: str | None = "auto",
    *,
    base_model: str | os.PathLike[str] | BaseModelRef | None = None,
    model: str | os.PathLike[str] | None = None,
    n_threads: int | None = None,
    n_ctx: int = 2048,
    paths: Paths | None = None,
) -> Backend:
    """Load the chosen backend over ``base_model`` with an optional trained ``model``."""
    kind = pick_backend(backend)
    base = base_model if isinstance(base_model, BaseModelRef) else resolve_base_model(base_model, paths)
    model_path = Path(model).expanduser() if model else None
    if model_path is not None and not model_path.exists():
        raise BackendError(f"trained model not found: {model_path}")
    run_dir = model_path if model_path is not None and model_path.is_dir() else None
    run_id = run_dir.name if run_dir else None  # run folders are named by their id

    if kind == "llama.cpp":
        from .llamacpp import LlamaCppBackend

        if run_dir is not None:
            ggufs = sorted(run_dir.glob("*.gguf"))
            if not ggufs:
                raise BackendError(f"run {run_dir} has no GGUF export for llama.cpp")
            return LlamaCppBackend(ggufs[0], n_ctx=n_ctx, n_threads=n_threads,
                                   model_id=base.identity, adapter_id=run_id)
        if base.gguf is None:
            raise BackendError(f"llama.cpp needs a GGUF base model; {base.name} has none")
        if model_path is not None and _is_lora_gguf(model_path):
            return LlamaCppBackend(base.gguf, lora_path=model_path, n_ctx=n_ctx, n_threads=n_threads,
                                   model_id=base.identity)
        if model_path is not None:  # a full (merged) model GGUF
            return LlamaCppBackend(model_path, n_ctx=n_ctx, n_threads=n_threads,
                                   model_id=base.identity, adapter_id=model_path.name)
        return LlamaCppBackend(base.gguf, n_ctx=n_ctx, n_threads=n_threads, model_id=base.identity)

    if kind == "transformers":
        from .transformers_backend import TransformersBackend

        peft_dir = (run_dir / "peft") if run_dir is not None else model_path
        return TransformersBackend(base, adapter=peft_dir, n_threads=n_threads, n_ctx=n_ctx,
                                   paths=paths, adapter_id=run_id)

    from .mlx_backend import MLXBackend

    mlx_dir = (run_dir / "mlx") if run_dir is not None else model_path
    return MLXBackend(base, adapter=mlx_dir, n_ctx=n_ctx, paths=paths, adapter_id=run_id)


__all__ = ["Backend", "BackendError", "BACKENDS", "load_backend", "pick_backend"]
