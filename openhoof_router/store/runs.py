"""Trained runs, read from their manifests: the persisted contract between trainers and routers.

``models_dir/runs/ID/manifest.json`` (:class:`RunManifest`) says what a run holds (its
adapter, its merged GGUF), how it was made (base, data, hyperparameters, hardware), how to
serve it (prompt format, decoding thresholds) and how it scored. ``models_dir/latest.json``
(:class:`LatestPointer`) names the promoted run; it is replaced atomically (write a temp
file, ``os.replace``), so readers see the old run or the new one, never a half-written
pointer, and routers watch its (mtime, size) to hot-reload.

The package ships one run of its own: the *general* adapter (``data/general/``), trained
on many tool lists. Routers serve it whenever no run has been promoted, and user runs
start from it.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from openhoof_router.core.prompt import PROMPT_FORMAT
from openhoof_router.store.paths import PACKAGE_DATA, Paths, resolve_paths

MANIFEST = "manifest.json"
GENERAL_DIR = PACKAGE_DATA / "general"
"""The shipped general run: a PEFT adapter and its manifest."""


class RunError(RuntimeError):
    """A run folder that cannot be served: no manifest, a missing file, another prompt format."""


class RunFiles(BaseModel):
    """Files of a run, relative to its folder."""

    peft: str | None = None
    """PEFT LoRA adapter folder (CPU and CUDA trainers)."""
    mlx: str | None = None
    """mlx-lm adapter folder (MLX trainer)."""
    gguf: str | None = None
    """The merged GGUF llama.cpp serves (the file that was evaluated)."""


class Decoding(BaseModel):
    """How to serve the run: fitted on held-out data by the trainer and ``hoof-train calibrate``."""

    top_threshold: float | None = Field(None, ge=0, le=1)
    """The best tool is named when its P(needed) reaches this (None: the rule's default)."""
    extra_threshold: float | None = Field(None, ge=0, le=1)
    """Every other tool whose P(needed) reaches this is named beside it (None: the rule's default)."""
    threshold: float | None = Field(None, ge=0)
    """Fitted default confidence threshold (None: the router's own)."""
    tool_thresholds: dict[str, float] = Field(default_factory=dict)
    """Fitted per-tool score thresholds (``none`` for the no-tool answer)."""
    keep_threshold: float | None = Field(None, ge=0)
    """``narrow`` mode also binds every tool scoring at least this (None: the answer's tools only);
    see :mod:`openhoof_router.learning.evaluation.safe_side`."""
    known_tools: list[str] = Field(default_factory=list)
    """The user's own tools (a user run's training data): the no-tool and keep thresholds above
    hold on turns offering only these. A turn offering any other tool never follows "no tool"
    and keeps at :attr:`unseen_keep_threshold`. Empty: every tool counts as known."""
    unseen_keep_threshold: float | None = Field(None, ge=0)
    """The keep threshold on turns offering a tool outside :attr:`known_tools`, fitted on the
    calibration and general-sample turns that do (None: the answer's tools only)."""


class RunLayout(BaseModel):
    """The files of one run folder, named here and nowhere else.

    Trainers write their adapter where :meth:`adapter` says, the run procedure the merged
    GGUF, the loss history, the evaluation report and the plots, pretraining its corpus
    samples; the manifest (:class:`RunManifest`) then lists the adapter and GGUF relative to
    the folder, which is what routers read.
    """

    model_config = ConfigDict(frozen=True)
    root: Path

    PEFT_DIR: ClassVar[str] = "peft"
    MLX_DIR: ClassVar[str] = "mlx"
    GGUF_PATTERN: ClassVar[str] = "router-{dtype}.gguf"
    GGUF: ClassVar[str] = GGUF_PATTERN.format(dtype="q8_0")  # the merged model llama.cpp serves, as evaluated
    HISTORY: ClassVar[str] = "history.json"  # one row per logged training step
    EVAL_REPORT: ClassVar[str] = "eval.json"  # the full report on the run's first evaluation set
    LOSS_PLOT: ClassVar[str] = "loss.png"
    CONFUSION_PLOT: ClassVar[str] = "confusion.png"
    SAMPLES_DIR: ClassVar[str] = "samples"  # general runs: the corpus samples they were built with
    CHECKPOINTS_DIR: ClassVar[str] = "checkpoints"  # step-NNNNNN adapters CPU training resumes from
    PLAN: ClassVar[str] = "plan.json"  # what a resumable run was started with (data hash, settings)

    def adapter(self, backend: str) -> Path:
        """The adapter folder a trainer backend writes: mlx-lm's for ``mlx``, PEFT's otherwise."""
        return self.root / (self.MLX_DIR if backend == "mlx" else self.PEFT_DIR)

    @property
    def checkpoints(self) -> Path:
        return self.root / self.CHECKPOINTS_DIR

    def checkpoint(self, step: int) -> Path:
        return self.checkpoints / f"step-{step:06d}"

    @property
    def plan(self) -> Path:
        return self.root / self.PLAN

    @property
    def manifest(self) -> Path:
        return self.root / MANIFEST

    @property
    def gguf(self) -> Path:
        return self.root / self.GGUF

    def exported(self, dtype: str) -> Path:
        """A GGUF in another precision, as ``hoof-train export --dtype`` writes it."""
        return self.root / self.GGUF_PATTERN.format(dtype=dtype)

    @property
    def history(self) -> Path:
        return self.root / self.HISTORY

    @property
    def eval_report(self) -> Path:
        return self.root / self.EVAL_REPORT

    @property
    def loss_plot(self) -> Path:
        return self.root / self.LOSS_PLOT

    @property
    def confusion_plot(self) -> Path:
        return self.root / self.CONFUSION_PLOT

    @property
    def samples(self) -> Path:
        return self.root / self.SAMPLES_DIR

    def files(self, adapter: Path, gguf: Path | None = None) -> RunFiles:
        """The manifest's ``files`` for this run's adapter folder and GGUF."""
        rel = Path(adapter).relative_to(self.root).as_posix()
        return RunFiles(**{"mlx" if Path(adapter).name == self.MLX_DIR else "peft": rel,
                           "gguf": Path(gguf).relative_to(self.root).as_posix() if gguf else None})


class BaseModelInfo(BaseModel):
    name: str
    sha256: str | None = None
    path: str | None = None


class RunManifest(BaseModel):
    """``manifest.json`` of a run."""

    model_config = ConfigDict(extra="allow")
    run_id: str
    kind: Literal["user", "general"] = "user"
    created_at: float = Field(default_factory=time.time)
    prompt_format: str = PROMPT_FORMAT
    base_model: BaseModelInfo
    start_from: str | None = None
    """The run this one continued from (``general`` for the shipped adapter)."""
    backend: str = ""
    hyperparameters: dict[str, Any] = Field(default_factory=dict)
    data: dict[str, Any] = Field(default_factory=dict)
    files: RunFiles = Field(default_factory=RunFiles)
    decoding: Decoding = Field(default_factory=Decoding)
    metrics: dict[str, Any] = Field(default_factory=dict)
    gate: dict[str, Any] = Field(default_factory=dict)
    """The promotion decision and the tests behind it."""
    train: dict[str, Any] = Field(default_factory=dict)
    durations: dict[str, float] = Field(default_factory=dict)
    peak_rss_mb: float = 0.0
    hardware: dict[str, Any] = Field(default_factory=dict)
    promoted: bool = False

    @classmethod
    def load(cls, run_dir: Path) -> RunManifest:
        path = Path(run_dir) / MANIFEST
        try:
            return cls.model_validate_json(path.read_text())
        except FileNotFoundError:
            raise RunError(f"{run_dir} is not a run folder: {MANIFEST} is missing") from None
        except (ValidationError, ValueError) as exc:
            raise RunError(f"{path} is not a valid run manifest: {str(exc).splitlines()[0]}") from None

    def save(self, run_dir: Path) -> Path:
        path = Path(run_dir) / MANIFEST
        tmp = path.with_name(f".{MANIFEST}.{os.getpid()}.tmp")
        tmp.write_text(self.model_dump_json(indent=2))
        os.replace(tmp, path)
        return path


class ServedRun(BaseModel):
    """A run resolved for serving: its folder, its manifest, and the adapter file that exists."""

    model_config = ConfigDict(arbitrary_types_allowed=True)
    path: Path
    manifest: RunManifest

    @classmethod
    def open(cls, run_dir: str | os.PathLike[str]) -> ServedRun:
        """Read and check a run folder (its manifest, its prompt format, its files)."""
        run_dir = Path(run_dir).expanduser()
        manifest = RunManifest.load(run_dir)
        if manifest.prompt_format != PROMPT_FORMAT:
            raise RunError(f"run {manifest.run_id} was trained on prompt format {manifest.prompt_format!r}; "
                           f"this router speaks {PROMPT_FORMAT}: retrain it (hoof-train run)")
        for field_name in ("peft", "mlx", "gguf"):
            rel = getattr(manifest.files, field_name)
            if rel is not None and not (run_dir / rel).exists():
                raise RunError(f"run {manifest.run_id}: {field_name} file {rel} is missing from {run_dir}")
        if not any((manifest.files.peft, manifest.files.mlx, manifest.files.gguf)):
            raise RunError(f"run {manifest.run_id} lists no adapter and no GGUF")
        return cls(path=run_dir, manifest=manifest)

    @property
    def run_id(self) -> str:
        return self.manifest.run_id

    def file(self, name: Literal["peft", "mlx", "gguf"]) -> Path | None:
        rel = getattr(self.manifest.files, name)
        return self.path / rel if rel is not None else None

    @property
    def adapter(self) -> Path | None:
        """The LoRA adapter folder (PEFT preferred, else MLX)."""
        return self.file("peft") or self.file("mlx")


def general_run() -> ServedRun | None:
    """The shipped general adapter, or None in a checkout that has not built it."""
    if not (GENERAL_DIR / MANIFEST).is_file():
        return None
    return ServedRun.open(GENERAL_DIR)


class LatestPointer(BaseModel):
    """``latest.json``: the promoted run."""

    run_id: str
    path: str
    promoted_at: float = Field(default_factory=time.time)
    metrics: dict[str, Any] = Field(default_factory=dict)


class ModelRegistry:
    """Runs of one models folder and the ``latest`` pointer."""

    def __init__(self, paths: Paths | None = None) -> None:
        self.paths = resolve_paths(paths)

    @property
    def pointer(self) -> Path:
        return self.paths.latest_pointer

    def new_run_dir(self, prefix: str = "run") -> Path:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        base = self.paths.runs_dir / f"{prefix}-{stamp}"
        path, n = base, 1
        while path.exists():
            path = base.with_name(f"{base.name}-{n}")
            n += 1
        path.mkdir(parents=True)
        return path

    def latest(self) -> LatestPointer | None:
        """The pointer, or None (absent or unreadable)."""
        try:
            return LatestPointer.model_validate_json(self.pointer.read_text())
        except (OSError, ValueError):
            return None

    def latest_run(self) -> ServedRun:
        """The promoted run; raises :class:`RunError` when there is none or it cannot be served."""
        pointer = self.latest()
        if pointer is None:
            raise RunError(f"no promoted run (no readable {self.pointer})")
        return ServedRun.open(pointer.path)

    def pointer_stamp(self) -> tuple[int, int] | None:
        """Cheap change detector for hot reload (mtime, size)."""
        try:
            st = self.pointer.stat()
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size)

    def promote(self, run_dir: Path, metrics: dict[str, Any] | None = None) -> LatestPointer:
        """Point ``latest`` at ``run_dir`` atomically."""
        run_dir = Path(run_dir).resolve()
        pointer = LatestPointer(run_id=run_dir.name, path=str(run_dir), metrics=metrics or {})
        self.pointer.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.pointer.with_name(f".{self.pointer.name}.{os.getpid()}.tmp")
        tmp.write_text(pointer.model_dump_json(indent=2))
        os.replace(tmp, self.pointer)
        return pointer

    def runs(self) -> list[tuple[Path, RunManifest]]:
        """Manifests of all runs, oldest first (unreadable ones are skipped)."""
        out: list[tuple[Path, RunManifest]] = []
        if not self.paths.runs_dir.is_dir():
            return out
        for run in sorted(self.paths.runs_dir.iterdir()):
            try:
                out.append((run, RunManifest.load(run)))
            except RunError:
                continue
        return out
