"""Which model serves, and the engine for it, with its settings: the one owner of that choice.

:func:`serve` answers it for every caller: the router service at start-up and on hot
reload, ``hoof-train status`` / ``eval`` / ``calibrate``, the training pipeline's model in
place, the benchmarks. Unless the settings pin a model, the order is:

1. the promoted run (``latest.json``);
2. the shipped general adapter;
3. the untrained base (with a warning: its decisions are mostly wrong).

A candidate is refused, with the reason in :attr:`Selection.refused` and a logged warning,
when ``latest.json`` cannot be read, a run's folder, manifest or files are missing or
invalid, it speaks another prompt format, it was trained on another base model, or (when
loading) it fails to load or to route a probe message (a corrupt merge can load and still
produce NaNs). A pinned model (``RouterSettings.model``) is never replaced: its errors raise.

The engine gets the settings' ``max_tools`` and ``context_turns`` and the run's decoding
settings (:meth:`Selection.apply`): its fitted verdict rule, and
(:attr:`Selection.policy`) its fitted default and per-tool thresholds under any the
settings set explicitly.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, InstanceOf

from openhoof_router.core.engine import RouterEngine
from openhoof_router.core.tools import builtin_tools
from openhoof_router.models.backend import Backend, BackendError
from openhoof_router.models.base_model import BaseModelRef, resolve_base_model
from openhoof_router.models.loading import check_base, load_backend, resolve_run, run_decoding
from openhoof_router.serving.policy import ThresholdPolicy
from openhoof_router.serving.settings import RouterSettings
from openhoof_router.store.paths import Paths
from openhoof_router.store.runs import Decoding, LatestPointer, ModelRegistry, RunError, ServedRun, general_run

logger = logging.getLogger(__name__)

Source = Literal["promoted", "general", "base", "pinned", "engine"]
PROBE_MESSAGE = "Check disk space on the server"

Loader = Callable[[Any], Backend]
"""Turns a model target (a :class:`ServedRun`, a GGUF path, ``None`` for the base) into a backend."""


class RunRefused(RuntimeError):
    """The promoted run cannot serve; the message says which run and why."""

    def __init__(self, message: str, run_id: str | None = None) -> None:
        super().__init__(message)
        self.run_id = run_id


class Selection(BaseModel):
    """What serves: where it came from, the run, the candidates refused on the way, and (when
    loaded) its backend and engine."""

    model_config = ConfigDict(arbitrary_types_allowed=True)
    source: Source
    run: InstanceOf[ServedRun] | None = None
    """The run serving (None: the base, a GGUF file, or a caller's engine)."""
    target: InstanceOf[ServedRun] | Path | None = None
    """What was loaded: the run, a GGUF file, or None (the base)."""
    refused: list[str] = Field(default_factory=list)
    """Why each candidate before this one was refused, in order."""
    loaded: bool = False
    """Whether candidates were loaded and probed (else their files were only checked)."""
    policy: InstanceOf[ThresholdPolicy]
    backend: InstanceOf[Backend] | None = None
    engine: InstanceOf[RouterEngine] | None = None

    @property
    def run_id(self) -> str | None:
        return self.run.run_id if self.run is not None else None

    @property
    def decoding(self) -> Decoding:
        """The decoding settings served: the run's fitted ones, else the defaults."""
        return run_decoding(self.run)

    def apply(self, engine: RouterEngine) -> None:
        """Serve this selection's decoding settings on ``engine`` (the one
        place they are applied)."""
        engine.serve_run(self.run)

    def describe(self) -> str:
        """``the promoted run ID``, ``the general adapter (ID)``, ``the untrained base``, ..."""
        name = self.run_id or (self.target.name if isinstance(self.target, Path) else None)
        return {"promoted": f"the promoted run {name}", "general": f"the general adapter ({name})",
                "base": "the untrained base", "pinned": f"{name} (pinned)",
                "engine": "the caller's engine"}[self.source]

    def summary(self) -> dict[str, Any]:
        """``{"source": ..., "run": id, "refused": [...]}`` (what ``RouterService.serving`` shows)."""
        return {"source": self.source, "run": self.run_id, "refused": list(self.refused)}


def probe_backend(backend: Backend, target: Any = None) -> None:
    """Raise ``BackendError`` unless ``backend`` routes a probe message sanely (finite scores,
    a valid decision), with the fitted decoding of ``target`` (a run; else the defaults)."""
    engine = RouterEngine(backend)
    engine.serve_run(target)
    decision = engine.route(PROBE_MESSAGE, builtin_tools())
    if not decision.valid:
        raise BackendError(f"probe route failed: {decision.error}")


def load_checked(load: Loader, target: Any) -> Backend:
    """Load ``target`` and probe it; a backend that fails the probe is closed, never returned."""
    backend = load(target)
    try:
        probe_backend(backend, target)
    except Exception:
        backend.close()
        raise
    return backend


def promoted_run(registry: ModelRegistry) -> ServedRun | None:
    """The promoted run; None when nothing was promoted. Raises :class:`RunRefused` when
    ``latest.json`` is unreadable or names a run that cannot be served."""
    if not registry.pointer.exists():
        return None
    try:
        pointer = LatestPointer.model_validate_json(registry.pointer.read_text())
    except (OSError, ValueError) as exc:
        raise RunRefused(f"refused {registry.pointer}: not a valid pointer "
                         f"({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") from None
    try:
        return ServedRun.open(pointer.path)
    except RunError as exc:
        raise RunRefused(f"refused run {pointer.run_id!r}: {exc}", pointer.run_id) from None


def serve(settings: RouterSettings | None = None, *, paths: Paths | None = None, load: bool = True,
          probe: bool = True, promoted_only: bool = False, warn: bool = True) -> Selection:
    """The model that serves under ``settings`` (default: from the environment), and its engine.

    Args:
        paths: the folders (default: the settings').
        load: load the model and build its engine (:attr:`Selection.engine`); ``False`` only
            checks each candidate's manifest, files and base model (cheap: for status lines).
        probe: route a probe message through each loaded candidate before taking it.
        promoted_only: the promoted run or nothing (hot reload): raises :class:`RunRefused`
            instead of falling back, and builds no engine (the caller swaps the backend in).
        warn: log a warning for each refused candidate and for serving the untrained base.

    Raises:
        BackendError / BaseModelError / RunError: a pinned model cannot be served.
        RunRefused: ``promoted_only`` and the promoted run cannot serve.
    """
    settings = settings or RouterSettings()
    paths = paths or settings.paths()
    base = resolve_base_model(settings.base_model, paths)

    def take(source: Source, target: Any, refused: list[str]) -> Selection:
        run = target if isinstance(target, ServedRun) else None
        if run is not None:
            check_base(run, base)
        backend = None
        if load:
            loader = _loader(settings, base, paths)
            backend = load_checked(loader, target) if probe else loader(target)
        policy = ThresholdPolicy.served(run_decoding(run), settings.threshold, settings.tool_thresholds,
                                         settings.keep_threshold, settings.fallback_share)
        return Selection(source=source, run=run, target=target, refused=refused, loaded=load, policy=policy,
                         backend=backend)

    registry = ModelRegistry(paths)
    if promoted_only:
        run = promoted_run(registry)
        if run is None:
            raise RunRefused(f"no promoted run: {registry.pointer} is gone")
        try:
            return take("promoted", run, [])
        except Exception as exc:  # anything: the caller keeps the model it has
            raise RunRefused(f"refused run {run.run_id!r}: {exc}", run.run_id) from exc
    if settings.model is not None:
        target = None if str(settings.model) == "base" else resolve_run(settings.model)
        return _finish(take("base" if target is None else "pinned", target, []), settings, warn)
    refused: list[str] = []
    candidates: list[tuple[Source, Callable[[], ServedRun | None]]] = [
        ("promoted", lambda: promoted_run(registry)), ("general", general_run)]
    for source, find in candidates:
        candidate = None
        try:
            candidate = find()
            if candidate is not None:
                return _finish(take(source, candidate, refused), settings, warn)
        except RunRefused as exc:
            refused.append(str(exc))
        except Exception as exc:  # a broken candidate must not stop the router: the next one serves
            name = f"run {candidate.run_id!r}" if candidate is not None else f"the {source} run"
            refused.append(f"refused {name}: {exc}")
    return _finish(take("base", None, refused), settings, warn)


def _loader(settings: RouterSettings, base: BaseModelRef, paths: Paths) -> Loader:
    def load(target: Any) -> Backend:
        return load_backend(settings.backend, base_model=base, model=target, n_threads=settings.n_threads,
                            n_ctx=settings.n_ctx, paths=paths, cache_float=settings.cache_float)

    return load


def _finish(selection: Selection, settings: RouterSettings, warn: bool) -> Selection:
    if selection.backend is not None:
        selection.engine = RouterEngine(selection.backend, max_tools=settings.max_tools,
                                        context_turns=settings.context_turns)
        selection.apply(selection.engine)
    if warn:
        for reason in selection.refused:
            logger.warning("openhoof-router %s; serving %s", reason, selection.describe())
        if selection.source == "base" and settings.model is None and not selection.refused:
            logger.warning("openhoof-router: no promoted run and no general adapter: serving the untrained "
                           "base, whose decisions are mostly wrong (train one: hoof-train run)")
    return selection


def engine_for(model: Any, base_model: Any = None, n_threads: int | None = None, paths: Paths | None = None, *,
               backend: str = "llama.cpp") -> RouterEngine:
    """An engine over exactly ``model`` (a run folder or :class:`ServedRun`, a GGUF, ``"general"``,
    None: the base) with its decoding settings, unprobed: what evaluations score. Other
    settings come from the environment."""
    overrides = {"model": "base" if model is None else model, "backend": backend, "base_model": base_model,
                 "n_threads": n_threads}
    settings = RouterSettings.of(None, **{k: v for k, v in overrides.items() if v is not None})
    engine = serve(settings, paths=paths, probe=False).engine
    assert engine is not None  # load=True always builds one
    return engine
