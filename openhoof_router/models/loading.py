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

import json
import logging
import os
from pathlib import Path
from typing import Any

from openhoof_router.models.backend import Backend, BackendError
from openhoof_router.models.base_model import BaseModelRef, resolve_base_model
from openhoof_router.models.device import serving_backend
from openhoof_router.store.paths import Paths, resolve_paths
from openhoof_router.store.runs import Decoding, RunError, ServedRun, general_run

logger = logging.getLogger(__name__)


def pick_backend(backend: str | None = "auto") -> str:
    try:
        return serving_backend(backend)
    except ValueError as exc:
        raise BackendError(str(exc)) from None


def _is_lora_gguf(path: Path) -> bool:
    from openhoof_router.models.gguf_file import read_metadata

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


def _sidecar(target: Path) -> Path:
    return target.with_name(target.name + ".json")


def merged_cache_ok(target: Path) -> bool:
    """Whether a cached merge is whole: its size, and its sha256, match the sidecar written
    after the merge (the hash is recomputed only when the file's mtime is not the sidecar's)."""
    from openhoof_router.models.base_model import sha256_file

    try:
        stat = target.stat()
        meta = json.loads(_sidecar(target).read_text())
        if stat.st_size != meta["size"]:
            return False
        return stat.st_mtime_ns == meta["mtime_ns"] or sha256_file(target) == meta["sha256"]
    except (OSError, ValueError, KeyError, TypeError):
        return False  # no sidecar (a cache from before sidecars, a merge cut short): rebuild


def merged_gguf(run: ServedRun, base: BaseModelRef, paths: Paths | None = None) -> Path:
    """The run as one GGUF for llama.cpp: its own export if it has one, else the base with its
    adapter merged in, made once into the cache (numpy only, a few seconds).

    The cached file is checked against its sidecar (:func:`merged_cache_ok`) on every load
    and rebuilt when it is damaged (a truncated copy, a full disk); a failed rebuild raises
    ``BackendError`` (the service then serves the next model in line, and says why).
    """
    own = run.file("gguf")
    if own is not None:
        return own
    from filelock import FileLock

    from openhoof_router.models.base_model import sha256_file
    from openhoof_router.models.lora import adapter_digest
    from openhoof_router.models.merge import merge_lora_gguf
    from openhoof_router.models.quiet import notice

    adapter = run.adapter
    if adapter is None or base.gguf is None:
        raise BackendError(f"run {run.run_id} has no adapter to merge, or the base {base.name} has no GGUF")
    target = (resolve_paths(paths).merged_cache /
              f"{run.run_id}-{adapter_digest(adapter)}-{(base.sha256 or 'base')[:12]}-q8_0.gguf")
    if merged_cache_ok(target):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock", timeout=600):
        if merged_cache_ok(target):  # another process may have made it while we waited
            return target
        if target.exists():
            logger.warning("openhoof-router: the cached merged model %s does not match its checksum "
                           "file (cut short or changed): rebuilding it", target)
        _sidecar(target).unlink(missing_ok=True)
        notice(f"merging {run.run_id} into one GGUF in {target.parent} (once per run: a few seconds, ~300 MB)")
        try:
            merge_lora_gguf(base.gguf, adapter, target, name=f"openhoof-router {run.run_id}")
            stat = target.stat()
            meta = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": sha256_file(target)}
            tmp = _sidecar(target).with_name(f".{_sidecar(target).name}.{os.getpid()}.tmp")
            tmp.write_text(json.dumps(meta))
            os.replace(tmp, _sidecar(target))  # last: a sidecar vouches only for a finished merge
        except Exception as exc:
            raise BackendError(f"run {run.run_id}: could not build its merged model in {target.parent}: "
                               f"{exc}") from exc
    return target


def check_base(run: ServedRun, base: BaseModelRef) -> None:
    """Raise ``BackendError`` when ``run`` was trained on another base model than ``base`` (its
    adapter cannot be served or continued there); the one base-model check."""
    trained_on = run.manifest.base_model.sha256
    if trained_on and base.sha256 and trained_on != base.sha256:
        raise BackendError(f"run {run.run_id} was trained on base {run.manifest.base_model.name} "
                           f"({trained_on[:12]}), not on {base.name} ({base.sha256[:12]})")


def run_decoding(target: Any) -> Decoding:
    """The decoding settings a model target is served with: a run's fitted ones, else the defaults."""
    return target.manifest.decoding if isinstance(target, ServedRun) else Decoding()


def load_backend(
    backend: str | None = "auto",
    *,
    base_model: str | os.PathLike[str] | BaseModelRef | None = None,
    model: Any = None,
    n_threads: int | None = None,
    n_ctx: int | None = None,
    paths: Paths | None = None,
    cache_float: bool | None = None,
    shared: bool = True,
) -> Backend:
    """Load the chosen backend over ``base_model`` with an optional trained ``model``
    (``cache_float``: see :class:`~openhoof_router.models.device.ModelSettings`).

    ``n_ctx``: the context window; None: llama.cpp starts at 2048 and grows it for a long
    tool list (the other backends take 2048). With ``shared`` (the default), a model already
    loaded in this process with the same settings is handed out again
    (:mod:`~openhoof_router.models.shared`); close the backend once per call either way.
    """
    kind = pick_backend(backend)
    base = resolve_base_model(base_model, paths)
    target = resolve_run(model)
    run = target if isinstance(target, ServedRun) else None
    if run is not None:
        check_base(run, base)
    run_id = run.run_id if run is not None else None
    key: tuple[Any, ...]

    if kind == "llama.cpp":
        from openhoof_router.models.llamacpp import LlamaCppBackend, default_threads

        lora, adapter_id = None, run_id
        if run is not None:
            try:
                gguf = merged_gguf(run, base, paths)
            except BackendError:
                raise
            except Exception as exc:  # a corrupt adapter must not pass as a model
                raise BackendError(f"run {run.run_id}: {exc}") from exc
        elif base.gguf is None:
            raise BackendError(f"llama.cpp needs a GGUF base model; {base.name} has none")
        elif isinstance(target, Path) and _is_lora_gguf(target):
            gguf, lora = base.gguf, target
        elif isinstance(target, Path):  # a full (merged) model GGUF
            gguf, adapter_id = target, target.name
        else:
            gguf = base.gguf
        states = resolve_paths(paths).state_cache
        threads = n_threads or default_threads()

        def load() -> Backend:
            return LlamaCppBackend(gguf, lora_path=lora, n_ctx=n_ctx, n_threads=threads, model_id=base.identity,
                                   adapter_id=adapter_id, state_dir=states)

        key = (kind, _stamp(gguf), _stamp(lora), base.identity, adapter_id, n_ctx, threads, str(states))
    elif isinstance(target, Path):
        raise BackendError(f"the {kind} backend serves run folders, not GGUF files ({target})")
    else:
        adapter = run.adapter if run is not None else None
        window = n_ctx or 2048

        def load() -> Backend:
            if kind == "transformers":
                from openhoof_router.models.transformers_backend import TransformersBackend

                return TransformersBackend(base, adapter=adapter, n_threads=n_threads, n_ctx=window, paths=paths,
                                           adapter_id=run_id, cache_float=cache_float)
            from openhoof_router.models.mlx_backend import MLXBackend

            return MLXBackend(base, adapter=adapter, n_ctx=window, paths=paths, adapter_id=run_id)

        key = (kind, base.identity, _stamp(adapter), run_id, window, n_threads, cache_float)
    if not shared:
        return load()
    from openhoof_router.models.shared import acquire

    return acquire(key, load)


def _stamp(path: Path | None) -> tuple[str, int, int] | None:
    """A file as a sharing key: its path, size and mtime (a rebuilt file is another model)."""
    if path is None:
        return None
    try:
        st = Path(path).stat()
    except OSError:
        return (str(path), -1, -1)
    return (str(Path(path).resolve()), st.st_size, st.st_mtime_ns)


__all__ = ["Backend", "BackendError", "check_base", "load_backend", "merged_gguf", "pick_backend", "resolve_run",
           "run_decoding"]
