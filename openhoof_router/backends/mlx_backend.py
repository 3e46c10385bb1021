"""MLX backend (mlx-lm): Apple Silicon's default, and the Linux CPU build for tests.

Serves the float checkpoint of the base (:func:`openhoof_router.base_model.float_checkpoint`,
converted once from the GGUF) with an optional mlx-lm LoRA adapter folder
(``adapters.safetensors`` + ``adapter_config.json``, as :mod:`..training.mlx_trainer`
writes it). The adapter is fused into the weights at load time, so serving costs the same
as the base.

KV cache: one full-size :class:`mlx_lm.models.cache.KVCache` per layer, sliding-window
layers included (mlx-lm's default for Gemma 3 is a 512-slot rotating cache, which cannot
be trimmed once full; this is llama.cpp's ``swa_full``). The window is still applied by the
attention mask. Each cached prefix keeps its own (keys, values, offset) snapshot; ``start``
copies it into fresh cache objects, so decoding never writes into a saved state.

Logits: only the last position goes through the 262k-token output head.

On Linux, MKL must sit under MLX (see :mod:`openhoof_router.mlx_env`); importing this
module preloads it when it can.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .. import mlx_env
from ..base_model import BaseModelRef, float_checkpoint
from ..paths import Paths
from .base import Backend, BackendError, PrefixCache

mlx_env.preload_mkl()  # before anything imports mlx.core


def import_mlx() -> tuple[Any, Any, Any]:
    """``(mlx.core, mlx.nn, mlx_lm)`` or a BackendError saying what to install."""
    try:
        import mlx.core as mx
        import mlx.nn as nn
        import mlx_lm
    except ImportError as exc:
        raise BackendError(
            "MLX is not usable here (" + str(exc) + "): on Apple Silicon pip install "
            "'openhoof-router[mac]'; on Linux pip install 'mlx[cpu]' mlx-lm mkl "
            "(plain 'mlx' on Linux lacks libmlx.so)"
        ) from exc
    return mx, nn, mlx_lm


# -- model loading shared with the trainer -------------------------------------------------

def model_overrides(model_dir: Path) -> dict:
    """Config keys mlx-lm reads under older names (transformers 5 writes ``rope_parameters``)."""
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


ADAPTER_FILES = ("adapters.safetensors", "adapter_config.json")


def resolve_adapter(path: str | Path) -> Path:
    """The mlx-lm adapter folder meant by ``path``: the folder itself, a run folder holding
    ``mlx/``, or ``X/mlx`` where X is the adapter folder (``load_backend`` appends ``mlx``
    to any folder it is given)."""
    path = Path(path).expanduser()
    for candidate in (path, path / "mlx", path.parent if path.name == "mlx" else None):
        if candidate is not None and all((candidate / n).is_file() for n in ADAPTER_FILES):
            return candidate
    raise BackendError(
        f"{path} is not an MLX adapter folder (needs {' and '.join(ADAPTER_FILES)}, as "
        "hoof-train --backend mlx writes them)"
    )


def load_float_model(model_dir: Path, adapter: Path | None = None):
    """mlx-lm model + tokenizer over a float safetensors folder, float32, adapter applied."""
    mx, _, mlx_lm = import_mlx()
    if adapter is not None:
        adapter = resolve_adapter(adapter)
    try:
        model, tokenizer = mlx_lm.load(
            str(model_dir),
            model_config=model_overrides(model_dir),
            adapter_path=str(adapter) if adapter is not None else None,
        )
    except Exception as exc:  # mlx-lm raises ValueError/KeyError/FileNotFoundError
        raise BackendError(
            f"mlx-lm could not load {model_dir}" + (f" with adapter {adapter}" if adapter else "")
            + f": {exc}"
        ) from exc
    # float32 throughout: bfloat16 matmuls are slow on CPU and the checkpoint is float32
    from mlx.utils import tree_flatten, tree_map

    if any(p.dtype != mx.float32 and mx.issubdtype(p.dtype, mx.floating)
           for _, p in tree_flatten(model.parameters())):
        model.update(tree_map(lambda p: p.astype(mx.float32) if mx.issubdtype(p.dtype, mx.floating) else p,
                              model.parameters()))
        mx.eval(model.parameters())
    return model, tokenizer


def fuse_lora(model) -> int:
    """Merge every LoRA layer into its base linear (in place); returns how many."""
    from mlx.utils import tree_unflatten

    fused = [(name, m.fuse()) for name, m in model.named_modules() if hasattr(m, "fuse")]
    if fused:
        model.update_modules(tree_unflatten(fused))
    return len(fused)


def backbone(model):
    """The decoder without its output head (``model.model`` for mlx-lm's causal LMs)."""
    inner = getattr(model, "model", None)
    return inner if inner is not None and hasattr(inner, "embed_tokens") else None


def head(model, hidden):
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


class HFTokens:
    """Tokenize like llama.cpp with ``special=True``: markers parsed, BOS only on request."""

    def __init__(self, tokenizer) -> None:
        self.tok = getattr(tokenizer, "_tokenizer", tokenizer)
        bos = self.tok.bos_token_id
        self.bos_id = int(bos) if bos is not None else None

    def encode(self, text: str, *, bos: bool = False) -> list[int]:
        ids = list(self.tok.encode(text, add_special_tokens=False))
        if bos and self.bos_id is not None and (not ids or ids[0] != self.bos_id):
            ids.insert(0, self.bos_id)
        return ids

    def decode(self, ids: Sequence[int]) -> str:
        return self.tok.decode(list(ids), skip_special_tokens=False)


class MLXBackend(Backend):
    name = "mlx"

    def __init__(
        self,
        base: BaseModelRef,
        adapter: str | Path | None = None,
        n_ctx: int = 2048,
        paths: Paths | None = None,
        adapter_id: str | None = None,
        *,
        prefix_cache_size: int = 8,
        fuse: bool = True,
    ) -> None:
        mx, _, _ = import_mlx()
        self._mx = mx
        if adapter is not None:
            adapter = resolve_adapter(adapter)  # fail fast, before loading any weights
        try:
            model_dir = float_checkpoint(base, paths)
        except Exception as exc:
            raise BackendError(f"no float weights for {base.name}: {exc}") from exc
        self.model, tokenizer = load_float_model(model_dir, adapter)
        if adapter is not None and fuse:
            fuse_lora(self.model)
        self.model.eval()
        self._inner = backbone(self.model)
        self.tokens = HFTokens(tokenizer)
        self.n_ctx = n_ctx
        self.model_id = base.identity
        if adapter_id is None and adapter is not None:  # runs/ID/mlx -> ID
            adapter_id = adapter.parent.name if adapter.name == "mlx" else adapter.name
        self.adapter_id = adapter_id
        self.model_dir = model_dir
        self.fast = mlx_env.mlx_fast()
        self._cache: list | None = None
        self._offset = 0
        self._current: tuple[int, ...] | None = None
        self._states: PrefixCache[list] = PrefixCache(prefix_cache_size)

    # -- tokens ---------------------------------------------------------------------
    def tokenize(self, text: str, *, bos: bool = False) -> list[int]:
        return self.tokens.encode(text, bos=bos)

    def detokenize(self, ids: Sequence[int]) -> str:
        return self.tokens.decode(ids)

    # -- state ----------------------------------------------------------------------
    def _new_cache(self) -> list:
        from mlx_lm.models.cache import KVCache

        return [KVCache() for _ in self.model.layers]

    def _snapshot(self) -> list:
        out = []
        for c in self._cache:
            off = c.offset
            out.append((c.keys[..., :off, :], c.values[..., :off, :], off))
        self._mx.eval([s[:2] for s in out])
        return out

    def _restore(self, snap: list) -> None:
        from mlx_lm.models.cache import KVCache

        cache = []
        for keys, values, off in snap:
            c = KVCache()
            # new array objects: writes into this cache never reach the saved snapshot
            c.keys, c.values, c.offset = keys[..., :off, :], values[..., :off, :], off
            cache.append(c)
        self._cache, self._offset = cache, snap[0][2] if snap else 0

    def _forward(self, ids: Sequence[int], *, logits: bool):
        mx = self._mx
        x = mx.array([list(ids)], dtype=mx.int32)
        if self._inner is None:  # unknown layout: the full model, every position through the head
            full = self.model(x, cache=self._cache)
            out = full[0, -1] if logits else None
        else:
            hidden = self._inner(x, cache=self._cache)
            out = head(self.model, hidden[:, -1:, :])[0, -1] if logits else None
        self._offset += len(ids)
        if out is None:
            mx.eval([(c.keys, c.values) for c in self._cache])
            return None
        out = out.astype(mx.float32)
        mx.eval(out)
        return np.array(out, copy=True)

    def start(self, prefix: Sequence[int], *, use_cache: bool = True) -> None:
        key = tuple(prefix)
        if len(key) > self.n_ctx:
            raise BackendError(f"context window exceeded ({len(key)} > {self.n_ctx})")
        if use_cache and self._current == key and self._cache is not None:
            for c in self._cache:
                c.trim(c.offset - len(key))  # KVCache: back to the end of the prefix
            self._offset = len(key)
            return
        if use_cache:
            snap = self._states.get(key)
            if snap is not None:
                self._restore(snap)
                self._current = key
                return
        self._cache, self._offset = self._new_cache(), 0
        if key:
            self._forward(key, logits=False)
        self._current = key
        if use_cache:
            self._states.put(key, self._snapshot())

    def feed(self, ids: Sequence[int]) -> np.ndarray:
        if self._cache is None:
            raise BackendError("feed() before start()")
        if not ids:
            raise BackendError("feed() needs at least one token")
        if self._offset + len(ids) > self.n_ctx:
            raise BackendError(f"context window exceeded ({self._offset + len(ids)} > {self.n_ctx})")
        return self._forward(ids, logits=True)

    def close(self) -> None:
        self._states.clear()
        self._cache = None
        self._current = None
        self.model = None
        self._inner = None
