"""No import circle among geodistill's modules, read statically from the AST (nothing is imported).

Every import counts as an edge, including imports inside functions and under ``TYPE_CHECKING``:
a lazy import still makes the two modules depend on each other (the circle
``search/trial.py -> train_driver.py -> tracking.py -> search/trial.py`` was made of function-level
imports), and a type-only import is a dependency a reader has to follow. ``from PACKAGE import
NAME`` is an edge to ``PACKAGE.NAME`` when that is a module, else to the package's ``__init__``.
Package ``__init__`` modules that only re-export their own submodules are not edges back: a
module importing a sibling through its package would otherwise always look circular.
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "src" / "geodistill"


def module_files(package_dir: Path) -> dict[str, Path]:
    """Dotted module name -> file, for every module under ``package_dir``."""
    out = {}
    for path in package_dir.rglob("*.py"):
        parts = list(path.relative_to(package_dir.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def import_graph(package_dir: Path) -> dict[str, set[str]]:
    """Module -> the geodistill modules it imports (anywhere in its file)."""
    modules = module_files(package_dir)
    root = package_dir.name
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        is_package = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text())):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = name.split(".") if is_package else name.split(".")[:-1]
                    base = base[: len(base) - node.level + 1]
                    target = ".".join([*base, node.module] if node.module else base)
                else:
                    target = node.module or ""
                subs = [f"{target}.{alias.name}" for alias in node.names]
                targets = [sub for sub in subs if sub in modules] or [target]
            for target in targets:
                while target and target not in modules:  # `import a.b.c` of a name in a.b
                    target = target.rpartition(".")[0]
                if target.split(".")[0] == root and target != name:
                    if is_package and target.startswith(name + "."):
                        continue  # a package re-exporting its own submodule
                    graph[name].add(target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One circle per strongly connected component of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_import_circle_among_geodistill_modules():
    found = cycles(import_graph(PACKAGE))
    assert not found, "modules that import each other (directly or around a circle):\n" + "\n".join(
        " <-> ".join(c) for c in found
    )


def test_the_checker_finds_a_circle_through_a_function_level_import(tmp_path):
    """A checker that cannot fail proves nothing: a three-module circle closed inside a function."""
    pkg = tmp_path / "geodistill"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("from geodistill.sub import a\n")  # re-export: no edge
    (pkg / "sub" / "a.py").write_text("from geodistill.sub.b import f\n")
    (pkg / "sub" / "b.py").write_text("from . import c\n")
    (pkg / "sub" / "c.py").write_text("def g():\n    from geodistill.sub.a import h\n")
    (pkg / "d.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from geodistill import e\n"
    )
    (pkg / "e.py").write_text("import geodistill.d\n")
    graph = import_graph(pkg)
    assert graph["geodistill.sub.b"] == {"geodistill.sub.c"}
    assert sorted(cycles(graph)) == [
        ["geodistill.d", "geodistill.e"],
        ["geodistill.sub.a", "geodistill.sub.b", "geodistill.sub.c"],
    ]
