"""Tool descriptions in one normal form, whatever the caller hands us.

Accepted: OpenAI function schemas (``{"type": "function", "function": {...}}`` or the bare
``{"name", "description", "parameters"}``), LangChain tools (anything
``convert_to_openai_tool`` understands), ``ToolSpec`` objects, and the seed's
names-only lists (described from the built-in catalog when the name is known).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from openhoof_router.core.records import NO_TOOL
from openhoof_router.store.paths import BUILTIN_TOOLS_FILE

MAX_NAME_CHARS = 128
# Any printable name routes (dots, dashes, slashes, unicode): only what would break the
# answer format is refused: whitespace and control characters, and ',' (the separator).
_BAD_NAME = re.compile(r"[\s,\x00-\x1f\x7f-\x9f]")


class ToolError(ValueError):
    """A tool list that cannot be routed over (empty, duplicated or badly named)."""


class ToolSpec(BaseModel):
    """The router's view of one tool: enough to describe it, nothing more."""

    name: str
    description: str = ""
    parameters: list[str] = Field(default_factory=list)
    schema_: dict[str, Any] | None = Field(default=None, alias="schema", exclude=True)
    """The original OpenAI schema, kept so callers can bind exactly what they offered."""

    model_config = {"populate_by_name": True}

    def openai_schema(self) -> dict[str, Any]:
        if self.schema_ is not None:
            return self.schema_
        props = {p: {"type": "string"} for p in self.parameters}
        return {
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.description,
                "parameters": {"type": "object", "properties": props, "required": []},
            },
        }


def _from_openai(schema: dict[str, Any]) -> ToolSpec:
    fn = schema.get("function", schema) if schema.get("type", "function") == "function" else schema
    if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
        raise ToolError(f"tool schema without a name: {json.dumps(schema, default=str)[:200]}")
    parameters = fn.get("parameters") or {}
    params = parameters.get("properties") if isinstance(parameters, dict) else None
    description = fn.get("description")
    full = schema if "function" in schema else {"type": "function", "function": fn}
    return ToolSpec(
        name=fn["name"],
        description=description.strip() if isinstance(description, str) else "",
        parameters=[str(p) for p in params] if isinstance(params, dict) else [],
        schema=full,
    )


def to_spec(tool: Any) -> ToolSpec:
    """Normalise one tool in any accepted form."""
    if isinstance(tool, ToolSpec):
        return tool
    if isinstance(tool, str):
        known = builtin_catalog().get(tool)
        return known if known is not None else ToolSpec(name=tool)
    if isinstance(tool, dict):
        return _from_openai(tool)
    try:  # LangChain BaseTool, pydantic models, callables
        from langchain_core.utils.function_calling import convert_to_openai_tool
    except ImportError as exc:  # pragma: no cover - langchain-core is a dependency
        raise ToolError(f"cannot read tool of type {type(tool).__name__}") from exc
    try:
        return _from_openai(convert_to_openai_tool(tool))
    except Exception as exc:
        raise ToolError(f"cannot read tool {tool!r}: {exc}") from exc


def normalize_tools(tools: Iterable[Any]) -> list[ToolSpec]:
    """Normalise and validate a tool list; raises ``ToolError`` with the reason."""
    specs = [to_spec(t) for t in tools]
    if not specs:
        raise ToolError("the tool list is empty: offer at least one tool to route over")
    seen: set[str] = set()
    for spec in specs:
        if not spec.name or len(spec.name) > MAX_NAME_CHARS or _BAD_NAME.search(spec.name):
            raise ToolError(f"tool name {spec.name!r} cannot be routed: use 1-{MAX_NAME_CHARS} characters "
                            "without spaces, commas or control characters")
        if spec.name.lower() == NO_TOOL:
            raise ToolError(f"tool name {spec.name!r} is reserved (it means 'no tool')")
        if spec.name in seen:
            raise ToolError(f"duplicate tool name {spec.name!r}: tool names must be unique")
        seen.add(spec.name)
    return specs


def load_tools_file(path: str | Path) -> list[ToolSpec]:
    """Read a JSON file holding a list of OpenAI function schemas (or names)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ToolError(f"tools file not found: {path}") from None
    except json.JSONDecodeError as exc:
        raise ToolError(f"tools file {path} is not valid JSON: {exc}") from None
    if isinstance(data, dict) and "tools" in data:
        data = data["tools"]
    if not isinstance(data, list):
        raise ToolError(f"tools file {path} must hold a JSON list of tool schemas")
    return normalize_tools(data)


@lru_cache(maxsize=1)
def _builtin() -> tuple[ToolSpec, ...]:
    return tuple(load_tools_file(BUILTIN_TOOLS_FILE))


def builtin_tools() -> list[ToolSpec]:
    """The 10 built-in OpenHoof tools (the one bundled copy of their schemas)."""
    return list(_builtin())


def builtin_catalog() -> dict[str, ToolSpec]:
    return {t.name: t for t in _builtin()}


def needs_schemas(specs: Sequence[ToolSpec]) -> bool:
    """Whether a record of these tools must carry their schemas: training re-describes known
    built-in tools from the catalog; any other tool would be trained on a bare name."""
    catalog = builtin_catalog()
    return any(catalog.get(s.name) is None or catalog[s.name].description != s.description for s in specs)
