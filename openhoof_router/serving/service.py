"""RouterService: the router as a framework-free service.

It owns everything between "a message and its tools" and "a decision the caller can act
on": the engine and the model it serves (start-up and hot reload), the threshold policy
that turns unsure decisions into fallbacks, the decision log, explicit feedback, and the
memory that routes each human turn once. :class:`~openhoof_router.langchain.runnable.ToolRouter`,
the agent middleware and the LangGraph node are thin adapters over it.

Which model serves and with which thresholds is decided by
:func:`~openhoof_router.serving.selection.serve` (promoted run → general adapter → base,
refusing broken candidates with a warning; ``serving`` and ``last_reload_error`` say what
was refused); every setting is a field of
:class:`~openhoof_router.serving.settings.RouterSettings`.
"""

from __future__ import annotations

import json
import logging
import threading
from collections import deque
from collections.abc import Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from openhoof_router.core.engine import RouterEngine
from openhoof_router.core.records import NO_TOOL, OutcomeRecord, PastTurn, RoutingDecision
from openhoof_router.core.tools import ToolError, ToolSpec, normalize_tools
from openhoof_router.serving.policy import ThresholdPolicy
from openhoof_router.serving.reload import HotReloader
from openhoof_router.serving.selection import Selection, serve
from openhoof_router.serving.settings import RouterSettings
from openhoof_router.serving.turn_memory import TurnMemory
from openhoof_router.store.logs import DecisionLog, OutcomeLog
from openhoof_router.store.paths import Paths
from openhoof_router.store.runs import Decoding, ModelRegistry

logger = logging.getLogger(__name__)

__all__ = ["RouterService", "RouterSettings", "ThresholdPolicy", "UnknownDecisionError"]


class RouterService:
    """The local router: route, apply thresholds, log, take feedback, follow promotions.

    Args:
        settings: what to serve and how (:class:`RouterSettings`; default: from the
            ``OPENHOOF_*`` environment variables).
        engine: an existing :class:`RouterEngine` to use (pinned; not closed by :meth:`close`).
        paths: the folders (default: the settings' ``home``, ``data_dir``, ``models_dir``,
            ``cache_dir``); when given, those settings are not used.
        overrides: settings fields (``model=``, ``threshold=``, ``data_dir=``, ...) applied
            over ``settings``.

    Raises:
        TypeError / SettingsError: an unknown setting, or an invalid value.
        LogWriteError: the data folder cannot be written (when logging).
        BackendError / BaseModelError: the model cannot be loaded.
    """

    def __init__(self, settings: RouterSettings | None = None, *, engine: RouterEngine | None = None,
                 paths: Paths | None = None, **overrides: Any) -> None:
        self.settings = settings = RouterSettings.of(settings, **overrides)
        self.paths = paths or settings.paths()
        self.decision_log = DecisionLog(self.paths, enabled=settings.log_decisions,
                                        max_message_chars=settings.max_logged_chars)
        self._outcome_log: OutcomeLog | None = None
        self.registry = ModelRegistry(self.paths)
        self.turns = TurnMemory(settings.turn_memory)
        """Each human turn's decision (routed once, whatever the concurrency)."""
        self._prefetcher: ThreadPoolExecutor | None = None
        self._prefetch_guard = threading.Lock()
        self.last_prefetch: Future[int] | None = None
        """The latest :meth:`prefetch` (its result: the tokens it read), e.g. to wait for it."""
        self._decided: deque[str] = deque(maxlen=10_000)  # recent decision ids: feedback on them is valid
        stamp = self.registry.pointer_stamp()  # before loading: a promotion meanwhile is seen later
        self._owns_engine = engine is None
        # A caller's engine keeps its own verdict rule; only the thresholds come from the settings.
        self.selection = serve(settings, paths=self.paths) if engine is None else Selection(
            source="engine", policy=ThresholdPolicy.served(Decoding(), settings.threshold, settings.tool_thresholds,
                                         settings.keep_threshold, settings.fallback_share))
        """What serves now, and what was refused on the way (see :func:`serve`)."""
        self.engine: RouterEngine = engine if engine is not None else _built(self.selection)
        self.policy: ThresholdPolicy = self.selection.policy
        self.startup_error: str | None = "; ".join(self.selection.refused) or None
        self.reloader: HotReloader | None = None
        pinned = engine is not None or settings.model is not None
        if (not pinned) if settings.hot_reload is None else settings.hot_reload:
            # a caller's engine: new runs load on its kind of backend
            follow = (RouterSettings.of(settings, backend=engine.backend.name)
                      if engine is not None and settings.backend == "auto" else settings)
            self.reloader = HotReloader(self.registry, lambda: serve(follow, paths=self.paths, promoted_only=True),
                                        self._install, interval=settings.reload_interval,
                                        background=settings.reload_in_background,
                                        current_run=self.serving.get("run"), stamp=stamp)
            self.reloader.last_error = self.startup_error

    # -- models ----------------------------------------------------------------------------
    @property
    def serving(self) -> dict[str, Any]:
        """What serves now: ``{"source": "promoted" | "general" | "base" | "pinned" | "engine",
        "run": id, "refused": [reasons]}``."""
        if self.selection.source == "engine":
            return {"source": "engine", "run": self.engine.backend.adapter_id, "refused": []}
        return self.selection.summary()

    def _install(self, selection: Selection) -> None:
        """Hot reload: swap the promoted run's backend in and serve its decoding settings."""
        assert selection.backend is not None
        old = self.engine.swap_backend(selection.backend)
        old.close()  # swap_backend waited for calls in flight; nobody uses it now
        selection.apply(self.engine)
        self.policy, self.selection = selection.policy, selection
        self.turns.clear()

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

        ``turn`` (see :func:`~openhoof_router.core.turns.turn_key`) makes the call idempotent
        per human turn: a second call with the same turn and tools returns the first decision,
        unlogged, and calls made while it is being routed wait for it (threads and asyncio
        alike). Raises ``ToolError`` for a bad tool list; model trouble comes back as a
        fallback decision.
        """
        specs = normalize_tools(tools)

        def route() -> RoutingDecision:
            if self.reloader is not None:
                self.reloader.poll()
            decision = self.engine.route(message, specs, context=context)
            required = self.policy.judge(decision)
            self.decision_log.record(decision, message, specs, mode=mode, threshold=required, context=context,
                                     turn_key=turn)
            self._decided.append(decision.decision_id)
            return decision

        if not turn:
            return route()
        # Concurrent calls for one turn wait for the first one's decision (single-flight).
        return self.turns.route_once((turn, tuple(s.name for s in specs)), route)

    def prefetch(self, tools: Iterable[Any] | Sequence[ToolSpec], context: Sequence[PastTurn], *,
                 wait: bool = False) -> Future[int]:
        """Read a conversation's earlier turns ahead of its next message (see
        :meth:`RouterEngine.prefetch`), on one background thread unless ``wait``: call it
        when a turn is over, so the next turn's :meth:`route` reads only its message. Never
        raises: a failure is logged and the future holds 0."""
        specs = list(tools)
        context = list(context)

        def work() -> int:
            try:
                return self.engine.prefetch(specs, context)
            except Exception as exc:  # an optimisation: routing works without it
                logger.debug("prefetch failed: %s", exc)
                return 0

        if wait:
            done: Future[int] = Future()
            done.set_result(work())
            self.last_prefetch = done
            return done
        with self._prefetch_guard:
            if self._prefetcher is None:
                self._prefetcher = ThreadPoolExecutor(1, thread_name_prefix="openhoof-prefetch")
            self.last_prefetch = self._prefetcher.submit(work)
            return self.last_prefetch

    # -- feedback --------------------------------------------------------------------------
    @property
    def outcome_log(self) -> OutcomeLog:
        if self._outcome_log is None:
            self._outcome_log = OutcomeLog(self.paths)
        return self._outcome_log

    def confirm(self, decision_id: str, detail: str | None = None) -> OutcomeRecord:
        """Explicit feedback: the decision was right.

        Raises :class:`UnknownDecisionError` (nothing is written) when ``decision_id`` is
        neither one of this router's recent decisions nor in the decision log: an outcome for
        it could never be joined to a decision, so it would teach nothing.
        """
        self._check_known(decision_id)
        return self.outcome_log.confirm(decision_id, detail)

    def correct(self, decision_id: str, tools: Sequence[str], detail: str | None = None,
                offered: Sequence[str] | None = None) -> OutcomeRecord:
        """Explicit feedback: the right tool set was ``tools`` ([] = no tool was needed).

        Raises ``ToolError`` for a tool not ``offered``, :class:`UnknownDecisionError` as
        :meth:`confirm` does.
        """
        if offered is not None:
            unknown = [t for t in tools if t not in offered and t.lower() != NO_TOOL]
            if unknown:
                raise ToolError(f"correction names tools the router does not offer: {unknown}")
        self._check_known(decision_id)
        return self.outcome_log.correct(decision_id, tools, detail)

    def _check_known(self, decision_id: str) -> None:
        if decision_id in self._decided or _logged(self.paths.decisions_file, decision_id):
            return
        raise UnknownDecisionError(f"no routing decision {decision_id!r}: this router did not make it and "
                                   f"{self.paths.decisions_file} does not hold it (feedback not recorded)")

    def close(self) -> None:
        if self._prefetcher is not None:
            self._prefetcher.shutdown(wait=True, cancel_futures=True)
        if self.reloader is not None:
            self.reloader.wait(30)
        self.decision_log.close()
        if self._owns_engine:
            self.engine.close()


class UnknownDecisionError(LookupError):
    """Feedback (``confirm`` / ``correct``) for a decision id no router made or logged here."""


def _logged(path: Path, decision_id: str) -> bool:
    """Whether the decision log names ``decision_id`` (a text scan: ids are random hex, so a
    quoted match is that decision; only feedback on older or other routers' decisions gets here)."""
    needle = json.dumps(decision_id)
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            return any(needle in line for line in fh)
    except FileNotFoundError:
        return False


def _built(selection: Selection) -> RouterEngine:
    if selection.engine is None:  # serve() with load=True always builds one
        raise RuntimeError(f"no engine was built for {selection.describe()}")
    return selection.engine
