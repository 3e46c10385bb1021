"""The LoRA and GGUF readers on small files written here: PEFT and mlx-lm adapter folders read
into the same factors, shape checks, digests; a GGUF written with the atomic writer read
back (key/values, tensor index, the bytes at each offset), and what is refused."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

from openhoof_router.models.gguf_file import ExportError, atomic_writer, read_gguf, read_metadata, write_tensors
from openhoof_router.models.lora import (
    ADAPTER_CONFIG,
    MLX_WEIGHTS,
    PEFT_WEIGHTS,
    AdapterError,
    adapter_digest,
    adapter_kind,
    check_fits,
    delta,
    read_lora,
)

MODULE = "model.layers.0.self_attn.q_proj"
RNG = np.random.default_rng(0)
A = RNG.standard_normal((2, 6)).astype(np.float32)  # rank x in
B = RNG.standard_normal((5, 2)).astype(np.float32)  # out x rank


def peft_folder(folder: Path, *, rslora: bool = False, prefix: str = "base_model.model.model.") -> Path:
    folder.mkdir(parents=True)
    key = prefix + MODULE.removeprefix("model.")
    save_file({f"{key}.lora_A.weight": A, f"{key}.lora_B.weight": B}, str(folder / PEFT_WEIGHTS))
    (folder / ADAPTER_CONFIG).write_text(json.dumps({"r": 2, "lora_alpha": 4, "use_rslora": rslora}))
    return folder


def mlx_folder(folder: Path, scale: float) -> Path:
    folder.mkdir(parents=True)
    save_file({f"{MODULE}.lora_a": np.ascontiguousarray(A.T), f"{MODULE}.lora_b": np.ascontiguousarray(B.T)},
              str(folder / MLX_WEIGHTS))
    (folder / ADAPTER_CONFIG).write_text(json.dumps({"lora_parameters": {"rank": 2, "scale": scale}}))
    return folder


# -- LoRA adapters ---------------------------------------------------------------------

def test_peft_and_mlx_folders_read_into_the_same_factors(tmp_path):
    peft, mlx = peft_folder(tmp_path / "peft"), mlx_folder(tmp_path / "mlx", scale=2.0)
    assert (adapter_kind(peft), adapter_kind(mlx), adapter_kind(tmp_path)) == ("peft", "mlx", None)
    from_peft, from_mlx = read_lora(peft), read_lora(mlx)
    assert list(from_peft) == list(from_mlx) == [MODULE]
    a, b, scale = from_peft[MODULE]
    assert scale == 2.0 and a.dtype == np.float32  # lora_alpha / r
    np.testing.assert_array_equal(a, A)
    np.testing.assert_array_equal(b, B)
    np.testing.assert_allclose(delta(from_mlx[MODULE], (5, 6), MODULE), 2.0 * B @ A, rtol=1e-6)
    np.testing.assert_allclose(delta(from_peft[MODULE], (5, 6), MODULE), delta(from_mlx[MODULE], (5, 6), MODULE))


def test_rslora_scale_and_multimodal_prefixes(tmp_path):
    [(module, (_, _, scale))] = read_lora(peft_folder(tmp_path / "rs", rslora=True)).items()
    assert module == MODULE and scale == pytest.approx(4 / np.sqrt(2))
    nested = peft_folder(tmp_path / "mm", prefix="base_model.model.model.language_model.")
    assert list(read_lora(nested)) == [MODULE]  # a multimodal checkpoint's text model: the same module path


def test_an_adapter_that_does_not_fit_or_does_not_read_is_an_adapter_error(tmp_path):
    factors = read_lora(peft_folder(tmp_path / "ok"))[MODULE]
    check_fits(factors, (5, 6), MODULE)
    with pytest.raises(AdapterError, match="does not fit this base"):
        delta(factors, (6, 5), MODULE)
    with pytest.raises(AdapterError, match="holds no LoRA adapter"):
        read_lora(tmp_path)
    broken = peft_folder(tmp_path / "broken")
    (broken / ADAPTER_CONFIG).write_text(json.dumps({"lora_alpha": 4}))  # no rank
    with pytest.raises(AdapterError, match="unreadable peft adapter"):
        read_lora(broken)
    (broken / ADAPTER_CONFIG).write_text("{not json")
    with pytest.raises(AdapterError, match="unreadable"):
        read_lora(broken)


def test_the_digest_follows_the_adapter_files(tmp_path):
    folder = peft_folder(tmp_path / "a")
    first = adapter_digest(folder)
    assert len(first) == 16 and adapter_digest(peft_folder(tmp_path / "b")) == first  # same bytes, same digest
    (folder / ADAPTER_CONFIG).write_text(json.dumps({"r": 2, "lora_alpha": 8}))
    assert adapter_digest(folder) != first


# -- GGUF files ------------------------------------------------------------------------

def write_small_gguf(path: Path) -> dict[str, np.ndarray]:
    from gguf import GGMLQuantizationType as Q

    tensors = {"token_embd.weight": RNG.standard_normal((3, 32)).astype(np.float32),
               "blk.0.attn_q.weight": RNG.standard_normal((4, 64)).astype(np.float16)}
    with atomic_writer(path) as writer:
        writer.add_string("general.name", "tiny test")
        writer.add_uint32("gemma3.block_count", 1)
        writer.add_float32("gemma3.rope.freq_base", 10000.0)
        writer.add_array("tokenizer.ggml.tokens", ["<pad>", "a", "ü"])
        writer.add_array("tokenizer.ggml.scores", [0.0, -1.5, -2.0])
        write_tensors(writer, [(name, array.shape, Q.F32 if array.dtype == np.float32 else Q.F16,
                                lambda array=array: array) for name, array in tensors.items()])
    return tensors


def test_a_written_gguf_reads_back_exactly(tmp_path):
    from gguf import GGMLQuantizationType as Q
    from gguf import GGUFValueType as V

    path = tmp_path / "small.gguf"
    tensors = write_small_gguf(path)
    meta, index = read_gguf(path)
    assert meta["general.architecture"] == (b"gemma3", V.STRING, None)
    assert meta["general.name"][0] == b"tiny test"  # strings stay raw bytes: they copy exactly
    assert meta["gemma3.block_count"] == (1, V.UINT32, None)
    assert meta["gemma3.rope.freq_base"][0] == 10000.0
    assert meta["tokenizer.ggml.tokens"] == ([b"<pad>", b"a", "ü".encode()], V.ARRAY, V.STRING)
    assert meta["tokenizer.ggml.scores"] == ([0.0, -1.5, -2.0], V.ARRAY, V.FLOAT32)
    assert read_metadata(path) == meta
    assert list(index) == list(tensors)
    data = path.read_bytes()
    for name, array in tensors.items():
        info = index[name]
        assert info.shape == array.shape and info.nbytes == array.nbytes  # numpy order, not GGUF's
        assert info.qtype == (Q.F32 if array.dtype == np.float32 else Q.F16)
        stored = np.frombuffer(data, array.dtype, array.size, info.offset).reshape(array.shape)
        np.testing.assert_array_equal(stored, array)


def test_not_a_gguf_and_failed_writes(tmp_path):
    other = tmp_path / "not.gguf"
    other.write_bytes(b"GGML" + b"\x00" * 64)
    with pytest.raises(ExportError, match="not a little-endian GGUF"):
        read_gguf(other)
    out = tmp_path / "out" / "model.gguf"
    with pytest.raises(RuntimeError, match="producer failed"), atomic_writer(out) as writer:
        writer.add_string("general.name", "half")
        raise RuntimeError("producer failed")
    assert not out.exists() and list(out.parent.iterdir()) == []  # nothing half-written is left
