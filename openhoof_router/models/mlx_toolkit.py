"""The MLX toolkit shared by the MLX backend and the MLX trainer: loading the float
checkpoint in mlx-lm, adding LoRA factors to it, the output head, and, on Linux, putting
Intel MKL's BLAS under MLX's CPU build.

MKL on Linux:

The Linux wheel of MLX (``pip install "mlx[cpu]"``) links the reference netlib BLAS it
bundles; matrix products are then ~10-50x slower than with an optimised BLAS. MKL
(``pip install mkl``) exports the same ``cblas_*``/LAPACK symbols from ``libmkl_rt``, so
loading it into the global symbol scope *before* ``mlx.core`` is imported makes MLX bind
to it. Two ways, both handled here:

- in process: :func:`preload_mkl` ``dlopen``\\ s ``libmkl_rt`` with ``RTLD_GLOBAL``. It must
  run before anything imports ``mlx.core``; :mod:`openhoof_router.models.mlx_backend` and
  :mod:`openhoof_router.learning.trainers.mlx` call it on import.
- a new process: :func:`mlx_env` gives an environment with ``LD_PRELOAD`` set (for a
  subprocess), :func:`reexec_with_mkl` re-executes the current command line with it (for
  a CLI whose process already imported MLX). By hand::

      LD_PRELOAD=$VIRTUAL_ENV/lib/libmkl_rt.so.3 hoof-train run --backend mlx

``OPENHOOF_MKL`` names the library explicitly; ``OPENHOOF_MKL=0`` turns all of this off.
MKL runs sequentially unless ``MKL_THREADING_LAYER`` says otherwise (see
:data:`DEFAULT_THREADING_LAYER`).
macOS (Metal / Accelerate) needs none of it: every function here is a no-op there.
"""

from __future__ import annotations

import ctypes
import glob
import importlib.util
import os
import platform
import site
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, cast

from openhoof_router.models.env_switch import OFF, ON, env_switch

_REEXEC_FLAG = "OPENHOOF_MKL_REEXEC"
DEFAULT_THREADING_LAYER = "SEQUENTIAL"
"""MKL's OpenMP threads stall whenever the cores are shared (measured on 2 busy cores: a
279-token prefill took 4-8 s with 2 OpenMP threads, 2.3 s with 1, 1.1 s sequential).
Set ``MKL_THREADING_LAYER=INTEL`` (and ``MKL_NUM_THREADS``) yourself to try threads."""
_loaded: Path | None = None


def _wanted() -> bool:
    return platform.system() == "Linux" and env_switch(os.environ.get("OPENHOOF_MKL")) is not False


def find_mkl() -> Path | None:
    """Path of ``libmkl_rt.so*`` (``OPENHOOF_MKL``, the venv, the user site, pip's record)."""
    explicit = os.environ.get("OPENHOOF_MKL")
    if explicit and explicit.strip().lower() not in OFF | ON:
        path = Path(explicit).expanduser()
        return path if path.is_file() else None
    roots = [sys.prefix, sys.base_prefix, getattr(site, "USER_BASE", None) or ""]
    for root in dict.fromkeys(r for r in roots if r):
        hits = sorted(glob.glob(os.path.join(root, "lib", "libmkl_rt.so*")))
        if hits:
            return Path(hits[0])
    try:
        from importlib.metadata import PackageNotFoundError, distribution

        for f in distribution("mkl").files or []:
            if f.name.startswith("libmkl_rt.so"):
                return Path(f.locate()).resolve()
    except (ImportError, PackageNotFoundError):
        pass
    return None


def mkl_active() -> bool:
    """Whether ``libmkl_rt`` is mapped into this process (LD_PRELOAD or :func:`preload_mkl`)."""
    if _loaded is not None:
        return True
    try:
        with open("/proc/self/maps") as fh:
            return any("libmkl_rt" in line for line in fh)
    except OSError:
        return False


def mlx_imported() -> bool:
    return "mlx.core" in sys.modules


def preload_mkl() -> bool:
    """Load MKL for MLX in this process if possible. True when MLX will use (or uses) MKL.

    False means: not Linux/turned off (nothing to do), MKL not installed, or ``mlx.core``
    was imported first (then only a new process helps: :func:`reexec_with_mkl`).
    """
    global _loaded
    if not _wanted():
        return False
    if mkl_active():
        return True
    if mlx_imported():
        return False  # MLX already bound its BLAS symbols to the bundled reference BLAS
    if importlib.util.find_spec("mlx") is None:
        return False  # no MLX: keep MKL out of this process
    lib = find_mkl()
    if lib is None:
        return False
    os.environ.setdefault("MKL_THREADING_LAYER", DEFAULT_THREADING_LAYER)  # read at MKL's first call
    try:
        ctypes.CDLL(str(lib), mode=ctypes.RTLD_GLOBAL)
    except OSError:
        return False
    _loaded = lib
    return True


def mlx_fast() -> bool:
    """True unless MLX runs (or will run) on Linux with the slow bundled BLAS."""
    return platform.system() != "Linux" or mkl_active()


def mlx_env(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """An environment for a subprocess running MLX: ``LD_PRELOAD`` holds MKL on Linux."""
    env = dict(os.environ if base is None else base)
    if not _wanted():
        return env
    lib = find_mkl()
    if lib is None:
        return env
    current = [p for p in env.get("LD_PRELOAD", "").replace(":", " ").split() if p]
    if str(lib) not in current:
        env["LD_PRELOAD"] = " ".join([str(lib), *current])
    env.setdefault("MKL_THREADING_LAYER", DEFAULT_THREADING_LAYER)
    return env


def set_mkl_threads(n: int | None) -> None:
    """Cap MKL's threads (no-op without MKL)."""
    if not n or not mkl_active():
        return
    lib = find_mkl() if _loaded is None else _loaded
    try:
        ctypes.CDLL(str(lib)).MKL_Set_Num_Threads(ctypes.c_int(int(n)))
    except (OSError, AttributeError, TypeError):
        pass


def reexec_with_mkl() -> None:
    """For CLIs: make sure MKL sits under MLX, re-executing the command line once if needed.

    Call it early in ``main()`` of a command that will use MLX. In-process preloading is
    tried first; only when ``mlx.core`` is already imported does it ``exec`` the same
    command line (``sys.orig_argv``) with ``LD_PRELOAD`` set. Returns when nothing more
    can be done (it never loops).
    """
    if preload_mkl() or not _wanted() or os.environ.get(_REEXEC_FLAG):
        return
    env = mlx_env()
    if "LD_PRELOAD" not in env or env.get("LD_PRELOAD") == os.environ.get("LD_PRELOAD"):
        return
    env[_REEXEC_FLAG] = "1"
    argv = list(getattr(sys, "orig_argv", None) or [sys.executable, *sys.argv])
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, *argv[1:]], env)


SLOW_HINT = (
    "MLX on Linux runs on its bundled reference BLAS (~10-50x slow): pip install mkl, and "
    "import openhoof_router's MLX modules before anything imports mlx, or run with "
    "LD_PRELOAD=<venv>/lib/libmkl_rt.so.3"
)


# -- models -------------------------------------------------------------------------------

class MLXError(RuntimeError):
    """MLX is missing or cannot load the model."""


def import_mlx() -> tuple[Any, Any, Any]:
    """``(mlx.core, mlx.nn, mlx_lm)``, or an MLXError saying what to install."""
    preload_mkl()
    try:
        import mlx.core as mx
        import mlx.nn as nn
        import mlx_lm
    except ImportError as exc:
        raise MLXError(
            "MLX is not usable here (" + str(exc) + "): on Apple Silicon pip install "
            "'openhoof-router[mac]'; on Linux pip install 'openhoof-router[mlx-linux]' "
            "(plain 'mlx' on Linux lacks libmlx.so)"
        ) from exc
    return mx, nn, mlx_lm


def model_overrides(model_dir: Path) -> dict:
    """Config keys mlx-lm reads under older names (transformers 5 writes ``rope_parameters``)."""
    import json

    try:
        config = json.loads((model_dir / "config.json").read_text())
    except (OSError, ValueError):
        return {}
    out: dict = {}
    if config.get("model_type") == "gemma3_text":
        rope = config.get("rope_parameters") or {}
        full, local = rope.get("full_attention") or {}, rope.get("sliding_attention") or {}
        if "rope_theta" not in config and "rope_theta" in full:
            out["rope_theta"] = full["rope_theta"]
        if "rope_local_base_freq" not in config and "rope_theta" in local:
            out["rope_local_base_freq"] = local["rope_theta"]
        if config.get("rope_scaling") is None and full.get("rope_type", "default") != "default":
            out["rope_scaling"] = full
        if "sliding_window_pattern" not in config:
            pattern = config.get("_sliding_window_pattern")
            types = config.get("layer_types") or []
            if pattern is None and "full_attention" in types:
                pattern = types.index("full_attention") + 1
            if pattern:
                out["sliding_window_pattern"] = int(pattern)
    return out


def load_model(model_dir: Path) -> tuple[Any, Any]:
    """mlx-lm model + tokenizer over a float safetensors folder, in float32."""
    mx, _, mlx_lm = import_mlx()
    try:
        model, tokenizer = mlx_lm.load(str(model_dir), model_config=model_overrides(model_dir))
    except Exception as exc:  # mlx-lm raises ValueError/KeyError/FileNotFoundError
        raise MLXError(f"mlx-lm could not load {model_dir}: {exc}") from exc
    # float32 throughout: bfloat16 matmuls are slow on CPU and the checkpoint is float32
    from mlx.utils import tree_flatten, tree_map

    params = cast("list[tuple[str, Any]]", tree_flatten(model.parameters()))  # typed as list or dict
    if any(p.dtype != mx.float32 and mx.issubdtype(p.dtype, mx.floating) for _, p in params):
        model.update(tree_map(lambda p: p.astype(mx.float32) if mx.issubdtype(p.dtype, mx.floating) else p,
                              model.parameters()))
        mx.eval(model.parameters())
    return model, tokenizer


def add_lora(model: Any, adapter: Path) -> int:
    """Add a LoRA adapter's ``scale * B @ A`` (PEFT or mlx-lm folder) to the model's weights.

    Returns how many weights changed; raises :class:`~openhoof_router.models.lora.AdapterError`
    when the adapter does not fit.
    """
    import mlx.core as mx

    from openhoof_router.models.lora import AdapterError, delta, read_lora

    modules = dict(model.named_modules())
    factors = read_lora(adapter)
    for name, f in factors.items():
        module = modules.get(name)
        if module is None or not hasattr(module, "weight"):
            raise AdapterError(f"the adapter changes {name}, which this base does not have")
        weight = module.weight
        module.weight = weight + mx.array(delta(f, tuple(weight.shape), name)).astype(weight.dtype)
    mx.eval(model.parameters())
    return len(factors)


def backbone(model: Any) -> Any:
    """The decoder without its output head (``model.model`` for mlx-lm's causal LMs)."""
    inner = getattr(model, "model", None)
    return inner if inner is not None and hasattr(inner, "embed_tokens") else None


def head(model: Any, hidden: Any) -> Any:
    """The output head over hidden states: tied embeddings or ``lm_head``."""
    if getattr(model, "tie_word_embeddings", False) or not hasattr(model, "lm_head"):
        logits = model.model.embed_tokens.as_linear(hidden)
    else:
        logits = model.lm_head(hidden)
    cap = getattr(getattr(model, "args", None), "final_logit_softcapping", None)
    if cap:
        import mlx.core as mx

        logits = mx.tanh(logits / cap) * cap
    return logits
