"""A tiny random Gemma 3 written as an F32 llama.cpp GGUF: a base that trains and serves in
seconds, for the training tests. Test support only; the package writes routers with
``merge_lora_gguf`` (base GGUF + adapter) and never writes a whole model.

The tensors follow llama.cpp's ``convert_hf_to_gguf.py`` (``Gemma3Model``): every RMSNorm
weight is stored as ``w + 1`` (Gemma multiplies by ``1 + w``, llama.cpp by the stored weight),
q/k are not permuted, the tied ``lm_head`` is not written, matrices keep the HF ``(out, in)``
layout. The tokenizer is copied from a template GGUF (the embedded base), so the vocabulary
must be its 262,144 tokens. ``tests/integration/test_export.py`` checks llama.cpp computes
what transformers does on the result.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from openhoof_router.models.gguf_file import atomic_writer, read_metadata, write_tensors


def _rope_theta(cfg: Any, layer_type: str, default: float) -> float:
    params = (getattr(cfg, "rope_parameters", None) or {}).get(layer_type)  # transformers 5
    if params:
        return float(params["rope_theta"])
    legacy = "rope_local_base_freq" if layer_type == "sliding_attention" else "rope_theta"
    return float(getattr(cfg, legacy, default))


def write_tiny_gguf(model: Any, template_gguf: Path, out_path: Path) -> Path:
    """Write ``model`` (a ``Gemma3ForCausalLM`` with default rope and layer pattern) as F32."""
    import gguf

    cfg = model.config
    meta = read_metadata(template_gguf)
    if len(meta["tokenizer.ggml.tokens"][0]) != cfg.vocab_size:
        raise ValueError("the model's vocabulary is not the template tokenizer's")
    name_map = gguf.get_tensor_name_map(gguf.MODEL_ARCH.GEMMA3, cfg.num_hidden_layers)
    with atomic_writer(Path(out_path)) as writer:
        for key, (value, vtype, sub) in meta.items():
            if key.startswith("tokenizer.") and value != []:  # the writer rejects empty arrays
                writer.add_key_value(key, value, vtype, sub_type=sub)
        writer.add_context_length(cfg.max_position_embeddings)
        writer.add_embedding_length(cfg.hidden_size)
        writer.add_block_count(cfg.num_hidden_layers)
        writer.add_feed_forward_length(cfg.intermediate_size)
        writer.add_head_count(cfg.num_attention_heads)
        writer.add_head_count_kv(cfg.num_key_value_heads)
        writer.add_key_length(cfg.head_dim)
        writer.add_value_length(cfg.head_dim)
        writer.add_layer_norm_rms_eps(cfg.rms_norm_eps)
        writer.add_sliding_window(cfg.sliding_window)
        writer.add_rope_freq_base(_rope_theta(cfg, "full_attention", 1_000_000.0))
        writer.add_rope_freq_base_swa(_rope_theta(cfg, "sliding_attention", 10_000.0))
        writer.add_file_type(gguf.LlamaFileType.ALL_F32)
        plan = []
        for hf_name, tensor in model.state_dict().items():
            if hf_name == "lm_head.weight":
                continue  # tied: llama.cpp falls back to token_embd
            base, _, suffix = hf_name.rpartition(".")
            gguf_base = name_map.get_name(base)
            assert gguf_base is not None, f"no gemma3 GGUF tensor for {hf_name}"
            data = tensor.detach().float().cpu().numpy()
            if hf_name.endswith("norm.weight"):
                data = data + 1.0
            data = np.ascontiguousarray(data, dtype=np.float32)
            plan.append((f"{gguf_base}.{suffix}", data.shape, gguf.GGMLQuantizationType.F32,
                         lambda data=data: data))
        write_tensors(writer, plan)
    return Path(out_path)
