"""PEP 562 lazy exports: a name's module is imported on first access, cached, and listed by dir()."""

from __future__ import annotations

import sys

import pytest

from geodistill.lazy import lazy_exports


@pytest.fixture
def package(tmp_path, monkeypatch):
    """A throwaway package ``lazypkg`` whose ``__init__`` exports ``answer`` from ``heavy`` lazily."""
    pkg = tmp_path / "lazypkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text(
        "from geodistill.lazy import lazy_exports\n"
        "_HOME = {'answer': 'heavy', 'missing': 'heavy'}\n"
        "__getattr__, __dir__ = lazy_exports(__name__, _HOME)\n"
    )
    (pkg / "heavy.py").write_text("LOADS = []\nLOADS.append(1)\nanswer = 42\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "lazypkg"
    for name in [n for n in sys.modules if n == "lazypkg" or n.startswith("lazypkg.")]:
        del sys.modules[name]


def test_the_module_loads_on_first_access_and_the_value_is_cached(package):
    import lazypkg

    assert "lazypkg.heavy" not in sys.modules  # importing the package loads nothing yet
    assert "answer" in dir(lazypkg) and "_HOME" in dir(lazypkg)
    assert lazypkg.answer == 42
    assert sys.modules["lazypkg.heavy"].LOADS == [1]
    assert vars(lazypkg)["answer"] == 42  # cached on the package: __getattr__ is not asked again
    from lazypkg import answer

    assert answer == 42 and sys.modules["lazypkg.heavy"].LOADS == [1]


def test_unknown_names_raise_attribute_error(package):
    import lazypkg

    with pytest.raises(AttributeError, match=r"^module 'lazypkg' has no attribute 'nope'$"):
        lazypkg.nope  # noqa: B018
    with pytest.raises(AttributeError, match="missing"):  # declared, but its home lacks it
        lazypkg.missing  # noqa: B018
    assert not hasattr(lazypkg, "nope")


def test_dir_lists_declared_names_before_loading():
    import geodistill.eval  # noqa: F401

    getattr_, dir_ = lazy_exports("geodistill.eval", {"zzz_not_loaded": "names"})
    assert "zzz_not_loaded" in dir_() and dir_() == sorted(dir_())
    with pytest.raises(AttributeError):
        getattr_("zzz_not_loaded")  # eval.names has no such name: its home is asked, not guessed
