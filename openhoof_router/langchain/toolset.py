"""The tools a LangChain router routes over: validated once, kept for ``bind_tools``."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from langchain_core.tools import BaseTool

from openhoof_router.core.tools import ToolSpec, normalize_tools

V = TypeVar("V")


@dataclass(frozen=True)
class ToolSet:
    """A validated tool list: specs for the router, originals for ``bind_tools``."""

    specs: tuple[ToolSpec, ...]
    bindable: dict[str, Any]

    @classmethod
    def build(cls, tools: Sequence[Any]) -> ToolSet:
        """Validate ``tools`` (``ToolError`` when they cannot be routed over)."""
        tools = list(tools)
        specs = tuple(normalize_tools(tools))
        # LangChain tools and OpenAI dicts bind as given; names / ToolSpecs as schemas.
        bindable = {spec.name: tool if isinstance(tool, (BaseTool, dict)) else spec.openai_schema()
                    for tool, spec in zip(tools, specs, strict=True)}
        return cls(specs, bindable)

    @property
    def names(self) -> list[str]:
        return [s.name for s in self.specs]

    def pick(self, names: Sequence[str]) -> list[Any]:
        """The bindable tools of ``names``, in that order."""
        return [self.bindable[n] for n in names]


class IdentityCache(Generic[V]):
    """Values built from a sequence of objects, kept per the objects' identities: an agent
    passes the same tool objects on every call, so each list is validated (or bound to the
    reasoner) once. Holding the objects keeps their ids unique; the oldest entries go first.

    Args:
        build: makes the value from the objects (as a tuple) and the ``get`` call's extras.
        size: how many values to keep.
    """

    def __init__(self, build: Callable[..., V], size: int) -> None:
        self.build = build
        self.size = size
        self._values: OrderedDict[tuple[Any, ...], tuple[tuple[Any, ...], V]] = OrderedDict()

    def get(self, objects: Sequence[Any], *extra: Hashable) -> V:
        objects = tuple(objects)
        key = (tuple(id(o) for o in objects), *extra)
        hit = self._values.get(key)
        if hit is not None and all(a is b for a, b in zip(hit[0], objects, strict=True)):
            return hit[1]
        value = self.build(objects, *extra)
        self._values[key] = (objects, value)
        while len(self._values) > self.size:
            self._values.popitem(last=False)
        return value
