"""Writing routers as llama.cpp-loadable GGUFs (Gemma 3 text, arch ``gemma3``), two ways:

- :func:`merge_lora_gguf`: base GGUF + a LoRA adapter (PEFT or MLX), merged with numpy:
  the adapted matrices are dequantized, get ``scale * B @ A`` and are written in q8_0; the
  rest is copied byte for byte. What runs, ``hoof-train export`` and serving use.
- :func:`write_gguf`: a whole transformers model (a tiny random config in tests, any
  full fine-tune).

Neither goes through llama.cpp's LoRA converter (Gemma-3 LoRA conversion has failed
upstream before), and a test checks llama.cpp picks the next token transformers + PEFT do.

Tensor transforms of :func:`write_gguf`, mirrored from llama.cpp's ``convert_hf_to_gguf.py`` (``Gemma3Model``)
and undone by transformers' GGUF loader (``Gemma2TensorProcessor``, used for gemma3):

* every RMSNorm weight (``*norm.weight``: input/post-attention/pre-/post-feedforward
  layernorms, q_norm, k_norm and the final norm) is stored as ``w + 1``, because Gemma's
  RMSNorm multiplies by ``1 + w`` while llama.cpp multiplies by the stored weight;
* q/k are *not* permuted (Gemma uses the NeoX rope layout, unlike Llama);
* tied embeddings: ``lm_head.weight`` is not written, llama.cpp reuses ``token_embd``;
* matrices keep the HF ``(out, in)`` layout (GGUF lists dims reversed); 1-D tensors stay F32.

Tokenizer keys (and the general metadata that still holds) come from a template GGUF,
normally the embedded base; hyperparameters come from the transformers config, so a
tiny random config exports too.
"""

from __future__ import annotations

import logging
import mmap
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from openhoof_router.models.gguf_file import ARCH, ExportError, TensorInfo, atomic_writer, read_gguf, read_metadata, write_tensors

if TYPE_CHECKING:  # heavy imports stay lazy: the router process never needs torch
    import torch
    from gguf import GGUFWriter

log = logging.getLogger(__name__)

SWA_PERIOD = 6  # llama.cpp hard-codes Gemma 3's 5-local:1-global layer pattern
LLAMA_CPP_SWA_ROPE_BASE = 10000.0  # and the local layers' rope base (older builds ignore the key)
# Template keys that describe the template file itself, not the model being written.
_STALE_GENERAL = {"general.architecture", "general.file_type", "general.quantization_version", "general.alignment"}
_SIZE_GENERAL = {"general.size_label"}  # wrong once the shape differs from the template


# -- config --------------------------------------------------------------------------------
def _text_config(config: Any) -> Any:
    """A Gemma3Config (multimodal) carries the text model's config inside."""
    return config.get_text_config() if hasattr(config, "get_text_config") else config


def _rope(cfg: Any, layer_type: str) -> dict:
    """Rope parameters per layer type: transformers 5 ``rope_parameters``, or 4.x fields."""
    params = getattr(cfg, "rope_parameters", None) or {}
    if layer_type in params:
        return dict(params[layer_type])
    if layer_type == "sliding_attention":
        theta = getattr(cfg, "rope_local_base_freq", LLAMA_CPP_SWA_ROPE_BASE)
        return {"rope_type": "default", "rope_theta": theta}
    scaling = dict(getattr(cfg, "rope_scaling", None) or {"rope_type": "default"})
    scaling.setdefault("rope_type", scaling.get("type", "default"))
    return {**scaling, "rope_theta": getattr(cfg, "rope_theta", 1_000_000.0)}


def _check_llama_cpp_semantics(cfg: Any) -> None:
    """Refuse configs llama.cpp's gemma3 graph would silently compute differently."""
    n = cfg.num_hidden_layers
    problems = []
    expected = ["full_attention" if (i + 1) % SWA_PERIOD == 0 else "sliding_attention" for i in range(n)]
    if getattr(cfg, "layer_types", None) is not None and list(cfg.layer_types) != expected:
        problems.append(f"layer_types is not the 1-in-{SWA_PERIOD} global pattern llama.cpp assumes")
    # llama.cpp scales attention by 1/sqrt(head_dim), except 27B (62 layers): 1/sqrt(hidden/heads).
    scalar = cfg.hidden_size // cfg.num_attention_heads if n == 62 else cfg.head_dim
    if getattr(cfg, "query_pre_attn_scalar", scalar) != scalar:
        problems.append(f"query_pre_attn_scalar={cfg.query_pre_attn_scalar}, llama.cpp uses {scalar}")
    if getattr(cfg, "attn_logit_softcapping", None) or getattr(cfg, "final_logit_softcapping", None):
        problems.append("logit softcapping is not part of Gemma 3")
    if getattr(cfg, "use_bidirectional_attention", False):
        problems.append("bidirectional attention (EmbeddingGemma) is another llama.cpp architecture")
    if getattr(cfg, "hidden_activation", "gelu_pytorch_tanh") != "gelu_pytorch_tanh":
        problems.append(f"activation {cfg.hidden_activation}, llama.cpp uses tanh-approximated GELU")
    if _rope(cfg, "sliding_attention").get("rope_type", "default") != "default":
        problems.append("scaled rope on sliding layers")
    if (kind := _rope(cfg, "full_attention").get("rope_type", "default")) not in ("default", "linear"):
        problems.append(f"rope type {kind} on global layers")
    if problems:
        raise ExportError("config not exportable to llama.cpp gemma3: " + "; ".join(problems))


def _add_hparams(writer: GGUFWriter, cfg: Any) -> None:
    import gguf

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
    full, local = _rope(cfg, "full_attention"), _rope(cfg, "sliding_attention")
    writer.add_rope_freq_base(full["rope_theta"])
    writer.add_rope_freq_base_swa(local["rope_theta"])
    if local["rope_theta"] != LLAMA_CPP_SWA_ROPE_BASE:
        log.warning("local rope base %s: llama.cpp builds without %s.rope.freq_base_swa use %s",
                    local["rope_theta"], ARCH, LLAMA_CPP_SWA_ROPE_BASE)
    if full.get("rope_type") == "linear":  # Gemma 3 4B+: scaling applies to global layers only
        writer.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
        writer.add_rope_scaling_factor(full["factor"])


def _copy_template_kv(writer: GGUFWriter, meta: dict[str, tuple[Any, Any, Any]], cfg: Any, skip: set[str]) -> None:
    arch = meta.get("general.architecture", (b"",))[0].decode()
    shape = tuple(meta.get(f"{arch}.{k}", (None,))[0] for k in ("block_count", "embedding_length"))
    same_shape = shape == (cfg.num_hidden_layers, cfg.hidden_size)
    for key, (value, vtype, sub) in meta.items():
        if key in _STALE_GENERAL or key in skip or (key in _SIZE_GENERAL and not same_shape):
            continue
        if key.startswith(("tokenizer.", "general.")) and value != []:  # the writer rejects empty arrays
            writer.add_key_value(key, value, vtype, sub_type=sub)


# -- tensors -------------------------------------------------------------------------------
def _hf_tensors(model_or_state_dict: Any, cfg: Any) -> Iterator[tuple[str, torch.Tensor]]:
    """(HF name, tensor) for the text model, lm_head dropped when tied to the embeddings."""
    state = model_or_state_dict if isinstance(model_or_state_dict, Mapping) else model_or_state_dict.state_dict()
    for name, tensor in state.items():
        if "lora_" in name or name.startswith("base_model.model."):
            raise ExportError(f"{name}: merge the PEFT adapter first (merge_peft)")
        name = name.replace("model.language_model.", "model.")  # Gemma3ForConditionalGeneration
        if name.startswith(("model.vision_tower.", "model.multi_modal_projector.")):
            continue
        if name == "lm_head.weight" and getattr(cfg, "tie_word_embeddings", True):
            continue  # llama.cpp falls back to token_embd when output.weight is absent
        yield name, tensor


def _gguf_name(name_map: Any, hf_name: str) -> str:
    base, _, suffix = hf_name.rpartition(".")
    gguf_base = name_map.get_name(base)
    if gguf_base is None:
        raise ExportError(f"no gemma3 GGUF tensor for {hf_name}")
    return f"{gguf_base}.{suffix}"


def _to_numpy(hf_name: str, tensor: torch.Tensor) -> np.ndarray:
    import torch

    data = tensor.detach().to(device="cpu", dtype=torch.float32).numpy()
    if hf_name.endswith("norm.weight"):
        data = data + 1.0  # Gemma RMSNorm computes x * (1 + w); llama.cpp computes x * w
    return np.ascontiguousarray(data)


def _pick_type(shape: tuple[int, ...], qtype: Any) -> Any:
    """Norms and other 1-D tensors stay F32; rows that do not fill whole blocks fall back to F16."""
    from gguf import GGML_QUANT_SIZES, GGMLQuantizationType as Q

    if len(shape) < 2:
        return Q.F32
    if qtype not in (Q.F32, Q.F16) and shape[-1] % GGML_QUANT_SIZES[qtype][0]:
        return Q.F16
    return qtype


def _file_type(dtype: str) -> tuple[Any, Any]:
    from gguf import GGMLQuantizationType as Q, LlamaFileType as F

    types = {"q8_0": (Q.Q8_0, F.MOSTLY_Q8_0), "f16": (Q.F16, F.MOSTLY_F16), "f32": (Q.F32, F.ALL_F32)}
    try:
        return types[dtype.lower()]
    except KeyError:
        raise ValueError(f"dtype {dtype!r}: choose one of {sorted(types)}") from None


def write_gguf(
    model_or_state_dict: Any,
    config: Any,
    template_gguf: Path,
    out_path: Path,
    *,
    dtype: str = "q8_0",
    name: str | None = None,
) -> Path:
    """Write a complete llama.cpp GGUF (arch ``gemma3``) from transformers Gemma 3 weights.

    ``model_or_state_dict``: a ``Gemma3ForCausalLM`` (merged, no LoRA layers) or its state
    dict with HF names. ``config``: its ``Gemma3TextConfig`` (``None``: the model's own).
    ``template_gguf``: a GGUF whose tokenizer (and still-valid general metadata) is copied;
    its vocabulary must match ``config.vocab_size``. ``dtype``: ``q8_0``, ``f16`` or ``f32``
    for the matrices. ``name``: ``general.name`` to record. Written atomically; returns
    ``out_path``.
    """
    import gguf
    from gguf import GGMLQuantizationType as Q

    if config is None:
        config = getattr(model_or_state_dict, "config", None)
        if config is None:
            raise ValueError("config is required with a state dict")
    cfg = _text_config(config)
    _check_llama_cpp_semantics(cfg)
    qtype, file_type = _file_type(dtype)
    template_gguf, out_path = Path(template_gguf), Path(out_path)

    meta = read_metadata(template_gguf)
    n_vocab = len(meta["tokenizer.ggml.tokens"][0]) if "tokenizer.ggml.tokens" in meta else None
    if n_vocab != cfg.vocab_size:
        raise ExportError(f"vocab_size {cfg.vocab_size} does not match the template tokenizer ({n_vocab})")

    name_map = gguf.get_tensor_name_map(gguf.MODEL_ARCH.GEMMA3, cfg.num_hidden_layers)
    tensors = [(_gguf_name(name_map, hf), hf, t) for hf, t in _hf_tensors(model_or_state_dict, cfg)]
    names = {g for g, _, _ in tensors}
    needed = {"token_embd.weight", "output_norm.weight"} | {
        f"blk.{i}.{part}.weight" for i in range(cfg.num_hidden_layers)
        for part in ("attn_q", "attn_k", "attn_v", "attn_output", "attn_q_norm", "attn_k_norm", "attn_norm",
                     "post_attention_norm", "ffn_norm", "post_ffw_norm", "ffn_gate", "ffn_up", "ffn_down")}
    if missing := sorted(needed - names):
        raise ExportError(f"missing tensors: {missing[:5]}{' …' if len(missing) > 5 else ''}")

    with atomic_writer(out_path) as writer:
        _copy_template_kv(writer, meta, cfg, skip={"general.name"} if name else set())
        if name:
            writer.add_key_value("general.name", name, gguf.GGUFValueType.STRING)
        _add_hparams(writer, cfg)
        writer.add_file_type(file_type)
        if qtype not in (Q.F32, Q.F16):
            writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
        plan = []
        for gguf_name, hf_name, tensor in tensors:
            ttype = _pick_type(tuple(tensor.shape), qtype)
            plan.append((gguf_name, tuple(tensor.shape), ttype,
                         lambda hf_name=hf_name, tensor=tensor, ttype=ttype:
                         gguf.quants.quantize(_to_numpy(hf_name, tensor), ttype)))
        write_tensors(writer, plan)
    return out_path


# -- LoRA ----------------------------------------------------------------------------------
def merge_lora_gguf(base_gguf: Path, adapter_dir: Path, out_path: Path, *, dtype: str = "q8_0",
                    name: str | None = None) -> Path:
    """Write ``base + LoRA`` as one GGUF llama.cpp serves, with numpy alone (no torch).

    The matrices the adapter touches are dequantized from the base, get ``scale * B @ A``
    added, and are written in ``dtype``; every other tensor (embeddings, norms) is copied
    byte for byte from the base, metadata and tokenizer included. Training ran on the
    same dequantized weights, so serving sees what was trained. Written atomically.
    """
    import gguf
    from gguf import GGMLQuantizationType as Q

    base_gguf, out_path = Path(base_gguf), Path(out_path)
    meta, tensors = read_gguf(base_gguf)
    arch = meta.get("general.architecture", (b"",))[0].decode()
    if arch != ARCH:
        raise ExportError(f"{base_gguf} is a {arch or 'unknown'} model; the router exports {ARCH}")
    n_layers = int(meta[f"{ARCH}.block_count"][0])
    name_map = gguf.get_tensor_name_map(gguf.MODEL_ARCH.GEMMA3, n_layers)
    from openhoof_router.models.lora import check_fits, delta, read_lora

    deltas: dict[str, Any] = {}
    for module, factors in read_lora(adapter_dir).items():
        target = _gguf_name(name_map, module + ".weight")
        if target not in tensors:
            raise ExportError(f"the adapter changes {module}, which the base {base_gguf.name} does not have")
        check_fits(factors, tensors[target].shape, module)
        deltas[target] = (module, factors)
    if not deltas:
        raise ExportError(f"{adapter_dir} changes no weight of the base")
    qtype, file_type = _file_type(dtype)

    with atomic_writer(out_path) as writer, open(base_gguf, "rb") as fh, \
            mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as buf:
        def raw(info: TensorInfo) -> np.ndarray:
            data = np.frombuffer(buf, np.uint8, info.nbytes, info.offset)
            if info.qtype in (Q.F32, Q.F16):
                return data.view(np.float32 if info.qtype == Q.F32 else np.float16).reshape(info.shape).copy()
            return data.reshape(gguf.quant_shape_to_byte_shape(info.shape, info.qtype)).copy()

        def merged(info: TensorInfo, ttype: Any) -> np.ndarray:
            module, factors = deltas[info.name]
            weight = gguf.quants.dequantize(raw(info), info.qtype).astype(np.float32)
            weight += delta(factors, info.shape, module)
            return gguf.quants.quantize(weight, ttype)

        skip = {"general.name"} if name else set()
        for key, (value, vtype, sub) in meta.items():
            if key not in _STALE_GENERAL and key not in skip and value != []:
                writer.add_key_value(key, value, vtype, sub_type=sub)
        if name:
            writer.add_key_value("general.name", name, gguf.GGUFValueType.STRING)
        writer.add_file_type(file_type)
        writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
        plan = []
        for info in sorted(tensors.values(), key=lambda t: t.offset):
            if info.name in deltas:
                ttype = _pick_type(info.shape, qtype)
                plan.append((info.name, info.shape, ttype, lambda info=info, ttype=ttype: merged(info, ttype)))
            else:
                plan.append((info.name, info.shape, info.qtype, lambda info=info: raw(info)))
        write_tensors(writer, plan)
    return out_path
