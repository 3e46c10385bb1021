"""openhoof-router: a tiny local model that picks the tools for each agent turn.

The public names below are imported on first use, so ``import openhoof_router`` stays
light (no llama.cpp, torch or transformers until a model is loaded).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._lazy import lazy_getattr

if TYPE_CHECKING:  # what type checkers and IDEs see; at run time each name loads on first use
    from .callbacks import DECISION_ID_KEY, DECISION_RUN, OutcomeCallbackHandler  # noqa: F401
    from .conversation import Turn, parse_turn  # noqa: F401
    from .engine import RouterEngine  # noqa: F401
    from .integrations.langgraph import router_node  # noqa: F401
    from .integrations.middleware import ToolRouterMiddleware  # noqa: F401
    from .integrations.reasoner import openai_compatible_reasoner  # noqa: F401
    from .jsonl import LogWriteError  # noqa: F401
    from .logs import DecisionLog, JoinedDecision, OutcomeLog, join_logs, read_joined  # noqa: F401
    from .paths import Paths  # noqa: F401
    from .prompt import PromptCodec  # noqa: F401
    from .records import OutcomeRecord, PastTurn, RoutingDecision, TrainingRecord  # noqa: F401
    from .reload import HotReloader  # noqa: F401
    from .router import ToolRouter, decision_info  # noqa: F401
    from .runs import ModelRegistry, RunManifest, ServedRun  # noqa: F401
    from .service import RouterService, ThresholdPolicy  # noqa: F401
    from .tools import ToolError, ToolSpec, normalize_tools  # noqa: F401

_EXPORTS = {
    # routing
    "ToolRouter": ".router",
    "decision_info": ".router",
    "RouterService": ".service",
    "ThresholdPolicy": ".service",
    "parse_turn": ".conversation",
    "Turn": ".conversation",
    "RouterEngine": ".engine",
    "PromptCodec": ".prompt",
    "PastTurn": ".records",
    "RoutingDecision": ".records",
    "TrainingRecord": ".records",
    "OutcomeRecord": ".records",
    "ToolSpec": ".tools",
    "ToolError": ".tools",
    "normalize_tools": ".tools",
    "Paths": ".paths",
    "ModelRegistry": ".runs",
    "RunManifest": ".runs",
    "ServedRun": ".runs",
    # logs and feedback
    "DecisionLog": ".logs",
    "OutcomeLog": ".logs",
    "JoinedDecision": ".logs",
    "join_logs": ".logs",
    "read_joined": ".logs",
    "LogWriteError": ".jsonl",
    "OutcomeCallbackHandler": ".callbacks",
    "DECISION_ID_KEY": ".callbacks",
    "DECISION_RUN": ".callbacks",
    # hot reload
    "HotReloader": ".reload",
    # integrations
    "ToolRouterMiddleware": ".integrations.middleware",
    "router_node": ".integrations.langgraph",
    "openai_compatible_reasoner": ".integrations.reasoner",
}

__all__ = sorted(_EXPORTS)


__getattr__ = lazy_getattr(__name__, _EXPORTS)
