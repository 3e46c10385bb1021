"""openhoof-router: a tiny local model that picks the tools for each agent turn.

The public names below are imported on first use, so ``import openhoof_router`` stays
light (no llama.cpp, torch or transformers until a model is loaded).
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    # routing
    "ToolRouter": ".router",
    "parse_turn": ".router",
    "decision_info": ".router",
    "RouterEngine": ".engine",
    "RoutingDecision": ".records",
    "TrainingRecord": ".records",
    "OutcomeRecord": ".records",
    "ToolSpec": ".tools",
    "ToolError": ".tools",
    "normalize_tools": ".tools",
    "Paths": ".paths",
    "ModelRegistry": ".registry",
    # logs and feedback
    "DecisionLog": ".logs",
    "OutcomeLog": ".logs",
    "JoinedDecision": ".logs",
    "join_logs": ".logs",
    "read_joined": ".logs",
    "LogWriteError": ".jsonl",
    "OutcomeCallbackHandler": ".callbacks",
    "DECISION_ID_KEY": ".callbacks",
    "DECISION_EVENT": ".callbacks",
    # hot reload
    "HotReloader": ".reload",
    # integrations
    "ToolRouterMiddleware": ".integrations.middleware",
    "router_node": ".integrations.langgraph",
    "openai_compatible_reasoner": ".integrations.reasoner",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
