"""The apps' import layering, read from the source (README, "Architecture").

The graph holds the imports a module runs when it is loaded: module level and class bodies,
not function bodies, and not `if TYPE_CHECKING:` blocks (annotations only). Tests and
migrations are left out: they are not a layer anyone imports.

Two rules:
- no import cycle inside an app (models → services → tasks, one way);
- an app imports only the apps below it: `audit` none; `access` `audit`; `aws_integration` and
  `reviews` both of those; `demo` any; every app may use `config`, and `config` no app except
  through `config.urls` and the admin site, which mount every app's pages.

Run as a script (`python tests/test_import_layers.py`) to print what it finds.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
APPS = ("config", "audit", "access", "aws_integration", "reviews", "demo")

# What each app may import besides itself.
ALLOWED = {
    "config": set(),
    "audit": {"config"},
    "access": {"config", "audit"},
    "aws_integration": {"config", "audit", "access"},
    "reviews": {"config", "audit", "access"},
    "demo": {"config", "audit", "access", "aws_integration", "reviews"},
}
# `config` wires the apps together: its URLconf and admin site load every app's pages.
WIRING = {"config.urls", "config.admin"}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def project_modules() -> dict[str, Path]:
    modules = {}
    for app in APPS:
        for path in sorted((ROOT / app).rglob("*.py")):
            parts = path.relative_to(ROOT).parts
            if "tests" in parts or "migrations" in parts:
                continue
            modules[_module_name(path)] = path
    return modules


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _load_time_imports(
    body: list[ast.stmt], functions: bool = False
) -> Iterator[ast.Import | ast.ImportFrom]:
    """The imports that run when the module is loaded (with `functions`, those in functions too)."""
    for node in body:
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        elif isinstance(node, ast.If):
            if not _is_type_checking(node.test):
                yield from _load_time_imports(node.body, functions)
            yield from _load_time_imports(node.orelse, functions)
        elif isinstance(node, ast.Try):
            for block in (node.body, node.orelse, node.finalbody):
                yield from _load_time_imports(block, functions)
            for handler in node.handlers:
                yield from _load_time_imports(handler.body, functions)
        elif isinstance(node, ast.With | ast.For | ast.While | ast.ClassDef) or (
            functions and isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        ):
            yield from _load_time_imports(node.body, functions)


def _targets(node: ast.Import | ast.ImportFrom, module: str, is_package: bool) -> Iterator[str]:
    """Each name the import takes: `from pkg import sub` gives `pkg.sub`, and `pkg` too."""
    if isinstance(node, ast.Import):
        for alias in node.names:
            yield alias.name
        return
    base = node.module or ""
    if node.level:
        package = module.split(".") if is_package else module.split(".")[:-1]
        package = package[: len(package) - (node.level - 1)]
        base = ".".join([*package, *([base] if base else [])])
    for alias in node.names:
        yield f"{base}.{alias.name}"
        yield base


def import_graph(functions: bool = False) -> dict[str, set[str]]:
    """Each project module → the project modules it imports when loaded.

    With `functions`, also those its functions import when called: the cycles that appear
    then are the ones function-local imports dodge.
    """
    modules = project_modules()
    graph: dict[str, set[str]] = {}
    for module, path in modules.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        is_package = path.name == "__init__.py"
        edges = graph.setdefault(module, set())
        for node in _load_time_imports(tree.body, functions):
            # The most precise project module each name comes from: the submodule when
            # `name` is one, else the package or module that defines it.
            names = iter(_targets(node, module, is_package))
            for name in names:
                fallback = next(names) if isinstance(node, ast.ImportFrom) else name
                target = name if name in modules else fallback
                if target in modules and target != module:
                    edges.add(target)
    return graph


def _app(module: str) -> str:
    return module.split(".")[0]


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components with more than one module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def _one_cycle(graph: dict[str, set[str]], component: list[str]) -> list[str]:
    """A shortest cycle through the component's first module, to show in a failure."""
    members = set(component)
    start = component[0]
    paths = {start: [start]}
    queue = [start]
    while queue:
        node = queue.pop(0)
        for nxt in sorted(graph[node] & members):
            if nxt == start:
                return [*paths[node], start]
            if nxt not in paths:
                paths[nxt] = [*paths[node], nxt]
                queue.append(nxt)
    return component


def cycles_inside_apps(graph: dict[str, set[str]]) -> list[list[str]]:
    cycles = []
    for app in APPS:
        inside = {
            m: {t for t in targets if _app(t) == app}
            for m, targets in graph.items()
            if _app(m) == app
        }
        cycles += [_one_cycle(inside, c) for c in strongly_connected(inside)]
    return cycles


def imports_against_direction(graph: dict[str, set[str]]) -> list[str]:
    wrong = []
    for module, targets in sorted(graph.items()):
        if module in WIRING:
            continue
        for target in sorted(targets):
            if _app(target) != _app(module) and _app(target) not in ALLOWED[_app(module)]:
                wrong.append(f"{module} → {target}")
    return wrong


def test_graph_sees_the_apps_imports() -> None:
    graph = import_graph()
    # Guards the reader itself: an empty graph would pass every rule below.
    assert "access.models" in graph["access.services.requests"]
    assert "audit.services" in graph["access.services.requests"]


def test_no_import_cycle_inside_an_app() -> None:
    cycles = cycles_inside_apps(import_graph())
    assert not cycles, "\n".join(" → ".join(c) for c in cycles)


def test_apps_import_only_the_apps_below_them() -> None:
    wrong = imports_against_direction(import_graph())
    assert not wrong, "\n".join(wrong)


def test_a_cycle_is_found() -> None:
    graph = {"a.x": {"a.y"}, "a.y": {"a.z"}, "a.z": {"a.x"}, "a.w": {"a.x"}}
    assert strongly_connected(graph) == [["a.x", "a.y", "a.z"]]
    assert _one_cycle(graph, ["a.x", "a.y", "a.z"]) == ["a.x", "a.y", "a.z", "a.x"]


if __name__ == "__main__":
    for functions in (False, True):
        found = import_graph(functions)
        where = "module level and functions" if functions else "module level"
        print(f"cycles inside an app ({where}):")
        for cycle in cycles_inside_apps(found):
            print("  " + " → ".join(cycle))
        print(f"imports against the apps' direction ({where}):")
        for line in imports_against_direction(found):
            print("  " + line)
