"""The package's layering, held by reading its imports (every import, also inside functions and
``TYPE_CHECKING`` blocks) and its comparisons with database kinds.

Each layer imports only the layers below it, so a wrong arrow fails here instead of growing a cycle;
only ``rivet.sources`` knows which databases exist.
"""

from __future__ import annotations

import ast
import functools
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "python" / "rivet"

# Bottom to top. A module's layer is its first name under rivet; the top layer is the CLI and the API.
LAYERS = ["core", "config", "storage", "output", "state", "sources", "plan", "execution", "ui", "app", "top"]
OWN_LAYER = {"errors": "core", "_native": "core", "cli": "top", "api": "top", "__init__": "top", "__main__": "top"}
DATABASES = ("postgres", "mysql", "sqlite")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@functools.cache
def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports(name: str, path: Path) -> Iterator[tuple[int, str]]:
    """(line, module imported) for every rivet import of a module (``from m import name``: ``m.name`` if a module,
    else ``m``)."""
    known = {*modules(), "rivet._native"}
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from ((node.lineno, a.name) for a in node.names if a.name.split(".")[0] == "rivet")
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(
                    [*package.split(".")[: len(package.split(".")) - node.level + 1], *filter(None, [base])]
                )
            if base.split(".")[0] == "rivet":
                yield from (
                    (node.lineno, f"{base}.{a.name}" if f"{base}.{a.name}" in known else base) for a in node.names
                )


def layer_of(module: str) -> str:
    first = module.split(".")[1] if "." in module else "__init__"
    return OWN_LAYER.get(first, first)


def test_every_module_belongs_to_a_layer() -> None:
    strays = sorted(m for m in modules() if layer_of(m) not in LAYERS)
    assert not strays, f"modules outside every layer of {LAYERS}: {strays}"


def test_no_import_runs_up_a_layer() -> None:
    rank = {layer: i for i, layer in enumerate(LAYERS)}
    wrong = [
        f"{path.relative_to(PACKAGE.parent)}:{line} ({layer_of(name)}) imports {target} ({layer_of(target)})"
        for name, path in modules().items()
        for line, target in imports(name, path)
        if rank.get(layer_of(target), 0) > rank[layer_of(name)]
    ]
    assert not wrong, "imports that run up a layer:\n" + "\n".join(wrong)


def test_no_cycle_between_packages() -> None:
    graph: dict[str, set[str]] = defaultdict(set)
    for name, path in modules().items():
        for _, target in imports(name, path):
            if layer_of(target) != layer_of(name):
                graph[layer_of(name)].add(layer_of(target))
    assert not cycles(graph), f"package import cycles: {cycles(graph)}"


def test_one_database_never_imports_another() -> None:
    wrong = [
        f"{name} imports {target}"
        for name, path in modules().items()
        for _, target in imports(name, path)
        if (own := database_of(name)) and (other := database_of(target)) and own != other
    ]
    assert not wrong, "\n".join(wrong)


def database_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[2] if len(parts) > 2 and parts[1] == "sources" and parts[2] in DATABASES else None


def kind_branches(path: Path) -> Iterator[int]:
    """Lines that compare something with a database kind's name."""
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Compare):
            operands = [node.left, *node.comparators]
            names = [c for o in operands for c in _constants(o)]
            if any(n in DATABASES for n in names):
                yield node.lineno
        elif isinstance(node, ast.match_case) and any(n in DATABASES for n in _constants(node.pattern)):
            yield node.pattern.lineno


def _constants(node: ast.AST) -> list[object]:
    return [c.value for c in ast.walk(node) if isinstance(c, ast.Constant)] + [
        c.value.value for c in ast.walk(node) if isinstance(c, ast.MatchValue) and isinstance(c.value, ast.Constant)
    ]


# Branches that stay for now, each with its reason.
KIND_BRANCHES_KEPT = {
    # Which keys a source block takes is validated by type until the source config is a tagged union.
    "rivet/config/connection.py": 1,
}


def test_only_sources_branch_on_the_database_kind() -> None:
    found: dict[str, list[int]] = defaultdict(list)
    for name, path in modules().items():
        if layer_of(name) != "sources":
            found[str(path.relative_to(PACKAGE.parent))] += kind_branches(path)
    wrong = [f"{file}:{lines}" for file, lines in found.items() if len(lines) > KIND_BRANCHES_KEPT.get(file, 0)]
    assert not wrong, "branches on a database kind outside rivet.sources (ask SourceCapabilities):\n" + "\n".join(wrong)


def test_only_sources_import_a_database_of_their_own() -> None:
    """Outside rivet.sources, code reaches a database through the registry, never by its modules or sessions."""
    specific = ("PgSession", "MySession")
    wrong = [
        f"{path.relative_to(PACKAGE.parent)}:{line} imports {target}"
        for name, path in modules().items()
        if layer_of(name) != "sources"
        for line, target in imports(name, path)
        if database_of(target) or target.rsplit(".", 1)[-1] in specific
    ]
    assert not wrong, "\n".join(wrong)


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found
