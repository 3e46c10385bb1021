"""Writing a router as one llama.cpp-loadable GGUF (Gemma 3 text, arch ``gemma3``):
:func:`merge_lora_gguf` merges a LoRA adapter (PEFT or MLX) into the base GGUF with numpy.
The adapted matrices are dequantized, get ``scale * B @ A`` and are written in q8_0; the rest
is copied byte for byte. What runs, ``hoof-train export`` and serving use.

It does not go through llama.cpp's LoRA converter (Gemma-3 LoRA conversion has failed
upstream before), and a test checks llama.cpp picks the next token transformers + PEFT do.
"""

from __future__ import annotations

import mmap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from openhoof_router.models.gguf_file import ARCH, ExportError, TensorInfo, atomic_writer, read_gguf, write_tensors

# Base keys that describe the base file itself, not the model being written.
_STALE_GENERAL = {"general.architecture", "general.file_type", "general.quantization_version", "general.alignment"}


def _gguf_name(name_map: Any, hf_name: str) -> str:
    base, _, suffix = hf_name.rpartition(".")
    gguf_base = name_map.get_name(base)
    if gguf_base is None:
        raise ExportError(f"no gemma3 GGUF tensor for {hf_name}")
    return f"{gguf_base}.{suffix}"


def _pick_type(shape: tuple[int, ...], qtype: Any) -> Any:
    """Norms and other 1-D tensors stay F32; rows that do not fill whole blocks fall back to F16."""
    from gguf import GGML_QUANT_SIZES
    from gguf import GGMLQuantizationType as Q

    if len(shape) < 2:
        return Q.F32
    if qtype not in (Q.F32, Q.F16) and shape[-1] % GGML_QUANT_SIZES[qtype][0]:
        return Q.F16
    return qtype


def _file_type(dtype: str) -> tuple[Any, Any]:
    from gguf import GGMLQuantizationType as Q
    from gguf import LlamaFileType as F

    types = {"q8_0": (Q.Q8_0, F.MOSTLY_Q8_0), "f16": (Q.F16, F.MOSTLY_F16), "f32": (Q.F32, F.ALL_F32)}
    try:
        return types[dtype.lower()]
    except KeyError:
        raise ValueError(f"dtype {dtype!r}: choose one of {sorted(types)}") from None


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
        plan: list[tuple[str, tuple[int, ...], Any, Callable[..., np.ndarray]]] = []
        for info in sorted(tensors.values(), key=lambda t: t.offset):
            if info.name in deltas:
                ttype = _pick_type(info.shape, qtype)
                plan.append((info.name, info.shape, ttype, lambda info=info, ttype=ttype: merged(info, ttype)))
            else:
                plan.append((info.name, info.shape, info.qtype, lambda info=info: raw(info)))
        write_tensors(writer, plan)
    return out_path
