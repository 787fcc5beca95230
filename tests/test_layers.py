"""The package's layering, held by reading its imports (every import, also inside functions and
``TYPE_CHECKING`` blocks) and its comparisons with database kinds.

Each layer imports only the layers below it, so a wrong arrow fails here instead of growing a cycle;
only ``rivet.sources`` knows which databases exist. Each check also runs on a small planted tree
that breaks it, so a check that could never fail would fail here.
"""

from __future__ import annotations

import ast
import functools
import textwrap
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "python" / "rivet"

# Bottom to top. A module's layer is its first name under rivet; the top layer is the CLI and the API.
LAYERS = ["core", "config", "storage", "output", "state", "sources", "plan", "execution", "ui", "app", "top"]
OWN_LAYER = {"errors": "core", "_native": "core", "cli": "top", "api": "top", "__init__": "top", "__main__": "top"}
DATABASES = ("postgres", "mysql", "sqlite")
# Names that belong to one database wherever they are imported from.
DATABASE_NAMES = ("PgSession", "MySession")
# Branches that stay for now, each with its reason.


@dataclass(frozen=True)
class Import:
    """One imported name: where, the module it resolves to, and the name (None for ``import m``)."""

    line: int
    module: str
    name: str | None

    @property
    def shown(self) -> str:
        """The module, and the name taken from it when that is not a module itself."""
        named = self.name and not self.module.endswith(f".{self.name}")
        return f"{self.module}.{self.name}" if named else self.module


@dataclass(frozen=True)
class Tree:
    """A rivet package on disk (the real one, or one planted by a test)."""

    root: Path

    @functools.cached_property
    def modules(self) -> dict[str, Path]:
        return {self.module_name(p): p for p in sorted(self.root.rglob("*.py"))}

    def module_name(self, path: Path) -> str:
        parts = list(path.relative_to(self.root.parent).with_suffix("").parts)
        return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)

    def shown(self, path: Path) -> str:
        return str(path.relative_to(self.root.parent))

    def imports(self, name: str, path: Path) -> Iterator[Import]:
        """Every rivet import of a module (``from m import x``: module ``m.x`` when that is a module)."""
        known = {*self.modules, "rivet._native"}
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                yield from (Import(node.lineno, a.name, None) for a in node.names if a.name.split(".")[0] == "rivet")
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*up, base] if base else up)
                if base.split(".")[0] == "rivet":
                    for a in node.names:
                        full = f"{base}.{a.name}"
                        yield Import(node.lineno, full if full in known else base, a.name)

    def all_imports(self) -> Iterator[tuple[str, Path, Import]]:
        for name, path in self.modules.items():
            for found in self.imports(name, path):
                yield name, path, found


def layer_of(module: str) -> str:
    first = module.split(".")[1] if "." in module else "__init__"
    return OWN_LAYER.get(first, first)


def database_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[2] if len(parts) > 2 and parts[1] == "sources" and parts[2] in DATABASES else None


def strays(tree: Tree) -> list[str]:
    return sorted(m for m in tree.modules if layer_of(m) not in LAYERS)


def upward_imports(tree: Tree) -> list[str]:
    rank = {layer: i for i, layer in enumerate(LAYERS)}
    return [
        f"{tree.shown(path)}:{i.line} ({layer_of(name)}) imports {i.module} ({layer_of(i.module)})"
        for name, path, i in tree.all_imports()
        if rank.get(layer_of(i.module), len(LAYERS)) > rank.get(layer_of(name), len(LAYERS))
    ]


def package_cycles(tree: Tree) -> list[list[str]]:
    graph: dict[str, set[str]] = defaultdict(set)
    for name, _, i in tree.all_imports():
        if layer_of(i.module) != layer_of(name):
            graph[layer_of(name)].add(layer_of(i.module))
    return cycles(graph)


def crossed_databases(tree: Tree) -> list[str]:
    return [
        f"{name} imports {i.module}"
        for name, _, i in tree.all_imports()
        if (own := database_of(name)) and (other := database_of(i.module)) and own != other
    ]


def database_imports_outside_sources(tree: Tree) -> list[str]:
    return [
        f"{tree.shown(path)}:{i.line} imports {i.shown}"
        for name, path, i in tree.all_imports()
        if layer_of(name) != "sources" and (database_of(i.module) or i.name in DATABASE_NAMES)
    ]


def kind_branches_outside_sources(tree: Tree) -> list[str]:
    found: dict[str, list[int]] = defaultdict(list)
    for name, path in tree.modules.items():
        if layer_of(name) != "sources":
            found[tree.shown(path)] += kind_branches(path)
    return [f"{file}:{lines}" for file, lines in found.items() if lines]


def kind_branches(path: Path) -> list[int]:
    """Lines that compare something with a database kind's name (``==``, ``in``, ``match``), or key a
    dict by it."""
    lines = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Compare):
            if any(n in DATABASES for o in [node.left, *node.comparators] for n in _constants(o)):
                lines.append(node.lineno)
        elif isinstance(node, ast.match_case) and any(n in DATABASES for n in _constants(node.pattern)):
            lines.append(node.pattern.lineno)
        elif isinstance(node, ast.Dict) and any(
            isinstance(k, ast.Constant) and k.value in DATABASES for k in node.keys
        ):
            lines.append(node.lineno)  # a table keyed by database: a branch written as data
    return sorted(lines)


def _constants(node: ast.AST) -> list[object]:
    return [c.value for c in ast.walk(node) if isinstance(c, ast.Constant)] + [
        c.value.value for c in ast.walk(node) if isinstance(c, ast.MatchValue) and isinstance(c.value, ast.Constant)
    ]


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


REAL = Tree(PACKAGE)


def test_every_module_belongs_to_a_layer() -> None:
    assert not strays(REAL), f"modules outside every layer of {LAYERS}: {strays(REAL)}"


def test_no_import_runs_up_a_layer() -> None:
    assert not upward_imports(REAL), "imports that run up a layer:\n" + "\n".join(upward_imports(REAL))


def test_no_cycle_between_packages() -> None:
    assert not package_cycles(REAL), f"package import cycles: {package_cycles(REAL)}"


def test_one_database_never_imports_another() -> None:
    assert not crossed_databases(REAL), "\n".join(crossed_databases(REAL))


def test_only_sources_branch_on_the_database_kind() -> None:
    wrong = kind_branches_outside_sources(REAL)
    assert not wrong, "branches on a database kind outside rivet.sources (ask SourceCapabilities):\n" + "\n".join(wrong)


def test_only_sources_import_a_database_of_their_own() -> None:
    """Outside rivet.sources, code reaches a database through the registry, never by its modules or sessions."""
    assert not database_imports_outside_sources(REAL), "\n".join(database_imports_outside_sources(REAL))


def test_every_check_finds_what_is_planted(tmp_path: Path) -> None:
    planted = {
        "rivet/__init__.py": "",
        "rivet/core/__init__.py": "",
        "rivet/core/leaf.py": "def f():\n    from rivet.app import top  # runs up\n",
        "rivet/app/__init__.py": "",
        "rivet/app/top.py": """\
            from rivet.core import leaf
            from rivet._native import PgSession
            from rivet.sources.postgres import dialect

            def g(kind):
                return kind == "mysql"

            BEGIN = {"postgres": "BEGIN READ ONLY"}
            """,
        "rivet/sources/__init__.py": "",
        "rivet/sources/postgres/__init__.py": "",
        "rivet/sources/postgres/dialect.py": "from rivet.sources.mysql import dialect\n",
        "rivet/sources/mysql/__init__.py": "",
        "rivet/sources/mysql/dialect.py": "",
        "rivet/stray/__init__.py": "",
    }
    for name, text in planted.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(textwrap.dedent(text))
    tree = Tree(tmp_path / "rivet")
    assert strays(tree) == ["rivet.stray"]
    assert upward_imports(tree) == ["rivet/core/leaf.py:2 (core) imports rivet.app.top (app)"]
    assert package_cycles(tree) == [["app", "core"]]
    assert crossed_databases(tree) == ["rivet.sources.postgres.dialect imports rivet.sources.mysql.dialect"]
    assert database_imports_outside_sources(tree) == [
        "rivet/app/top.py:2 imports rivet._native.PgSession",
        "rivet/app/top.py:3 imports rivet.sources.postgres.dialect",
    ]
    assert kind_branches_outside_sources(tree) == ["rivet/app/top.py:[6, 8]"]
