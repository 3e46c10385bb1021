"""Framework integrations: agent middleware, a LangGraph node, the default reasoner.

Imported lazily: ``langchain`` / ``langgraph`` / ``langchain-openai`` are only needed for
the piece you use (``pip install 'openhoof-router[langchain]'``).
"""

from __future__ import annotations

from .._lazy import lazy_getattr

_EXPORTS = {
    "ToolRouterMiddleware": ".middleware",
    "router_node": ".langgraph",
    "selected_tools": ".langgraph",
    "openai_compatible_reasoner": ".reasoner",
    "SERVERS": ".reasoner",
}

__all__ = sorted(_EXPORTS)


__getattr__ = lazy_getattr(__name__, _EXPORTS)
