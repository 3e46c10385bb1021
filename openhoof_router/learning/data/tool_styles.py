"""How the general corpus presents a tool list: name styles (as written, snake_case,
``field_name`` namespaces, dotted, or masked names that say nothing, so the model must read
the description) and per-tool damage to descriptions and parameters."""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field

from openhoof_router.core.tools import ToolSpec

# -- variants of one tool ------------------------------------------------------------------

_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")


def snake(name: str) -> str:
    return _CAMEL.sub("_", name).lower()


def _namespace(field_name: str) -> str:
    return re.sub(r"[^a-z]+", "_", field_name.lower()).strip("_")[:14] or "api"


@dataclass
class Styler:
    """One group's way of presenting tools: name style, and per-tool damage to descriptions."""

    rng: random.Random
    name_style: str = "plain"
    names: dict[str, str] = field(default_factory=dict)

    @classmethod
    def pick(cls, rng: random.Random) -> Styler:
        style = rng.choices(["plain", "snake", "namespace", "dotted", "masked"], weights=[40, 25, 12, 5, 18])[0]
        return cls(rng, style)

    def _masked(self) -> str:
        """A name that says nothing (``f3``, ``tool_2``, ``fn_k8q``): only the description tells."""
        n = len(self.names) + 1
        form = self.rng.choice(["f{n}", "tool_{n}", "fn_{s}", "{s}", "api_{n}{s}"])
        s = "".join(self.rng.choice("abcdefghijkmnpqrstuvwxyz0123456789") for _ in range(3))
        return form.format(n=n, s=s)

    def name(self, spec: ToolSpec, field_name: str) -> str:
        if spec.name not in self.names:
            base = spec.name
            if self.name_style == "masked":
                base = self._masked()
                while base in self.names.values():
                    base += "x"
            elif self.name_style == "snake":
                base = snake(base)
            elif self.name_style == "namespace":
                base = f"{_namespace(field_name)}_{snake(base)}"
            elif self.name_style == "dotted":
                base = f"{_namespace(field_name)}.{base}"
            self.names[spec.name] = base
        return self.names[spec.name]

    def tool(self, spec: ToolSpec, field_name: str) -> ToolSpec:
        desc, params = spec.description, list(spec.parameters)
        roll = self.rng.random()
        if roll < 0.07 and self.name_style != "masked":  # a masked name keeps its description
            desc = ""
        elif roll < 0.17:
            desc = " ".join(desc.split()[: self.rng.randint(2, 6)])
        if self.rng.random() < 0.05:
            params = []
        return ToolSpec(name=self.name(spec, field_name), description=desc, parameters=params)
