"""openhoof-router: a tiny local model that picks the tools for each agent turn.

The public names below are imported on first use, so ``import openhoof_router`` stays
light (no llama.cpp, torch or transformers until a model is loaded).
"""

from __future__ import annotations

from ._lazy import lazy_getattr

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
