"""llama.cpp backend (llama-cpp-python): the default on Linux and any CPU.

Serves a GGUF: the base alone, the base plus a GGUF LoRA adapter (``lora_path``), or a
merged router GGUF written by the trainer. The tool block's KV state is kept: the same
tool list only trims the cache back to the prefix; another tool list restores a saved
sequence state (a few MB) instead of re-reading its prompt.
"""

from __future__ import annotations

import ctypes
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from openhoof_router.models.backend import Backend, BackendError, PrefixCache, control_id


def default_threads() -> int:
    return int(os.environ.get("OPENHOOF_THREADS", 0)) or max(1, min(4, os.cpu_count() or 1))


class LlamaCppBackend(Backend):
    name = "llama.cpp"

    def __init__(
        self,
        model_path: str | Path,
        *,
        lora_path: str | Path | None = None,
        n_ctx: int = 2048,
        n_threads: int | None = None,
        model_id: str | None = None,
        adapter_id: str | None = None,
        prefix_cache_size: int = 8,
    ) -> None:
        try:
            import llama_cpp
        except ImportError as exc:
            raise BackendError(
                "llama-cpp-python is not installed: pip install 'openhoof-router[cpu]'"
            ) from exc
        self._llama_cpp = llama_cpp
        model_path = Path(model_path)
        if not model_path.is_file():
            raise BackendError(f"GGUF model not found: {model_path}")
        if lora_path is not None and not Path(lora_path).is_file():
            raise BackendError(f"LoRA adapter not found: {lora_path}")
        threads = n_threads or default_threads()
        try:
            self.llm = llama_cpp.Llama(
                model_path=str(model_path),
                lora_path=str(lora_path) if lora_path else None,
                n_ctx=n_ctx,
                n_batch=512,
                n_threads=threads,
                n_threads_batch=threads,
                logits_all=False,
                swa_full=True,  # Gemma 3 sliding-window layers: needed to trim a cached prefix
                verbose=False,
            )
        except Exception as exc:  # llama.cpp raises ValueError/RuntimeError on bad files
            raise BackendError(f"llama.cpp could not load {model_path}"
                               + (f" with adapter {lora_path}" if lora_path else "")
                               + f": {exc}") from exc
        self.n_ctx = self.llm.n_ctx()
        self.n_vocab = self.llm.n_vocab()
        self.bos_id = self.llm.token_bos()
        self.model_id = model_id or model_path.name
        self.adapter_id = adapter_id or (Path(lora_path).name if lora_path else None)
        self._current: tuple[int, ...] | None = None  # prefix whose KV sits in the cache now
        self._states: PrefixCache[bytes] = PrefixCache(prefix_cache_size)

    # -- tokens ---------------------------------------------------------------------
    def encode(self, text: str) -> list[int]:
        return self.llm.tokenize(text.encode("utf-8"), add_bos=False, special=False)

    def control(self, piece: str) -> int:
        return control_id(self.llm.tokenize(piece.encode("utf-8"), add_bos=False, special=True), piece)

    def detokenize(self, ids: Sequence[int]) -> str:
        return self.llm.detokenize(list(ids), special=True).decode("utf-8", errors="replace")

    # -- state ----------------------------------------------------------------------
    def _save_seq(self) -> bytes:
        lc, ctx = self._llama_cpp, self.llm._ctx.ctx
        size = lc.llama_state_seq_get_size(ctx, 0)
        buf = (ctypes.c_uint8 * size)()
        written = lc.llama_state_seq_get_data(ctx, buf, size, 0)
        return bytes(buf[:written])

    def _load_seq(self, blob: bytes) -> bool:
        lc, ctx = self._llama_cpp, self.llm._ctx.ctx
        self.llm._ctx.kv_cache_seq_rm(-1, 0, -1)
        buf = (ctypes.c_uint8 * len(blob)).from_buffer_copy(blob)
        return lc.llama_state_seq_set_data(ctx, buf, len(blob), 0) == len(blob)

    def start(self, prefix: Sequence[int], *, use_cache: bool = True) -> None:
        key = tuple(prefix)
        if use_cache and self._current == key:
            self.llm.n_tokens = len(key)  # eval() trims the KV cache back to here
            return
        if use_cache:
            blob = self._states.get(key)
            if blob is not None and self._load_seq(blob):
                self.llm.input_ids[: len(key)] = key
                self.llm.n_tokens = len(key)
                self._current = key
                return
        self.llm.reset()
        self.llm.eval(list(key))
        self._current = key
        if use_cache:
            self._states.put(key, self._save_seq())

    def mark(self) -> int:
        return self.llm.n_tokens

    def rewind(self, mark: int) -> None:
        self.llm.n_tokens = mark  # the next eval() drops the KV cells after it

    def feed(self, ids: Sequence[int]) -> np.ndarray:
        if self.llm.n_tokens + len(ids) > self.n_ctx:
            raise BackendError(f"context window exceeded ({self.llm.n_tokens + len(ids)} > {self.n_ctx})")
        self.llm.eval(list(ids))
        logits = np.ctypeslib.as_array(self.llm._ctx.get_logits(), shape=(self.n_vocab,))
        return logits.copy()

    def close(self) -> None:
        self._states.clear()
        llm, self.llm = getattr(self, "llm", None), None
        if llm is not None:
            llm.close()
