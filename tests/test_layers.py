"""The layer rules run as a test: every import in src/geodistill is checked against the layer map.

The map lives in pyproject.toml (``[tool.geodistill.layers]``); this file only reads it. Imports
inside functions count too: a lazy import still ties the layers together.
"""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "src" / "geodistill"


def layer_map() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["geodistill"]["layers"]


def imported_modules(source: str, module: str) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in ``source`` (relative ones resolved)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")[: -node.level]
                name = ".".join([*base, node.module] if node.module else base)
            else:
                name = node.module or ""
            found.append((node.lineno, name))
    return found


def violations(package_dir: Path, layers: dict) -> list[str]:
    """One line per import that crosses the layer map, for every module under ``package_dir``."""
    allowed, shared, ray_ok = layers["may_import"], set(layers["shared"]), set(layers["ray"])
    root = package_dir.name
    problems = []
    for path in sorted(package_dir.rglob("*.py")):
        rel = path.relative_to(package_dir)
        if len(rel.parts) == 1:  # package root (__init__, __main__, errors): the entry points
            continue
        layer = rel.parts[0]
        module = ".".join([root, *rel.with_suffix("").parts])
        for line, name in imported_modules(path.read_text(), module):
            parts = name.split(".")
            where = f"{path.relative_to(package_dir.parent)}:{line}"
            if parts[0] == "ray" and layer not in ray_ok:
                problems.append(f"{where}: {layer} imports {name} (only {sorted(ray_ok)} may import Ray)")
            if parts[0] != root or len(parts) < 2:
                continue
            target = parts[1]
            if target == layer or target in shared:
                continue
            if layer not in allowed:
                problems.append(f"{where}: package {layer!r} is not in the layer map")
            elif target not in allowed[layer]:
                problems.append(f"{where}: {layer} imports {name} ({layer} may import {allowed[layer]})")
    return problems


def test_every_package_is_in_the_layer_map():
    layers = layer_map()
    packages = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()}
    assert packages == set(layers["may_import"]), "add new packages to [tool.geodistill.layers]"


def test_no_import_crosses_the_layer_order():
    problems = violations(PACKAGE, layer_map())
    assert not problems, "imports that cross the layer map:\n" + "\n".join(problems)


def test_the_checker_catches_a_crossing(tmp_path):
    """A checker that cannot fail proves nothing: build a tiny package that breaks each rule."""
    pkg = tmp_path / "geodistill"
    for layer in ("data", "models", "platform"):
        (pkg / layer).mkdir(parents=True)
        (pkg / layer / "__init__.py").write_text("")
    (pkg / "data" / "bad.py").write_text("def f():\n    from geodistill.models import x\n    import ray\n")
    (pkg / "models" / "ok.py").write_text("from geodistill.data import y\nfrom . import z\n")
    (pkg / "platform" / "fine.py").write_text("import ray.tune\nfrom geodistill.models import w\n")
    layers = {
        "shared": [],
        "ray": ["platform"],
        "may_import": {"data": [], "models": ["data"], "platform": ["data", "models"]},
    }
    problems = violations(pkg, layers)
    assert len(problems) == 2, problems
    assert "data imports geodistill.models" in problems[0] and "bad.py:2" in problems[0]
    assert "data imports ray" in problems[1] and "bad.py:3" in problems[1]


@pytest.mark.parametrize(
    ("source", "module", "expected"),
    [
        ("from . import a", "geodistill.eval.metrics", "geodistill.eval"),
        ("from ..models import b", "geodistill.eval.metrics", "geodistill.models"),
        ("import geodistill.data.synth as s", "geodistill.eval.metrics", "geodistill.data.synth"),
    ],
)
def test_relative_imports_are_resolved(source, module, expected):
    assert imported_modules(source, module) == [(1, expected)]
