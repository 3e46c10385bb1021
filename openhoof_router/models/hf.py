"""Hugging Face (transformers) loading: the tokenizer wrapper the prompt codec uses, and the
float model every trainer and the transformers backend start from (loaded from the base's
float checkpoint, which :func:`~openhoof_router.models.base_model.float_checkpoint` converts
from its GGUF).

Imports of torch and transformers happen inside the functions: the router process that
serves llama.cpp never needs them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from openhoof_router.models.backend import BackendError, control_id
from openhoof_router.models.base_model import (
    BaseModelRef,
    cached_float_checkpoint,
    float_checkpoint,
    load_gguf_as_transformers,
)
from openhoof_router.models.quiet import quiet_transformers
from openhoof_router.store.paths import Paths


class HFTokenizer:
    """An HF tokenizer in the codec's shape: plain text with special tokens *off*
    (``split_special_tokens``), control tokens by name; the same ids llama.cpp gives."""

    def __init__(self, tokenizer: Any) -> None:
        # mlx-lm's TokenizerWrapper (not callable) holds the HF tokenizer in ``_tokenizer``
        self.tok = tokenizer if callable(tokenizer) else tokenizer._tokenizer
        bos = self.tok.bos_token_id
        if bos is None:
            raise BackendError("the tokenizer has no BOS token: the router needs a Gemma 3 tokenizer")
        self.bos_id = int(bos)

    def encode(self, text: str) -> list[int]:
        return list(self.tok(text, add_special_tokens=False, split_special_tokens=True)["input_ids"])

    def control(self, piece: str) -> int:
        return control_id(self.tok(piece, add_special_tokens=False)["input_ids"], piece)

    def decode(self, ids: Sequence[int]) -> str:
        return self.tok.decode(list(ids), skip_special_tokens=False)


def load_float_model(base: BaseModelRef, paths: Paths | None = None, *, dtype: str = "float32",
                     cache: bool = True) -> tuple[Any, Any]:
    """The base as a float transformers model and its tokenizer (from the cached checkpoint).

    ``cache=False``: when no float checkpoint exists yet, convert the GGUF in memory instead
    of writing one into the cache (slower at every load, ~1 GB less on disk).
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if not cache and base.gguf is not None and cached_float_checkpoint(base, paths) is None:
        return load_gguf_as_transformers(base.gguf, dtype)
    folder = float_checkpoint(base, paths)
    with quiet_transformers():  # the weight-loading bar only with --debug / OPENHOOF_DEBUG
        tokenizer = AutoTokenizer.from_pretrained(folder)
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=getattr(torch, dtype))
    return model, tokenizer
