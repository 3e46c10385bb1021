"""transformers + PEFT backend: the fallback where llama.cpp and MLX are not available.

Runs the float weights (the base's safetensors folder, converted from the GGUF once) with
an optional PEFT adapter, so it serves exactly what the CPU/CUDA trainers produced.
The tool block's KV cache is kept per prefix and deep-copied for each call, so the
stored prefix is never extended by a user turn.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Sequence

import numpy as np

from ..base_model import BaseModelRef, float_checkpoint
from ..paths import Paths
from .base import Backend, BackendError, PrefixCache


class TransformersBackend(Backend):
    name = "transformers"

    def __init__(self, base: BaseModelRef, *, adapter: Path | None = None, n_threads: int | None = None,
                 n_ctx: int = 2048, paths: Paths | None = None, adapter_id: str | None = None,
                 model=None, tokenizer=None) -> None:
        try:
            import torch
            from transformers import AutoModelForCausalLM, AutoTokenizer
        except ImportError as exc:
            raise BackendError("transformers backend needs: pip install 'openhoof-router[train]'") from exc
        self._torch = torch
        if n_threads:
            torch.set_num_threads(n_threads)
        if model is None:
            folder = float_checkpoint(base, paths)
            tokenizer = AutoTokenizer.from_pretrained(folder)
            model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
        if adapter is not None:
            adapter = Path(adapter)
            if not (adapter / "adapter_config.json").exists():
                raise BackendError(f"{adapter} is not a PEFT adapter folder (adapter_config.json missing)")
            from peft import PeftModel

            try:
                model = PeftModel.from_pretrained(model, str(adapter))
            except Exception as exc:  # shape mismatches when the adapter belongs to another base
                raise BackendError(f"adapter {adapter} does not fit base {base.name}: {exc}") from exc
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.n_ctx = n_ctx
        self.model_id = base.identity
        self.adapter_id = adapter_id or (adapter.name if adapter is not None else None)
        self._states: PrefixCache = PrefixCache(8)
        self._cache = None
        self._length = 0

    def tokenize(self, text: str, *, bos: bool = False) -> list[int]:
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        return ([self.tokenizer.bos_token_id] if bos else []) + list(ids)

    def detokenize(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode(list(ids), skip_special_tokens=False)

    def _forward(self, ids: Sequence[int], cache):
        torch = self._torch
        with torch.no_grad():
            out = self.model(input_ids=torch.tensor([list(ids)]), past_key_values=cache, use_cache=True)
        return out.logits[0, -1].float().numpy(), out.past_key_values

    def start(self, prefix: Sequence[int], *, use_cache: bool = True) -> None:
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

    def close(self) -> None:
        self._states.clear()
        self._cache = None
