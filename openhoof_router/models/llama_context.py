"""One llama.cpp context over loaded weights, holding a few token sequences at once.

llama-cpp-python's ``Llama`` drives a single sequence and fixes its context size at load.
The router needs a little more: a call's sequence that shares the KV cells of the tool block
held beside it (``copy_range`` shares cells, it copies no data), states of parts of a
sequence saved and restored, and a larger context for a long tool list without loading the
weights again. This wraps llama.cpp's own objects for that:

- one *unified* KV cache of ``n_cells`` cells, so sequences can share cells;
- no flash attention by default: its CPU kernel's rounding depends on every cell in the
  cache, so a call's scores would change with what else is held (measured: up to 0.36 in
  log-probability on the base model); without it they depend only on the call's own cells;
- Gemma 3's sliding-window layers keep full-size caches (``swa_full``), so a sequence can
  be trimmed back and continued.

Not thread-safe: the backend's lock serialises callers.
"""

from __future__ import annotations

import ctypes
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from openhoof_router.models.backend import BackendError


class KVFull(BackendError):
    """No free KV cells for a batch."""


class LlamaContext:
    """A llama.cpp context: decode tokens into a sequence, trim, share and save sequences.

    Args:
        lc: the ``llama_cpp`` module.
        model: a loaded ``llama_cpp._internals.LlamaModel``.
        n_cells: KV cells (tokens) across all sequences.
        n_threads: CPU threads.
        n_seq_max: most sequences held at once.
        adapter: a LoRA adapter handle to apply (``llama_adapter_lora_init``), or None.
        flash_attn: use flash attention (faster over many cells; see the module docs).
        n_batch: most tokens per ``llama_decode`` call.
    """

    def __init__(self, lc: Any, model: Any, *, n_cells: int, n_threads: int, n_seq_max: int = 64,
                 adapter: Any = None, flash_attn: bool = False, n_batch: int = 512, verbose: bool = False) -> None:
        from llama_cpp import _internals

        self._lc = lc
        self.n_vocab = model.n_vocab()
        self.n_batch = n_batch
        params = lc.llama_context_default_params()
        params.n_ctx = n_cells
        params.n_batch = params.n_ubatch = n_batch
        params.n_threads = params.n_threads_batch = n_threads
        params.n_seq_max = n_seq_max
        params.swa_full = True  # Gemma 3 sliding-window layers: needed to trim and continue a sequence
        params.flash_attn_type = lc.LLAMA_FLASH_ATTN_TYPE_ENABLED if flash_attn else lc.LLAMA_FLASH_ATTN_TYPE_DISABLED
        params.kv_unified = True  # sequences share cells (a block is stored once)
        params.no_perf = True
        try:
            self._ctx = _internals.LlamaContext(model=model, params=params, verbose=verbose)
        except Exception as exc:  # llama.cpp returns NULL when the cache cannot be allocated
            raise BackendError(f"llama.cpp could not create a context of {n_cells} tokens: {exc}") from exc
        self.ctx = self._ctx.ctx
        self.memory = self._ctx.memory
        self.n_cells = lc.llama_n_ctx(self.ctx)
        self.n_seq_max = lc.llama_n_seq_max(self.ctx)
        self.n_swa = lc.llama_model_n_swa(model.model)
        """Positions a sliding-window layer attends to (0: the model has none)."""
        if adapter is not None:
            adapters = (lc.llama_adapter_lora_p_ctypes * 1)(adapter)
            if lc.llama_set_adapters_lora(self.ctx, adapters, 1, (ctypes.c_float * 1)(1.0)):
                self.close()
                raise BackendError("llama.cpp could not apply the LoRA adapter")
        self._batch = _internals.LlamaBatch(n_tokens=n_batch, embd=0, n_seq_max=1, verbose=verbose)

    # -- sequences -------------------------------------------------------------------
    def decode(self, seq: int, tokens: Sequence[int], pos: int, *, rows: dict[int, int] | None = None,
               select: Sequence[int] = (), out: np.ndarray | None = None) -> np.ndarray:
        """Append ``tokens`` to sequence ``seq`` (the first at position ``pos``) and return the
        logits after the last one.

        ``rows`` maps token indices to rows of ``out``: the logits of ``select`` after each of
        those tokens are written there, from the same evaluation. Raises :class:`KVFull`.
        """
        lc, b = self._lc, self._batch.batch
        rows = rows or {}
        done = 0
        while done < len(tokens):
            chunk = tokens[done: done + self.n_batch]
            b.n_tokens = len(chunk)
            for i, token in enumerate(chunk):
                b.token[i] = int(token)
                b.pos[i] = pos + done + i
                b.n_seq_id[i] = 1
                b.seq_id[i][0] = seq
                b.logits[i] = bool(rows) and (done + i) in rows
            b.logits[len(chunk) - 1] = True
            rc = lc.llama_decode(self.ctx, b)
            if rc == 1:
                raise KVFull(f"no free KV cells for {len(chunk)} tokens")
            if rc != 0:
                raise BackendError(f"llama_decode failed ({rc})")
            if rows and out is not None:
                pick = np.asarray(select, dtype=np.int64)
                for i in range(len(chunk)):
                    k = rows.get(done + i)
                    if k is not None:
                        row = np.ctypeslib.as_array(lc.llama_get_logits_ith(self.ctx, i), shape=(self.n_vocab,))
                        out[k] = row[pick]
            done += len(chunk)
        ptr = lc.llama_get_logits_ith(self.ctx, -1)
        return np.ctypeslib.as_array(ptr, shape=(self.n_vocab,)).copy()

    def trim(self, seq: int, keep: int = 0) -> None:
        """Forget sequence ``seq`` from position ``keep`` on (0: all of it)."""
        self._lc.llama_memory_seq_rm(self.memory, seq, keep, -1)

    def copy_range(self, src: int, dst: int, p0: int, p1: int = -1) -> None:
        """Make ``dst`` share ``src``'s positions ``[p0, p1)`` (-1: to the end); cells are shared,
        not copied."""
        self._lc.llama_memory_seq_cp(self.memory, src, dst, p0, p1)

    def whole(self, seq: int) -> bool:
        """Whether ``seq`` (not empty) can be continued from its end: it holds every position
        its next token attends to. Sliding-window layers keep only the last ``n_swa`` positions
        (llama.cpp drops older cells there), and their start is what ``seq_pos_min`` reports."""
        lc, memory = self._lc, self.memory
        first, last = lc.llama_memory_seq_pos_min(memory, seq), lc.llama_memory_seq_pos_max(memory, seq)
        return last >= 0 and first <= (max(0, last + 1 - self.n_swa) if self.n_swa else 0)

    def save(self, seq: int) -> bytes:
        """Sequence ``seq``'s state as a blob (positions and K/V of its cells)."""
        lc = self._lc
        size = lc.llama_state_seq_get_size(self.ctx, seq)
        buf = (ctypes.c_uint8 * size)()
        written = lc.llama_state_seq_get_data(self.ctx, buf, size, seq)
        return bytes(memoryview(buf)[:written])  # (slicing the ctypes array would make a list of ints)

    def load(self, seq: int, blob: bytes) -> bool:
        """Restore a blob from :meth:`save` into the empty sequence ``seq``; False if llama.cpp
        refused it (another model or cache layout, no contiguous free cells)."""
        buf = (ctypes.c_uint8 * len(blob)).from_buffer_copy(blob)
        ok = self._lc.llama_state_seq_set_data(self.ctx, buf, len(blob), seq) == len(blob)
        if not ok:
            self.trim(seq)
        return ok

    def close(self) -> None:
        batch = self.__dict__.pop("_batch", None)  # (closed: any later use fails loudly)
        if batch is not None:
            batch.close()
        ctx = self.__dict__.pop("_ctx", None)
        if ctx is not None:
            ctx.close()


def state_identity(lc: Any, model_path: Path, lora_path: Any, model_id: str, adapter_id: str | None,
                   flash_attn: bool) -> str:
    """What a saved state depends on besides its tokens: the files (name, size, mtime), the
    adapter, the cache layout and llama.cpp's version."""
    def stamp(path: Any) -> str:
        st = Path(path).stat()
        return f"{Path(path).name}:{st.st_size}:{st.st_mtime_ns}"

    return "|".join([f"llama-cpp-python {lc.__version__}", stamp(model_path),
                     stamp(lora_path) if lora_path else "-", model_id, adapter_id or "-",
                     f"flash_attn={int(flash_attn)}", "swa_full"])


__all__ = ["KVFull", "LlamaContext", "state_identity"]
