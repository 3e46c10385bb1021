"""MLX backend (mlx-lm): Apple Silicon's default, and the Linux CPU build for tests.

Serves the float checkpoint of the base (:func:`openhoof_router.models.base_model.float_checkpoint`,
converted once from the GGUF) with an optional LoRA adapter (an mlx-lm folder from
:mod:`..training.mlx_trainer`, or a PEFT folder from the other trainers): its factors are
added to the weights at load time, so serving costs the same as the base.

KV cache: one full-size :class:`mlx_lm.models.cache.KVCache` per layer, sliding-window
layers included (mlx-lm's default for Gemma 3 is a 512-slot rotating cache, which cannot
be trimmed once full; this is llama.cpp's ``swa_full``). The window is still applied by the
attention mask. Each cached prefix keeps its own (keys, values, offset) snapshot; ``start``
copies it into fresh cache objects, so decoding never writes into a saved state.

Logits: only the last position goes through the 262k-token output head.

On Linux, MKL must sit under MLX (see :mod:`openhoof_router.models.mlx_toolkit`); importing this
module preloads it when it can.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from openhoof_router.models import mlx_toolkit
from openhoof_router.models.backend import Backend, BackendError, HFTokensMixin, PrefixCache
from openhoof_router.models.base_model import BaseModelRef, float_checkpoint
from openhoof_router.store.paths import Paths

mlx_toolkit.preload_mkl()  # before anything imports mlx.core


class MLXBackend(HFTokensMixin, Backend):
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
    ) -> None:
        from openhoof_router.models.lora import AdapterError, adapter_kind

        try:
            mx, _, _ = mlx_toolkit.import_mlx()
        except mlx_toolkit.MLXError as exc:
            raise BackendError(str(exc)) from None
        self._mx = mx
        if adapter is not None and adapter_kind(Path(adapter)) is None:  # fail fast, before loading weights
            raise BackendError(f"{adapter} is not a LoRA adapter folder (PEFT or mlx-lm)")
        try:
            model_dir = float_checkpoint(base, paths)
            self.model, tokenizer = mlx_toolkit.load_model(model_dir)
            if adapter is not None:
                mlx_toolkit.add_lora(self.model, Path(adapter))
        except AdapterError as exc:
            raise BackendError(f"adapter {adapter} does not fit base {base.name}: {exc}") from exc
        except Exception as exc:
            raise BackendError(f"MLX could not load {base.name}: {exc}") from exc
        self.model.eval()
        self._inner = mlx_toolkit.backbone(self.model)
        from openhoof_router.models.hf import HFTokenizer

        self.tokens = HFTokenizer(tokenizer)
        self.bos_id = self.tokens.bos_id
        self.n_ctx = n_ctx
        self.model_id = base.identity
        self.adapter_id = adapter_id or (Path(adapter).name if adapter is not None else None)
        self.model_dir = model_dir
        self.fast = mlx_toolkit.mlx_fast()
        self._cache: list | None = None
        self._offset = 0
        self._current: tuple[int, ...] | None = None
        self._states: PrefixCache[list] = PrefixCache(prefix_cache_size)

    # -- state ----------------------------------------------------------------------
    def _new_cache(self) -> list:
        from mlx_lm.models.cache import KVCache

        return [KVCache() for _ in self.model.layers]

    def _snapshot(self) -> list:
        assert self._cache is not None, "start() makes the cache"
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
        assert self._cache is not None, "start() makes the cache"
        mx = self._mx
        x = mx.array([list(ids)], dtype=mx.int32)
        if self._inner is None:  # unknown layout: the full model, every position through the head
            full = self.model(x, cache=self._cache)
            out = full[0, -1] if logits else None
        else:
            hidden = self._inner(x, cache=self._cache)
            out = mlx_toolkit.head(self.model, hidden[:, -1:, :])[0, -1] if logits else None
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

    def _free(self) -> None:
        self._states.clear()
        self._cache = None
        self._current = None
        self.model = None
        self._inner = None
