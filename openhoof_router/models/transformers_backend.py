"""transformers + PEFT backend: the fallback where llama.cpp and MLX are not available.

Runs the float weights (the base's safetensors folder, converted from the GGUF once) with
an optional LoRA adapter (PEFT or mlx-lm) added to them: the reference the quantized
llama.cpp path is checked against.
The tool block's KV cache is kept per prefix and deep-copied for each call, so the
stored prefix is never extended by a user turn; ``mark`` copies the cache too (this
backend trades speed for simplicity: it is the reference the others are checked against).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from openhoof_router.models.backend import Backend, BackendError, HFTokensMixin, PrefixCache
from openhoof_router.models.base_model import BaseModelRef
from openhoof_router.models.lora import AdapterError, delta, read_lora
from openhoof_router.store.paths import Paths


def add_lora(model: Any, adapter: Path) -> int:
    """Add a LoRA adapter's ``scale * B @ A`` (PEFT or mlx-lm folder) to a torch model's weights."""
    import torch

    modules = dict(model.named_modules())
    factors = read_lora(adapter)
    with torch.no_grad():
        for name, f in factors.items():
            module = modules.get(name)
            if module is None or not hasattr(module, "weight"):
                raise AdapterError(f"the adapter changes {name}, which this base does not have")
            weight = module.weight
            weight += torch.from_numpy(delta(f, tuple(weight.shape), name)).to(weight.dtype)
    return len(factors)


class TransformersBackend(HFTokensMixin, Backend):
    name = "transformers"

    def __init__(self, base: BaseModelRef, *, adapter: Path | None = None, n_threads: int | None = None,
                 n_ctx: int = 2048, paths: Paths | None = None, adapter_id: str | None = None,
                 model: Any = None, tokenizer: Any = None, cache_float: bool | None = None) -> None:
        """``cache_float``: write the base's float32 copy into the cache on first use (default:
        ``OPENHOOF_CACHE_FLOAT``, on); off, the GGUF is converted in memory at every load."""
        try:
            import torch

            from openhoof_router.models.hf import HFTokenizer, load_float_model
        except ImportError as exc:
            raise BackendError("the transformers backend needs: pip install 'openhoof-router[train]'") from exc
        self._torch = torch
        if n_threads:
            torch.set_num_threads(n_threads)
        if model is None:
            if cache_float is None:
                from openhoof_router.models.device import ModelSettings

                cache_float = ModelSettings().cache_float
            model, tokenizer = load_float_model(base, paths, cache=cache_float)
        if adapter is not None:
            adapter = Path(adapter)
            try:
                add_lora(model, adapter)
            except AdapterError as exc:
                raise BackendError(f"adapter {adapter} does not fit base {base.name}: {exc}") from exc
        self.model = model.eval()
        self.tokens = HFTokenizer(tokenizer)
        self.bos_id = self.tokens.bos_id
        self.n_ctx = n_ctx
        self.model_id = base.identity
        self.adapter_id = adapter_id or (adapter.name if adapter is not None else None)
        self._states: PrefixCache = PrefixCache(8)
        self._cache = None
        self._length = 0

    def _forward(self, ids: Sequence[int], cache):
        torch = self._torch
        with torch.no_grad():
            out = self.model(input_ids=torch.tensor([list(ids)]), cache=cache, use_cache=True)
        # ``cache`` is transformers 5's name; reading ``past_key_values`` logs a deprecation warning
        cache = getattr(out, "cache", None)
        return out.logits[0, -1].float().numpy(), cache if cache is not None else out.past_key_values

    def start(self, prefix: Sequence[int], *, use_cache: bool = True) -> None:
        if len(prefix) > self.n_ctx:
            raise BackendError(f"context window exceeded ({len(prefix)} > {self.n_ctx})")
        stored = self._states.get(prefix) if use_cache else None
        if stored is None:
            _, stored = self._forward(prefix, None)
            if use_cache:
                self._states.put(prefix, stored)
        self._cache = copy.deepcopy(stored)
        self._length = len(prefix)

    def feed(self, ids: Sequence[int]) -> np.ndarray:
        if self._length + len(ids) > self.n_ctx:
            raise BackendError(f"context window exceeded ({self._length + len(ids)} > {self.n_ctx})")
        logits, self._cache = self._forward(ids, self._cache)
        self._length += len(ids)
        return logits

    def _free(self) -> None:
        self._states.clear()
        self._cache = None
