"""openhoof-router: a tiny local model that picks the tools for each agent turn.

The public names below are imported on first use, so ``import openhoof_router`` stays
light (no llama.cpp, torch or transformers until a model is loaded).

Layers, lowest first; a module imports only from its own layer and lower ones, and the
import graph (lazy imports included) has no cycle (``tests/unit/test_imports.py``):

1. layout: ``store.paths`` (where files live) and the root helpers ``_lazy`` and ``extras``;
   they import nothing of the package;
2. core: the records, tools, prompt format and turn reader (``core/``, but
   the modules that run a model, in layer 5);
3. store: run manifests and the registry, the decision and outcome logs (``store/``);
4. models: backends, the base model, LoRA, GGUF files, merging (``models/``);
5. engine: ``core.verdicts`` and ``core.engine``, which run a model;
6. serving: the router service, thresholds and hot reload (``serving/``);
7. langchain: the LangChain / LangGraph adapters (``langchain/``);
8. learning: training, data assembly, evaluation (``learning/``);
9. cli: ``hoof-route`` and ``hoof-train`` (``cli/``);
10. this module, which only re-exports the public names.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from openhoof_router._lazy import lazy_getattr

if TYPE_CHECKING:  # what type checkers and IDEs see; at run time each name loads on first use
    from openhoof_router.core.engine import RouterEngine  # noqa: F401
    from openhoof_router.core.prompt import PromptCodec  # noqa: F401
    from openhoof_router.core.records import OutcomeRecord, PastTurn, RoutingDecision, TrainingRecord  # noqa: F401
    from openhoof_router.core.tools import ToolError, ToolSpec, normalize_tools  # noqa: F401
    from openhoof_router.langchain.conversation import Turn, parse_turn  # noqa: F401
    from openhoof_router.langchain.langgraph import router_node  # noqa: F401
    from openhoof_router.langchain.middleware import ToolRouterMiddleware  # noqa: F401
    from openhoof_router.langchain.reasoner import openai_compatible_reasoner  # noqa: F401
    from openhoof_router.langchain.runnable import ToolRouter  # noqa: F401
    from openhoof_router.langchain.tracing import (  # noqa: F401
        DECISION_ID_KEY,
        DECISION_RUN,
        OutcomeCallbackHandler,
        decision_info,  # noqa: F401
    )
    from openhoof_router.serving.reload import HotReloader  # noqa: F401
    from openhoof_router.serving.service import RouterService, ThresholdPolicy  # noqa: F401
    from openhoof_router.store.jsonl import LogWriteError  # noqa: F401
    from openhoof_router.store.log_join import JoinedDecision, join_logs, read_joined  # noqa: F401
    from openhoof_router.store.logs import DecisionLog, OutcomeLog  # noqa: F401
    from openhoof_router.store.paths import Paths  # noqa: F401
    from openhoof_router.store.runs import ModelRegistry, RunManifest, ServedRun  # noqa: F401

_EXPORTS = {
    # routing
    "ToolRouter": "openhoof_router.langchain.runnable",
    "decision_info": "openhoof_router.langchain.tracing",
    "RouterService": "openhoof_router.serving.service",
    "ThresholdPolicy": "openhoof_router.serving.service",
    "parse_turn": "openhoof_router.langchain.conversation",
    "Turn": "openhoof_router.langchain.conversation",
    "RouterEngine": "openhoof_router.core.engine",
    "PromptCodec": "openhoof_router.core.prompt",
    "PastTurn": "openhoof_router.core.records",
    "RoutingDecision": "openhoof_router.core.records",
    "TrainingRecord": "openhoof_router.core.records",
    "OutcomeRecord": "openhoof_router.core.records",
    "ToolSpec": "openhoof_router.core.tools",
    "ToolError": "openhoof_router.core.tools",
    "normalize_tools": "openhoof_router.core.tools",
    "Paths": "openhoof_router.store.paths",
    "ModelRegistry": "openhoof_router.store.runs",
    "RunManifest": "openhoof_router.store.runs",
    "ServedRun": "openhoof_router.store.runs",
    # logs and feedback
    "DecisionLog": "openhoof_router.store.logs",
    "OutcomeLog": "openhoof_router.store.logs",
    "JoinedDecision": "openhoof_router.store.log_join",
    "join_logs": "openhoof_router.store.log_join",
    "read_joined": "openhoof_router.store.log_join",
    "LogWriteError": "openhoof_router.store.jsonl",
    "OutcomeCallbackHandler": "openhoof_router.langchain.tracing",
    "DECISION_ID_KEY": "openhoof_router.langchain.tracing",
    "DECISION_RUN": "openhoof_router.langchain.tracing",
    # hot reload
    "HotReloader": "openhoof_router.serving.reload",
    # integrations
    "ToolRouterMiddleware": "openhoof_router.langchain.middleware",
    "router_node": "openhoof_router.langchain.langgraph",
    "openai_compatible_reasoner": "openhoof_router.langchain.reasoner",
}

__all__ = sorted(_EXPORTS)


__getattr__ = lazy_getattr(__name__, _EXPORTS)
