"""Lazy package exports: a package names the module each public name lives in, and loads it on first use.

Why lazy: ``geodistill.eval.names`` (metric names) must be importable without torch, and
``geodistill.platform.search.space`` without Ray Tune; a package ``__init__`` that imported its
modules eagerly would pull torch or Ray into every reader of those small modules.

Usage, in a package ``__init__``::

    _HOME = {"run_search": "driver", "SearchSpace": "space"}
    __all__ = sorted(_HOME)
    __getattr__, __dir__ = lazy_exports(__name__, _HOME)
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(
    package: str, home: Mapping[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The module-level ``__getattr__`` and ``__dir__`` (PEP 562) of ``package``.

    ``home`` maps each public name to the submodule (relative to ``package``) that defines it;
    the first access imports that submodule and caches the value on the package.
    """

    def __getattr__(name: str) -> Any:
        module = home.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{package}.{module}"), name)
        setattr(sys.modules[package], name, value)
        return value

    def __dir__() -> list[str]:
        return sorted({*vars(sys.modules[package]), *home})

    return __getattr__, __dir__
