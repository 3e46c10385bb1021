"""The package's public names, and its import graph: no cycle, and no layer imports a higher one.

The graph is read from the source with ``ast``: every ``import`` anywhere in a module (also
the lazy ones inside functions and ``TYPE_CHECKING`` blocks), ``importlib.import_module``
calls with a literal name, and the module strings of lazy ``_EXPORTS`` tables. The layer
order is the one ``openhoof_router``'s docstring documents.
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

import openhoof_router

PACKAGE = "openhoof_router"
ROOT = Path(openhoof_router.__file__).parent

# Lowest first; a module belongs to the longest prefix that matches it.
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    # helpers at the package root, and where files live: they import nothing of the package
    ("layout", ("openhoof_router._lazy", "openhoof_router.extras", "openhoof_router.store.paths")),
    ("core", ("openhoof_router.core",)),
    ("store", ("openhoof_router.store",)),
    ("models", ("openhoof_router.models",)),
    ("engine", ("openhoof_router.core.engine", "openhoof_router.core.verdicts")),
    ("serving", ("openhoof_router.serving",)),
    ("langchain", ("openhoof_router.langchain",)),
    ("learning", ("openhoof_router.learning",)),
    ("cli", ("openhoof_router.cli",)),
    ("package", ("openhoof_router",)),  # the facade (this name only): lazy re-exports of the public names
)

PUBLIC = {
    PACKAGE: {
        "DECISION_ID_KEY", "DECISION_RUN", "DecisionLog", "HotReloader", "JoinedDecision", "LogWriteError",
        "ModelRegistry", "OutcomeCallbackHandler", "OutcomeLog", "OutcomeRecord", "PastTurn", "Paths",
        "PromptCodec", "RouterEngine", "RouterService", "RoutingDecision", "RunManifest", "ServedRun",
        "ThresholdPolicy", "ToolError", "ToolRouter", "ToolRouterMiddleware", "ToolSpec", "TrainingRecord",
        "Turn", "decision_info", "join_logs", "normalize_tools", "openai_compatible_reasoner", "parse_turn",
        "read_joined", "router_node",
    },
    f"{PACKAGE}.langchain": {
        "SERVERS", "ToolRouterMiddleware", "openai_compatible_reasoner", "router_node", "selected_tools",
    },
}


def module_files() -> dict[str, Path]:
    """Module name -> file, for every module of the package (packages by their ``__init__``)."""
    out = {}
    for path in sorted(ROOT.rglob("*.py")):
        parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _resolve(name: str, level: int, module: str, is_package: bool) -> str:
    if not level:
        return name
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (level - 1)]
    return ".".join([*base, name] if name else base)


def _imported(tree: ast.AST, module: str, is_package: bool, modules: set[str]) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            target = _resolve(node.module or "", node.level, module, is_package)
            found.add(target)
            # ``from package import submodule`` imports the submodule too.
            found.update(f"{target}.{a.name}" for a in node.names if f"{target}.{a.name}" in modules)
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
              and node.func.attr == "import_module" and node.args
              and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
            found.add(_resolve(node.args[0].value.lstrip("."), len(node.args[0].value)
                               - len(node.args[0].value.lstrip(".")), module, is_package))
        elif (isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "_EXPORTS"
                                                   for t in node.targets)
              and isinstance(node.value, ast.Dict)):
            for value in node.value.values:
                if isinstance(value, ast.Constant) and isinstance(value.value, str):
                    name = value.value
                    level = len(name) - len(name.lstrip("."))
                    found.add(_resolve(name.lstrip("."), level, module, is_package=True))
    return found


def import_graph() -> dict[str, set[str]]:
    """Module -> the package's modules it imports (no self edges)."""
    files = module_files()
    modules = set(files)
    graph = {}
    for module, path in files.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        targets = _imported(tree, module, path.name == "__init__.py", modules)
        graph[module] = {t for t in targets if t in modules and t != module}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def layer_of(module: str) -> int:
    best, best_len = -1, -1
    for rank, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            inside = module == prefix or (prefix != PACKAGE and module.startswith(prefix + "."))
            if inside and len(prefix) > best_len:
                best, best_len = rank, len(prefix)
    return best


def figures(graph: dict[str, set[str]]) -> str:
    found = cycles(graph)
    edges = sum(len(t) for t in graph.values())
    return f"{len(graph)} modules, {edges} edges, {len(found)} cycles" + "".join(
        f"\n  cycle: {' -> '.join(c)}" for c in found)


@pytest.mark.parametrize("package", sorted(PUBLIC))
def test_public_names_are_exported_and_import(package: str) -> None:
    module = importlib.import_module(package)
    assert set(module.__all__) == PUBLIC[package]
    for name in module.__all__:
        assert getattr(module, name) is not None, f"{package}.{name}"


def test_every_module_has_a_layer() -> None:
    graph = import_graph()
    assert not [m for m in graph if layer_of(m) < 0]


def test_import_graph_has_no_cycle() -> None:
    graph = import_graph()
    assert len(graph) > 50 and sum(map(len, graph.values())) > 100, figures(graph)  # the reader found them
    assert not cycles(graph), figures(graph)


def test_no_module_imports_a_higher_layer() -> None:
    graph = import_graph()
    upward = sorted(f"{m} ({LAYERS[layer_of(m)][0]}) -> {t} ({LAYERS[layer_of(t)][0]})"
                    for m, targets in graph.items() for t in targets if layer_of(t) > layer_of(m))
    assert not upward, figures(graph) + "\n" + "\n".join(upward)


def test_the_graph_reader_sees_lazy_imports() -> None:
    # A reader that missed function-level imports or _EXPORTS strings would pass vacuously.
    graph = import_graph()
    assert "openhoof_router.langchain.runnable" in graph[PACKAGE]  # an _EXPORTS string
    assert "openhoof_router.langchain.middleware" in graph["openhoof_router.langchain"]  # a relative one
    assert "openhoof_router.models.llamacpp" in graph["openhoof_router.models.loading"]  # inside a function
