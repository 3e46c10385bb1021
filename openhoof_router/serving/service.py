"""RouterService: the router as a framework-free service.

It owns everything between "a message and its tools" and "a decision the caller can act
on": the engine and the model it serves (start-up and hot reload), the threshold policy
that turns unsure decisions into fallbacks, the decision log, explicit feedback, and the
memory that routes each human turn once. :class:`~openhoof_router.langchain.runnable.ToolRouter`,
the agent middleware and the LangGraph node are thin adapters over it.

Which model serves (``model=None``): the promoted run (``latest.json``), else the shipped
general adapter; a promoted run that fails to load or to probe is refused with a warning
and the general adapter serves instead (``serving`` and ``last_reload_error`` say so).
``model="base"`` pins the untrained base, ``model="general"`` the shipped adapter, a path
any run folder or GGUF; a pinned model is not hot-reloaded.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

from openhoof_router.models.loading import Backend, load_backend, resolve_run
from openhoof_router.core.engine import RouterEngine
from openhoof_router.store.logs import DEFAULT_MAX_MESSAGE_CHARS, DecisionLog, OutcomeLog, resolve_paths
from openhoof_router.store.paths import Paths
from openhoof_router.core.prompt import CONTEXT_TURNS
from openhoof_router.core.records import NO_TOOL, OutcomeRecord, PastTurn, RoutingDecision
from openhoof_router.serving.reload import HotReloader, load_checked
from openhoof_router.store.runs import ModelRegistry, ServedRun, general_run
from openhoof_router.core.tools import ToolError, ToolSpec, normalize_tools

logger = logging.getLogger(__name__)

DEFAULT_THRESHOLD = 0.5


@dataclass
class ThresholdPolicy:
    """When to follow a decision: every tool it names, or its "no tool", must score at least
    its threshold (``per_tool``, else ``default``); otherwise it is a fallback."""

    default: float = DEFAULT_THRESHOLD
    per_tool: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.default < 0 or any(v < 0 for v in self.per_tool.values()):
            raise ValueError("thresholds must be >= 0")

    def required(self, names: Sequence[str]) -> float:
        """The highest threshold among ``names`` (``[]``: the no-tool threshold)."""
        return max(self.per_tool.get(n, self.default) for n in (names or [NO_TOOL]))

    def judge(self, decision: RoutingDecision) -> float:
        """Mark ``decision`` as a fallback when it should not be followed; returns the bar it had."""
        if not decision.valid:
            decision.fallback, decision.fallback_reason = True, "invalid"
            return self.required(decision.tool_names)
        pairs = ([(n, decision.scores.get(n, 0.0)) for n in decision.tool_names]
                 or [(NO_TOOL, decision.no_tool_score)])
        for name, score in pairs:
            if score < self.per_tool.get(name, self.default):
                decision.fallback = True
                decision.fallback_reason = f"tool_threshold:{name}" if name in self.per_tool else "low_confidence"
                break
        return self.required(decision.tool_names)


def turn_key(text: str, context: Sequence[PastTurn] = (), message_id: str | None = None) -> str:
    """Identifies a human turn: its message id, else a hash of its text and earlier turns."""
    if message_id:
        return f"id:{message_id}"
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass"))
    for turn in context:
        digest.update(turn.model_dump_json().encode("utf-8", "surrogatepass"))
    return "sha:" + digest.hexdigest()[:24]


class RouterService:
    """The local router: route, apply thresholds, log, take feedback, follow promotions.

    Args:
        engine: an existing :class:`RouterEngine` to use (pinned; not closed by :meth:`close`).
        model: what to serve (see the module docs); default: promoted run, else general.
        base_model, backend, n_threads: passed to the model loader.
        max_tools: most tools one decision may name.
        threshold: default score a decision needs to be followed (``0``: follow every
            valid decision; ``> 1``: never). Default: the run's fitted value, else 0.5.
        tool_thresholds: per-tool thresholds (``"none"`` for the no-tool answer); they
            override the run's fitted ones.
        context_turns: earlier turns of the conversation the router reads.
        paths, home, data_dir, models_dir: where logs and models live (``Paths.resolve``).
        log_decisions: append decisions to ``training_data.jsonl``.
        max_logged_chars: cap on the logged message (``None``: no cap).
        hot_reload: follow promotions of ``latest``; default: on unless the model is pinned.
        reload_interval: seconds between pointer checks.
        reload_in_background: load new runs on a background thread (callers never wait).
        turn_memory: how many human turns to remember (each is routed and logged once).

    Raises:
        LogWriteError: the data folder cannot be written (when logging).
        BackendError / BaseModelError: the model cannot be loaded.
    """

    def __init__(
        self,
        *,
        engine: RouterEngine | None = None,
        model: Any = None,
        base_model: Any = None,
        backend: str = "auto",
        n_threads: int | None = None,
        max_tools: int = 3,
        threshold: float | None = None,
        tool_thresholds: Mapping[str, float] | None = None,
        context_turns: int = CONTEXT_TURNS,
        paths: Paths | None = None,
        home: str | os.PathLike[str] | None = None,
        data_dir: str | os.PathLike[str] | None = None,
        models_dir: str | os.PathLike[str] | None = None,
        log_decisions: bool = True,
        max_logged_chars: int | None = DEFAULT_MAX_MESSAGE_CHARS,
        hot_reload: bool | None = None,
        reload_interval: float = 2.0,
        reload_in_background: bool = True,
        turn_memory: int = 1024,
    ) -> None:
        self._explicit_threshold = threshold
        self._explicit_tool_thresholds = dict(tool_thresholds or {})
        self.policy = ThresholdPolicy(DEFAULT_THRESHOLD if threshold is None else float(threshold),
                                      {k: float(v) for k, v in self._explicit_tool_thresholds.items()})
        self.paths = resolve_paths(paths or Paths.resolve(home=home, models_dir=models_dir), data_dir)
        self.decision_log = DecisionLog(self.paths, enabled=log_decisions, max_message_chars=max_logged_chars)
        self._outcome_log: OutcomeLog | None = None
        self.registry = ModelRegistry(self.paths)
        self._turns: OrderedDict[tuple[str, tuple[str, ...]], RoutingDecision] = OrderedDict()
        self._turn_memory = turn_memory
        self._lock = threading.Lock()
        self.serving: dict[str, Any] = {}
        """What serves now: ``{"source": "promoted" | "general" | "base" | "pinned" | "engine", "run": id}``."""
        self.startup_error: str | None = None

        kind = engine.backend.name if engine is not None and backend == "auto" else backend

        def load(target: Any) -> Backend:
            return load_backend(kind, base_model=base_model, model=target, n_threads=n_threads, paths=self.paths)

        pinned = engine is not None or model is not None
        follow = (not pinned) if hot_reload is None else hot_reload
        stamp = self.registry.pointer_stamp()  # before loading: a promotion meanwhile is seen later
        self._owns_engine = engine is None
        if engine is not None:
            self.engine = engine
            self.serving = {"source": "engine", "run": engine.backend.adapter_id}
        else:
            backend_obj, run, source = self._startup(load, model)
            self.engine = RouterEngine(backend_obj, max_tools=max_tools, context_turns=context_turns)
            self._apply_run(run)
            self.serving = {"source": source, "run": run.run_id if run else None}
        self.reloader: HotReloader | None = None
        if follow:
            self.reloader = HotReloader(self.registry, load, self._install, interval=reload_interval,
                                        background=reload_in_background, current_run=self.serving.get("run"),
                                        stamp=stamp)
            self.reloader.last_error = self.startup_error

    # -- models ----------------------------------------------------------------------------
    def _startup(self, load: Any, model: Any) -> tuple[Backend, ServedRun | None, str]:
        if model is not None:
            target = None if str(model) == "base" else resolve_run(model)
            run = target if isinstance(target, ServedRun) else None
            return load_checked(load, target), run, "base" if target is None else "pinned"
        pointer = self.registry.latest()
        if pointer is not None:
            try:
                run = self.registry.latest_run()
                return load_checked(load, run), run, "promoted"
            except Exception as exc:  # a broken promotion must not stop the service
                self.startup_error = f"refused run {pointer.run_id!r} at startup: {exc}"
                logger.warning("openhoof-router %s; serving the general adapter", self.startup_error)
        general = general_run()
        if general is not None:
            return load_checked(load, general), general, "general"
        logger.warning("openhoof-router: no promoted run and no general adapter: serving the untrained "
                       "base, whose decisions are mostly wrong (train one: hoof-train run)")
        return load_checked(load, None), None, "base"

    def _apply_run(self, run: ServedRun | None) -> None:
        """Serve ``run``'s fitted decoding settings, unless the caller set thresholds explicitly."""
        decoding = run.manifest.decoding if run is not None else None
        self.engine.continue_threshold = decoding.continue_threshold if decoding else 0.5
        if self._explicit_threshold is None:
            self.policy.default = decoding.threshold if decoding and decoding.threshold is not None \
                else DEFAULT_THRESHOLD
        fitted = dict(decoding.tool_thresholds) if decoding else {}
        self.policy.per_tool = {**fitted, **self._explicit_tool_thresholds}

    def _install(self, backend: Backend, run: ServedRun) -> None:
        old = self.engine.swap_backend(backend)
        old.close()  # swap_backend waited for calls in flight; nobody uses it now
        self._apply_run(run)
        self.serving = {"source": "promoted", "run": run.run_id}
        with self._lock:
            self._turns.clear()

    @property
    def last_reload_error(self) -> str | None:
        """Why the latest promoted run was refused (None when it serves, or nothing was refused)."""
        return self.reloader.last_error if self.reloader else self.startup_error

    def reload(self) -> bool:
        """Check the ``latest`` pointer now and swap in a new run synchronously."""
        if self.reloader is None:
            raise RuntimeError("hot reload is off for this router (the model is pinned, or hot_reload=False)")
        return self.reloader.check()

    # -- routing ---------------------------------------------------------------------------
    def route(self, message: str, tools: Iterable[Any] | Sequence[ToolSpec], *, context: Sequence[PastTurn] = (),
              turn: str | None = None, mode: str = "route") -> RoutingDecision:
        """Route ``message``, apply the thresholds, log the decision and return it.

        ``turn`` (see :func:`turn_key`) makes the call idempotent per human turn: a second
        call with the same turn and tools returns the first decision, unlogged. Raises
        ``ToolError`` for a bad tool list; model trouble comes back as a fallback decision.
        """
        specs = normalize_tools(tools)
        memo = (turn, tuple(s.name for s in specs)) if turn else None
        if memo is not None:
            with self._lock:
                hit = self._turns.get(memo)
            if hit is not None:
                return hit
        if self.reloader is not None:
            self.reloader.poll()
        decision = self.engine.route(message, specs, context=context)
        required = self.policy.judge(decision)
        self.decision_log.record(decision, message, specs, mode=mode, threshold=required, context=context,
                                 turn_key=turn)
        if memo is not None:
            with self._lock:
                self._turns[memo] = decision
                while len(self._turns) > self._turn_memory:
                    self._turns.popitem(last=False)
        return decision

    # -- feedback --------------------------------------------------------------------------
    @property
    def outcome_log(self) -> OutcomeLog:
        if self._outcome_log is None:
            self._outcome_log = OutcomeLog(self.paths)
        return self._outcome_log

    def confirm(self, decision_id: str, detail: str | None = None) -> OutcomeRecord:
        """Explicit feedback: the decision was right."""
        return self.outcome_log.confirm(decision_id, detail)

    def correct(self, decision_id: str, tools: Sequence[str], detail: str | None = None,
                offered: Sequence[str] | None = None) -> OutcomeRecord:
        """Explicit feedback: the right tool set was ``tools`` ([] = no tool was needed)."""
        if offered is not None:
            unknown = [t for t in tools if t not in offered and t.lower() != NO_TOOL]
            if unknown:
                raise ToolError(f"correction names tools the router does not offer: {unknown}")
        return self.outcome_log.correct(decision_id, tools, detail)

    def close(self) -> None:
        if self.reloader is not None:
            self.reloader.wait(30)
        self.decision_log.close()
        if self._owns_engine:
            self.engine.close()
