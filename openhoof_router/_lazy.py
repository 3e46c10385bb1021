"""Lazy package exports: a name's module is imported on first use (keeps imports light)."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from typing import Any

from openhoof_router.extras import install_hint, missing_extra


def lazy_getattr(package: str, exports: dict[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` resolving ``exports`` (name -> relative module) in ``package``."""

    def __getattr__(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        try:
            value = getattr(importlib.import_module(module, package), name)
        except ModuleNotFoundError as exc:
            if missing_extra(exc) is None:
                raise
            # one line naming the pip install, not a bare "No module named 'langchain'"
            raise ModuleNotFoundError(f"{package}.{name}: {install_hint(exc)}",
                                      name=exc.name) from exc
        setattr(sys.modules[package], name, value)  # later lookups skip this function
        return value

    return __getattr__
