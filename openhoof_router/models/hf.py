"""Hugging Face (transformers) loading, in one place: the tokenizer wrapper the prompt codec
uses, the float model every trainer and the transformers backend start from, and the
GGUF → transformers conversion behind both.

Imports of torch and transformers happen inside the functions: the router process that
serves llama.cpp never needs them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from openhoof_router.models.backend import BackendError, control_id
from openhoof_router.models.base_model import BaseModelRef, float_checkpoint
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


def load_gguf_as_transformers(gguf: Path, dtype: str = "float32") -> tuple[Any, Any]:
    """Load a GGUF into transformers (dequantized) with its tokenizer; ready to save or train."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=getattr(torch, dtype))
    # The weights are plain floats now; the quantizer marker only blocks save_pretrained.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    return model, tokenizer


def load_float_model(base: BaseModelRef, paths: Paths | None = None, *, dtype: str = "float32") -> tuple[Any, Any]:
    """The base as a float transformers model and its tokenizer (from the cached checkpoint)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = float_checkpoint(base, paths)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=getattr(torch, dtype))
    return model, tokenizer
