"""Framework integrations: agent middleware, a LangGraph node, the default reasoner.

Imported lazily: ``langchain`` / ``langgraph`` / ``langchain-openai`` are only needed for
the piece you use (``pip install 'openhoof-router[langchain]'``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from openhoof_router._lazy import lazy_getattr

if TYPE_CHECKING:
    from openhoof_router.langchain.langgraph import router_node, selected_tools  # noqa: F401
    from openhoof_router.langchain.middleware import ToolRouterMiddleware  # noqa: F401
    from openhoof_router.langchain.reasoner import SERVERS, openai_compatible_reasoner  # noqa: F401

_EXPORTS = {
    "ToolRouterMiddleware": ".middleware",
    "router_node": ".langgraph",
    "selected_tools": ".langgraph",
    "openai_compatible_reasoner": ".reasoner",
    "SERVERS": ".reasoner",
}

__all__ = sorted(_EXPORTS)


__getattr__ = lazy_getattr(__name__, _EXPORTS)
