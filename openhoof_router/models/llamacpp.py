"""llama.cpp backend (llama-cpp-python): the default on Linux and any CPU.

Serves a GGUF: the base alone, the base plus a GGUF LoRA adapter (``lora_path``), or a
merged router GGUF written by the trainer. A call evaluates only what no earlier call did:

- the tool block (``start``'s prefix) stays in the KV cache while calls use it; other blocks
  are saved states in memory, and on disk (``state_dir``, :class:`~.state_store.StateStore`)
  for other processes;
- what a call evaluated beyond its block (user turn, answer) is saved after it (a few MB, LRU
  within ``turn_state_mb``); a new call restores the saved sequence sharing the longest prefix
  with it over the block and evaluates the rest: a conversation's next turn reads only what
  its prompt adds to the last one's (when the format only appends);
- ``prefill`` evaluates and saves a conversation's earlier turns before its next message
  arrives (the agent middleware calls it when a turn's reply is out), so that message is
  all the next call reads;
- only the current block and call are in the KV cache: attention never spans other
  conversations, and a call's scores do not depend on what else is saved;
- the window (``n_ctx``, most tokens of one prompt) starts at 2048 and, unless set, grows for
  a longer tool list (up to 32768) in a new context over the same loaded weights.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np

from openhoof_router.models.backend import Backend, BackendError, PrefixCache, control_id
from openhoof_router.models.llama_context import KVFull, LlamaContext, state_identity
from openhoof_router.models.llama_params import model_params
from openhoof_router.models.quiet import quiet_llama_cpp
from openhoof_router.models.state_store import MIN_TOKENS, StateStore

DEFAULT_N_CTX, MAX_N_CTX, WINDOW_STEP = 2048, 32768, 2048
"""The first window; the largest a growing window takes (Gemma 3 270M reads 32k); its step."""
BLOCK, WORK, SCRATCH = 0, 1, 2  # sequences: the tool block held, the call (shares its cells), scratch
MIN_GAIN = 8  # a saved call is restored for at least this many tokens (fewer: read them again)


class _Turn(NamedTuple):  # a finished call's state from position ``block`` (its tool block's length) on
    block: int
    blob: bytes


def default_threads() -> int:
    """``OPENHOOF_THREADS`` (:class:`~openhoof_router.models.device.ModelSettings`), else up to 4."""
    from openhoof_router.models.device import ModelSettings

    return ModelSettings().n_threads or max(1, min(4, os.cpu_count() or 1))


class LlamaCppBackend(Backend):
    """A GGUF served through llama.cpp, reusing evaluated states (see the module docs).

    Args:
        model_path: the GGUF (a full model, or the base when ``lora_path`` is given).
        lora_path: a GGUF LoRA adapter applied at load.
        n_ctx: the window, fixed; None: 2048, grown for long tool lists.
        n_threads: CPU threads (default: ``OPENHOOF_THREADS``, else up to 4).
        model_id, adapter_id: what decisions name as the model and adapter.
        prefix_cache_size, block_state_mb: tool blocks' states kept in memory, and their total size.
        turn_state_mb: memory for finished calls' states (conversations), least recently used out.
        state_dir: where evaluated tool blocks are kept on disk (None: nowhere).
        reuse_turns: start from the longest saved sequence (off: from the tool block only).
    """

    name = "llama.cpp"

    def __init__(
        self,
        model_path: str | Path,
        *,
        lora_path: str | Path | None = None,
        n_ctx: int | None = None,
        n_threads: int | None = None,
        model_id: str | None = None,
        adapter_id: str | None = None,
        prefix_cache_size: int = 8,
        block_state_mb: int = 256,
        turn_state_mb: int = 96,
        state_dir: str | os.PathLike[str] | None = None,
        reuse_turns: bool = True,
    ) -> None:
        try:
            import llama_cpp
            from llama_cpp import _internals
        except ImportError as exc:
            raise BackendError(
                "llama-cpp-python is not installed: pip install 'openhoof-router[cpu]'"
            ) from exc
        self._llama_cpp = llama_cpp
        verbose = quiet_llama_cpp(llama_cpp)  # llama.cpp's own log only with --debug / OPENHOOF_DEBUG
        model_path = Path(model_path)
        if not model_path.is_file():
            raise BackendError(f"GGUF model not found: {model_path}")
        if lora_path is not None and not Path(lora_path).is_file():
            raise BackendError(f"LoRA adapter not found: {lora_path}")
        self._live: LlamaContext | None = None  # the context; None once closed
        self._adapter = None
        try:
            self.model = _internals.LlamaModel(path_model=str(model_path), params=model_params(llama_cpp),
                                               verbose=verbose)
            if lora_path is not None:
                self._adapter = llama_cpp.llama_adapter_lora_init(self.model.model, str(lora_path).encode("utf-8"))
                if self._adapter is None:
                    raise ValueError("llama_adapter_lora_init failed")
        except Exception as exc:  # llama.cpp raises ValueError/RuntimeError on bad files
            self._free()
            adapter = f" with adapter {lora_path}" if lora_path else ""
            raise BackendError(f"llama.cpp could not load {model_path}{adapter}: {exc}") from exc
        self._verbose, self._threads = verbose, n_threads or default_threads()
        self._max_ctx = n_ctx or min(MAX_N_CTX, self.model.n_ctx_train())
        self.n_vocab = self.model.n_vocab()
        self.bos_id = self.model.token_bos()
        self.model_id = model_id or model_path.name
        self.adapter_id = adapter_id or (Path(lora_path).name if lora_path else None)
        self.reuse_turns = reuse_turns
        self.reused = self.evaluated = 0  # tokens the last call took from saved states; tokens evaluated
        self._blocks: PrefixCache[bytes] = PrefixCache(prefix_cache_size, weigh=len, max_weight=block_state_mb << 20)
        self._turns: PrefixCache[_Turn] = PrefixCache(1 << 16, weigh=lambda t: len(t.blob),
                                                      max_weight=turn_state_mb << 20)
        self.store = None if state_dir is None else StateStore(
            state_dir, state_identity(llama_cpp, model_path, lora_path, self.model_id, self.adapter_id, False))
        self._open(n_ctx or DEFAULT_N_CTX)

    def _open(self, window: int) -> None:
        """A new context with room for ``window`` tokens (saved states stay valid)."""
        old, self._live = self._live, None
        if old is not None:
            old.close()  # first: its KV cache is freed before the next one is allocated
        self._live = LlamaContext(self._llama_cpp, self.model, n_cells=window + 256, n_threads=self._threads,
                                 n_seq_max=3, adapter=self._adapter, flash_attn=False, verbose=self._verbose)
        self.n_ctx = window
        self._resident: tuple[int, ...] | None = None  # the tool block in sequence BLOCK
        self._keep = False
        self._tokens: list[int] = []  # what sequence WORK holds
        self._block_len = 0
        self._pending: tuple[tuple[int, ...], bool] | None = None  # start()'s prefix, evaluated lazily

    @property
    def _ctx(self) -> LlamaContext:
        if self._live is None:
            raise BackendError("this llama.cpp backend is closed")
        return self._live

    # -- tokens ---------------------------------------------------------------------
    def encode(self, text: str) -> list[int]:
        return self.model.tokenize(text.encode("utf-8"), add_bos=False, special=False)

    def control(self, piece: str) -> int:
        return control_id(self.model.tokenize(piece.encode("utf-8"), add_bos=False, special=True), piece)

    def detokenize(self, ids: Sequence[int]) -> str:
        return self.model.detokenize(list(ids), special=True).decode("utf-8", errors="replace")

    # -- window ---------------------------------------------------------------------
    @property
    def max_ctx(self) -> int:
        return self._max_ctx

    def ensure_window(self, tokens: int) -> int:
        if tokens > self.n_ctx and self.n_ctx < self._max_ctx:
            self._settle()
            self._open(min(self._max_ctx, -(-tokens // WINDOW_STEP) * WINDOW_STEP))
        return self.n_ctx

    # -- states ---------------------------------------------------------------------
    def _settle(self) -> None:
        """Save what the finished call evaluated beyond its block (if within a sliding window: a
        longer part would come back with a gap there), then empty its sequence."""
        ctx, block = self._ctx, self._block_len
        keep = self._keep and self.reuse_turns and block < len(self._tokens) < block + (ctx.n_swa or self.n_ctx)
        if keep and ctx.whole(WORK):
            ctx.copy_range(WORK, SCRATCH, block)
            self._turns.put(tuple(self._tokens), _Turn(block, ctx.save(SCRATCH)))
            ctx.trim(SCRATCH)
        ctx.trim(WORK)
        self._tokens, self._keep = [], False

    def start(self, prefix: Sequence[int], *, use_cache: bool = True) -> None:
        if len(prefix) > self.n_ctx:
            raise BackendError(f"context window exceeded ({len(prefix)} > {self.n_ctx})")
        self._settle()
        self._pending = (tuple(prefix), use_cache)

    def _hold_block(self, prefix: tuple[int, ...]) -> None:
        """Sequence BLOCK holds ``prefix``: already, or restored from memory or disk, or evaluated."""
        if self._resident == prefix:
            return
        ctx, self._resident = self._ctx, None
        ctx.trim(BLOCK)
        store = self.store if len(prefix) >= MIN_TOKENS else None
        blob = self._blocks.get(prefix)
        if blob is None and store is not None:
            blob = store.load(prefix)
        if blob is None or not (ctx.load(BLOCK, blob) and ctx.whole(BLOCK)):
            if blob is not None and store is not None:
                store.discard(prefix)  # another build's or a damaged state: written again below
            ctx.trim(BLOCK)
            self._decode(BLOCK, prefix, 0)
            blob = ctx.save(BLOCK)
            ctx.trim(BLOCK)  # and back: laid out as a restored block is, a restarted router decides alike
            if not (ctx.load(BLOCK, blob) and ctx.whole(BLOCK)):
                raise BackendError("llama.cpp could not restore a state it had just saved")
            if store is not None:
                store.save(prefix, blob)
        self._blocks.put(prefix, blob)
        self._resident = prefix

    def _begin(self, ids: Sequence[int], first_output: int) -> tuple[tuple[int, ...], int]:
        """Put the pending prefix + ``ids`` in WORK from the best saved state: (all tokens, how many
        are in place). ``first_output``: the first index of ``ids`` whose logits are needed."""
        if self._pending is None:
            raise BackendError("start() must come before the first feed")
        prefix, use_cache = self._pending
        self._pending = None
        full = prefix + tuple(ids)
        self._keep, self._block_len, self.reused = use_cache, len(prefix), 0
        if not use_cache:  # the whole prompt read again, split and laid out in cells as the cached path is
            self._ctx.trim(BLOCK)
            self._resident = None
            self._append(prefix)
            return full, len(prefix)
        self._hold_block(prefix)
        ctx, n = self._ctx, len(prefix)
        hit = self._turns.longest(full, minimum=n + MIN_GAIN) if self.reuse_turns else None
        if hit is not None and hit[1].block == n and first_output >= MIN_GAIN:
            shared = min(hit[2], n + first_output)
            if ctx.load(WORK, hit[1].blob):
                ctx.copy_range(BLOCK, WORK, 0, n)
                ctx.trim(WORK, shared)
                if ctx.whole(WORK):
                    n = shared
                    self._turns.retire(hit[0])  # the conversation's newer state will supersede it
                else:
                    ctx.trim(WORK)
        if n == len(prefix):
            ctx.copy_range(BLOCK, WORK, 0, n)
        self._tokens, self.reused = list(full[:n]), n
        return full, n

    def _decode(self, seq: int, tokens: Sequence[int], pos: int, rows: dict[int, int] | None = None,
                select: Sequence[int] = (), out: np.ndarray | None = None) -> np.ndarray:
        if not tokens or pos + len(tokens) > self.n_ctx:
            raise BackendError(f"context window exceeded ({pos + len(tokens)} > {self.n_ctx})" if tokens
                               else "feed() needs at least one token")
        try:
            logits = self._ctx.decode(seq, tokens, pos, rows=rows, select=select, out=out)
        except KVFull as exc:  # the cache holds a window and a margin: only a bug gets here
            raise BackendError(f"the KV cache ({self._ctx.n_cells} tokens) is full") from exc
        self.evaluated += len(tokens)
        return logits

    def _append(self, tokens: Sequence[int], rows: dict[int, int] | None = None, select: Sequence[int] = (),
                out: np.ndarray | None = None) -> np.ndarray:
        logits = self._decode(WORK, tokens, len(self._tokens), rows, select, out)
        self._tokens.extend(tokens)
        return logits

    def feed(self, ids: Sequence[int]) -> np.ndarray:
        if self._pending is None:
            return self._append(ids)
        full, n = self._begin(ids, len(ids) - 1)
        return self._append(full[n:])

    def feed_rows(self, ids: Sequence[int], rows: Sequence[int], tokens: Sequence[int]) -> np.ndarray:
        """One evaluation of ``ids``; the 262k-entry output head runs at ``rows`` (and the end) alone."""
        out = np.empty((len(rows), len(tokens)), dtype=np.float32)
        if self._pending is None:
            full, n, shift = tuple(ids), 0, 0
        else:
            prefix_len = len(self._pending[0])
            full, n = self._begin(ids, min(rows, default=len(ids) - 1))
            shift = prefix_len - n
        self._append(full[n:], {r + shift: k for k, r in enumerate(rows)}, tokens, out)
        if not np.all(np.isfinite(out)):
            raise BackendError("the model produced non-finite scores")
        return out

    def prefill(self, prefix: Sequence[int], ids: Sequence[int]) -> int:
        if not self.reuse_turns or len(ids) < MIN_GAIN:
            return 0
        self.start(prefix)
        before = self.evaluated
        full, n = self._begin(ids, len(ids))
        if n < len(full):
            self._append(full[n:])
        self._settle()  # saved now, as a finished call is: the next call restores it
        return self.evaluated - before

    @property
    def held(self) -> int:  # finished calls' states in memory (tests, benchmarks)
        return len(self._turns)

    def _free(self) -> None:
        ctx, self._live = getattr(self, "_live", None), None
        if ctx is not None:
            ctx.close()
        adapter, self._adapter = getattr(self, "_adapter", None), None
        if adapter is not None:
            self._llama_cpp.llama_adapter_lora_free(adapter)
        model = self.__dict__.pop("model", None)
        if model is not None:
            model.close()
        for cache in (getattr(self, "_blocks", None), getattr(self, "_turns", None)):
            if cache is not None:
                cache.clear()
