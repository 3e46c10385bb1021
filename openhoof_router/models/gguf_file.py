"""The GGUF file format, as the exporter needs it: a fast reader of the key/value section and
the tensor index, and an atomic writer that lays out tensors one at a time."""

from __future__ import annotations

import mmap
import os
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from gguf import GGUFWriter

ARCH = "gemma3"


class ExportError(RuntimeError):
    """The model cannot be written as a GGUF llama.cpp would run the same way."""


def _numpy_dtypes() -> dict:
    from gguf import GGUFValueType as V

    return {V.UINT8: "<u1", V.INT8: "<i1", V.UINT16: "<u2", V.INT16: "<i2", V.UINT32: "<u4", V.INT32: "<i4",
            V.FLOAT32: "<f4", V.BOOL: "?", V.UINT64: "<u8", V.INT64: "<i8", V.FLOAT64: "<f8"}


@dataclass(frozen=True)
class TensorInfo:
    name: str
    qtype: Any
    shape: tuple[int, ...]
    """numpy order: (rows, columns), the reverse of GGUF's dimension list."""
    offset: int
    """Absolute byte offset of the data in the file."""
    nbytes: int


def read_gguf(path: Path) -> tuple[dict[str, tuple[Any, Any, Any]], dict[str, TensorInfo]]:
    """The key/value section of a GGUF (``{key: (value, type, array item type)}``) and its
    tensor index.

    Parsed here rather than with ``gguf.GGUFReader``, which indexes every element of the
    262k-entry vocabulary arrays (~15 s here); strings stay raw bytes so they copy exactly.
    """
    from gguf import GGML_QUANT_SIZES, GGMLQuantizationType
    from gguf import GGUFValueType as V

    dtypes = {k: np.dtype(v) for k, v in _numpy_dtypes().items()}
    with open(path, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as buf:
        magic, version, n_tensors, n_kv = struct.unpack_from("<4sIQQ", buf, 0)
        if magic != b"GGUF" or version not in (2, 3):
            raise ExportError(f"{path} is not a little-endian GGUF v2/v3 file")
        pos = 24

        def string() -> bytes:
            nonlocal pos
            (size,) = struct.unpack_from("<Q", buf, pos)
            pos += 8 + size
            return bytes(buf[pos - size:pos])

        def numbers(vtype: V, count: int) -> list:
            nonlocal pos
            items = np.frombuffer(buf, dtypes[vtype], count, pos).tolist()  # copies: the map can close
            pos += dtypes[vtype].itemsize * count
            return items

        meta: dict[str, tuple[Any, Any, Any]] = {}
        for _ in range(n_kv):
            key = string().decode("utf-8")
            vtype = V(struct.unpack_from("<I", buf, pos)[0])
            pos += 4
            if vtype == V.STRING:
                meta[key] = (string(), vtype, None)
            elif vtype != V.ARRAY:
                meta[key] = (numbers(vtype, 1)[0], vtype, None)
            else:
                sub, count = struct.unpack_from("<IQ", buf, pos)
                pos, sub = pos + 12, V(sub)
                if sub == V.ARRAY:
                    raise ExportError(f"{path}: nested array {key} is not supported")
                items = [string() for _ in range(count)] if sub == V.STRING else numbers(sub, count)
                meta[key] = (items, vtype, sub)
        infos = []
        for _ in range(n_tensors):
            name = string().decode("utf-8")
            (n_dims,) = struct.unpack_from("<I", buf, pos)
            dims = struct.unpack_from(f"<{n_dims}Q", buf, pos + 4)
            qtype, offset = struct.unpack_from("<IQ", buf, pos + 4 + 8 * n_dims)
            pos += 4 + 8 * n_dims + 12
            infos.append((name, GGMLQuantizationType(qtype), tuple(reversed(dims)), offset))
        alignment = int(meta.get("general.alignment", (32,))[0])
        data_start = -(-pos // alignment) * alignment
    tensors = {}
    for name, qtype, shape, offset in infos:
        block, size = GGML_QUANT_SIZES[qtype]
        tensors[name] = TensorInfo(name, qtype, shape, data_start + offset, int(np.prod(shape)) // block * size)
    return meta, tensors


def read_metadata(path: Path) -> dict[str, tuple[Any, Any, Any]]:
    """The key/value section of a GGUF (see :func:`read_gguf`)."""
    return read_gguf(path)[0]


@contextmanager
def atomic_writer(out_path: Path) -> Iterator[GGUFWriter]:
    """A GGUF writer on a temp file that replaces ``out_path`` only when complete: a serving
    router never sees a half-written model, and a failed export leaves nothing behind."""
    import gguf

    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(f".{out_path.name}.{os.getpid()}.tmp")
    writer = gguf.GGUFWriter(tmp, ARCH)
    try:
        yield writer
        writer.close()
        os.replace(tmp, out_path)
    except BaseException:
        writer.close()
        tmp.unlink(missing_ok=True)
        raise


def write_tensors(writer: GGUFWriter, plan: list[tuple[str, tuple[int, ...], Any, Any]]) -> None:
    """Header, key/values, tensor index, then each tensor's data from its producer.

    Two passes so only one converted tensor is in memory at a time: sizes first (the
    header precedes the data), then produce and write each tensor.
    """
    import gguf
    from gguf import GGMLQuantizationType as Q

    for name, shape, ttype, _ in plan:
        if ttype in (Q.F32, Q.F16):
            item = np.dtype(np.float32 if ttype == Q.F32 else np.float16)
            writer.add_tensor_info(name, shape, item, int(np.prod(shape)) * item.itemsize)
        else:  # quantized tensors are described by their byte shape (uint8 blocks)
            byte_shape = gguf.quant_shape_to_byte_shape(shape, ttype)
            writer.add_tensor_info(name, byte_shape, np.dtype(np.uint8), int(np.prod(byte_shape)), raw_dtype=ttype)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    for _, _, _, produce in plan:
        writer.write_tensor_data(produce())


