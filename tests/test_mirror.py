"""Tests mirror the source: a module with logic has its test file at the path its name gives.

A module "with logic" defines at least one function or class at its top level (``def``,
``async def`` or ``class``); re-export ``__init__`` files and ``__main__`` shims have none.
Its mirror is ``tests/<package>/test_<module>.py`` (``src/geodistill/train/loop.py`` ->
``tests/train/test_loop.py``). A package's ``__init__.py`` is the module its folder names, so
``platform/cli/__init__.py`` mirrors to ``tests/platform/test_cli.py`` (a module that grows into
a package keeps its test file). At least ``THRESHOLD`` of the modules must have one; the
failure lists the ones that do not.
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "src" / "geodistill"
TESTS = REPO / "tests"
THRESHOLD = 0.90


def has_logic(source: str) -> bool:
    """True when the module defines a function or a class at its top level."""
    defs = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
    return any(isinstance(node, defs) for node in ast.parse(source).body)


def mirror_path(module: Path, package: Path = PACKAGE, tests: Path = TESTS) -> Path:
    """Where the test file of ``module`` (a .py file under ``package``) belongs."""
    rel = module.relative_to(package)
    if rel.name == "__init__.py":  # the package's own module: named by its folder
        rel = rel.parent.with_suffix(".py") if rel.parent.parts else Path(f"{package.name}.py")
    return tests / rel.parent / f"test_{rel.stem}.py"


def modules_with_logic(package: Path = PACKAGE) -> list[Path]:
    return [p for p in sorted(package.rglob("*.py")) if has_logic(p.read_text())]


def missing_mirrors(package: Path = PACKAGE, tests: Path = TESTS) -> tuple[list[Path], int]:
    """(modules with logic that have no mirror test file, how many modules have logic)."""
    modules = modules_with_logic(package)
    missing = [m for m in modules if not mirror_path(m, package, tests).is_file()]
    return missing, len(modules)


def test_modules_with_logic_have_a_mirror_test_file():
    missing, total = missing_mirrors()
    covered = (total - len(missing)) / total
    lines = [f"  {m.relative_to(REPO)} -> {mirror_path(m).relative_to(REPO)}" for m in missing]
    assert covered >= THRESHOLD, (
        f"{total - len(missing)} of {total} modules with logic ({covered:.0%}) have their mirror "
        f"test file; at least {THRESHOLD:.0%} must. Missing:\n" + "\n".join(lines)
    )


def test_the_rule_counts_and_maps_by_hand(tmp_path):
    """A tiny package: three modules with logic, two without; one mirror present -> 1 of 3."""
    pkg, tests = tmp_path / "src" / "geodistill", tmp_path / "tests"
    (pkg / "data").mkdir(parents=True)
    (pkg / "__init__.py").write_text("from .data import x\n__all__ = ['x']\n")
    (pkg / "data" / "__init__.py").write_text("def helper():\n    return 1\n")
    (pkg / "data" / "index.py").write_text("class Index:\n    pass\n")
    (pkg / "data" / "shim.py").write_text("X = 1\nif X:\n    import os\n")
    (pkg / "errors.py").write_text("async def f():\n    pass\n")
    (tests / "data").mkdir(parents=True)
    (tests / "data" / "test_index.py").write_text("")
    (tests / "data" / "test_shim.py").write_text("")  # a mirror of a module without logic counts for nothing

    missing, total = missing_mirrors(pkg, tests)
    assert total == 3
    assert [m.relative_to(pkg).as_posix() for m in missing] == ["data/__init__.py", "errors.py"]
    assert mirror_path(pkg / "data" / "__init__.py", pkg, tests) == tests / "test_data.py"
    assert mirror_path(pkg / "__init__.py", pkg, tests) == tests / "test_geodistill.py"
    assert mirror_path(pkg / "errors.py", pkg, tests) == tests / "test_errors.py"
