"""Framework integrations: agent middleware, a LangGraph node, the default reasoner.

Imported lazily: ``langchain`` / ``langgraph`` / ``langchain-openai`` are only needed for
the piece you use (``pip install 'openhoof-router[langchain]'``).
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "ToolRouterMiddleware": ".middleware",
    "router_node": ".langgraph",
    "selected_tools": ".langgraph",
    "openai_compatible_reasoner": ".reasoner",
    "SERVERS": ".reasoner",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module, __name__), name)
