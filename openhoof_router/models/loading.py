"""Local model backends behind one interface, and how a run becomes a loaded model.

What a *model* argument may be, for every backend:
  - a run folder (``runs/ID`` with ``manifest.json``) or a :class:`~openhoof_router.store.runs.ServedRun`:
    read through its manifest: llama.cpp serves the run's merged GGUF (or merges its
    adapter into a cached GGUF once, with numpy); transformers and MLX add the adapter's
    LoRA factors to the base weights at load;
  - ``"general"``: the shipped general run;
  - a ``.gguf`` file (llama.cpp): a full model, or a LoRA adapter applied on the base;
  - ``None``: the base model alone.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from openhoof_router.models.base_model import BaseModelRef, resolve_base_model
from openhoof_router.models.device import SERVING, serving_backend
from openhoof_router.store.paths import Paths
from openhoof_router.store.runs import RunError, ServedRun, general_run
from openhoof_router.models.backend import Backend, BackendError

BACKENDS = SERVING


def pick_backend(backend: str | None = "auto") -> str:
    try:
        return serving_backend(backend)
    except ValueError as exc:
        raise BackendError(str(exc)) from None


def _is_lora_gguf(path: Path) -> bool:
    from openhoof_router.models.merge import read_metadata

    try:
        value = read_metadata(path).get("general.type", (b"",))[0]
    except Exception as exc:
        raise BackendError(f"{path} is not a readable GGUF file: {exc}") from exc
    return value == b"adapter"


def resolve_run(model: Any) -> ServedRun | Path | None:
    """A model argument as a served run, a GGUF file, or None (the base)."""
    if model is None or isinstance(model, ServedRun):
        return model
    if str(model) == "general":
        run = general_run()
        if run is None:
            raise BackendError("the general adapter is not in this installation (hoof-train pretrain builds it)")
        return run
    path = Path(model).expanduser()
    if path.is_dir():
        try:
            return ServedRun.open(path)
        except RunError as exc:
            raise BackendError(str(exc)) from None
    if path.is_file():
        return path
    raise BackendError(f"trained model not found: {path}")


def merged_gguf(run: ServedRun, base: BaseModelRef, paths: Paths | None = None) -> Path:
    """The run as one GGUF for llama.cpp: its own export if it has one, else the base with its
    adapter merged in, made once into the cache (numpy only, a few seconds)."""
    own = run.file("gguf")
    if own is not None:
        return own
    from filelock import FileLock

    from openhoof_router.models.merge import merge_lora_gguf
    from openhoof_router.models.lora import adapter_digest

    adapter = run.adapter
    if adapter is None or base.gguf is None:
        raise BackendError(f"run {run.run_id} has no adapter to merge, or the base {base.name} has no GGUF")
    paths = paths or Paths.resolve()
    target = (paths.cache_dir / "merged" /
              f"{run.run_id}-{adapter_digest(adapter)}-{(base.sha256 or 'base')[:12]}-q8_0.gguf")
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock", timeout=600):
        if not target.is_file():  # another process may have made it while we waited
            merge_lora_gguf(base.gguf, adapter, target, name=f"openhoof-router {run.run_id}")
    return target


def _check_base(run: ServedRun, base: BaseModelRef) -> None:
    trained_on = run.manifest.base_model.sha256
    if trained_on and base.sha256 and trained_on != base.sha256:
        raise BackendError(f"run {run.run_id} was trained on base {run.manifest.base_model.name} "
                           f"({trained_on[:12]}), not on {base.name} ({base.sha256[:12]})")


def load_backend(
    backend: str | None = "auto",
    *,
    base_model: str | os.PathLike[str] | BaseModelRef | None = None,
    model: Any = None,
    n_threads: int | None = None,
    n_ctx: int = 2048,
    paths: Paths | None = None,
) -> Backend:
    """Load the chosen backend over ``base_model`` with an optional trained ``model``."""
    kind = pick_backend(backend)
    base = resolve_base_model(base_model, paths)
    target = resolve_run(model)
    run = target if isinstance(target, ServedRun) else None
    if run is not None:
        _check_base(run, base)
    run_id = run.run_id if run is not None else None

    if kind == "llama.cpp":
        from openhoof_router.models.llamacpp import LlamaCppBackend

        if run is not None:
            try:
                gguf = merged_gguf(run, base, paths)
            except BackendError:
                raise
            except Exception as exc:  # a corrupt adapter must not pass as a model
                raise BackendError(f"run {run.run_id}: {exc}") from exc
            return LlamaCppBackend(gguf, n_ctx=n_ctx, n_threads=n_threads, model_id=base.identity, adapter_id=run_id)
        if base.gguf is None:
            raise BackendError(f"llama.cpp needs a GGUF base model; {base.name} has none")
        if isinstance(target, Path) and _is_lora_gguf(target):
            return LlamaCppBackend(base.gguf, lora_path=target, n_ctx=n_ctx, n_threads=n_threads,
                                   model_id=base.identity)
        if isinstance(target, Path):  # a full (merged) model GGUF
            return LlamaCppBackend(target, n_ctx=n_ctx, n_threads=n_threads, model_id=base.identity,
                                   adapter_id=target.name)
        return LlamaCppBackend(base.gguf, n_ctx=n_ctx, n_threads=n_threads, model_id=base.identity)

    if isinstance(target, Path):
        raise BackendError(f"the {kind} backend serves run folders, not GGUF files ({target})")
    adapter = run.adapter if run is not None else None
    if kind == "transformers":
        from openhoof_router.models.transformers_backend import TransformersBackend

        return TransformersBackend(base, adapter=adapter, n_threads=n_threads, n_ctx=n_ctx, paths=paths,
                                   adapter_id=run_id)
    from openhoof_router.models.mlx_backend import MLXBackend

    return MLXBackend(base, adapter=adapter, n_ctx=n_ctx, paths=paths, adapter_id=run_id)


__all__ = ["Backend", "BackendError", "BACKENDS", "load_backend", "merged_gguf", "pick_backend", "resolve_run"]
