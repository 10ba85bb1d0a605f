"""Declared rules: what each bound, choice and text kind refuses, in the one line a user reads.

tests/reliability/test_fuzz_inputs.py fuzzes every declared key and flag through the CLI; these
tests pin the rule engine itself with hand-picked values and the exact words of each message.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field

import pytest

from geodistill.errors import ConfigError, UnknownBackboneError
from geodistill.schema import Rule, check_fields, declared_keys, dotted, path_problem, setting


def test_bounds_and_their_words():
    rule = Rule(ge=1, le=10)
    assert rule.allowed() == ">= 1 and <= 10"
    assert [rule.problem(v) for v in (1, 10, 5.5)] == [None, None, None]
    assert rule.problem(0) == rule.problem(11) == "must be >= 1 and <= 10"
    assert Rule(gt=0.0, lt=1.0).allowed() == "> 0 and < 1"
    assert Rule(gt=0.0, lt=1.0).problem(0.0) == "must be > 0 and < 1"
    assert Rule(ge=0).problem(math.nan) == "must be a finite number (>= 0)"
    assert Rule(le=5).problem(math.inf) == "must be a finite number (<= 5)"
    assert Rule().allowed() == "any value" and Rule().problem(10**30) is None


def test_choices_fixed_or_read_lazily():
    calls = []

    def registry():
        calls.append(1)
        return ("a", "b")

    lazy = Rule(choices=registry)
    assert calls == []  # declaring the rule reads nothing
    assert lazy.problem("c") == "must be one of a, b" and lazy.problem("a") is None
    assert Rule(choices=(2, 5, 10)).problem(3) == "must be one of 2, 5, 10"


def test_text_kinds(tmp_path):
    assert Rule().problem("  ") == "must not be empty" and Rule(allow_empty=True).problem("") is None
    assert Rule().problem("a\x00b") == "must not contain a NUL byte"
    name = Rule(kind="name")
    assert name.problem("exp-1.2+x_y") is None
    assert (
        name.problem("..")
        == name.problem("a/b")
        == "must be a plain name (letters, digits, '_', '-', '.', '+')"
    )
    (tmp_path / "f").write_text("x")
    assert Rule(kind="in_dir").problem(str(tmp_path / "f")) == "is not a directory"
    assert Rule(kind="in_file").problem(str(tmp_path)) == "is not a file"
    assert Rule(kind="in_path").problem(str(tmp_path / "nope")) == "does not exist"
    assert Rule(kind="in_path").problem(str(tmp_path / "nope"), filesystem=False) is None  # text only
    with pytest.raises(ValueError, match="unknown text kind 'folder'"):
        Rule(kind="folder")


def test_output_paths_must_be_creatable(tmp_path):
    (tmp_path / "f").write_text("x")
    assert path_problem(str(tmp_path / "new" / "deeper"), "out_dir") is None
    assert path_problem(str(tmp_path / "f"), "out_dir") == "is not a directory"
    assert (
        path_problem(str(tmp_path / "f" / "sub"), "out_dir")
        == f"cannot be created: {tmp_path / 'f'} is a file"
    )
    assert path_problem(str(tmp_path), "out_file") == "is a directory, not a file"
    assert path_problem("s3://bucket/tune", "store") is None
    if os.geteuid() != 0:  # root may write anywhere
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        assert path_problem(str(locked / "out"), "out_dir") == f"cannot be created: {locked} is not writable"


@dataclass
class _Inner:
    lr: float = setting(0.1, gt=0.0, le=1.0)
    backbone: str = setting("vit", validator=lambda v: None if v == "vit" else _unknown(v))


def _unknown(value):
    raise UnknownBackboneError(f"unknown backbone {value!r}")


@dataclass
class _Outer:
    epochs: int = setting(1, ge=1, le=100)
    root: str | None = setting(None, kind="in_dir")
    note: str = "free"
    inner: _Inner = field(default_factory=_Inner)


def test_check_fields_names_the_dotted_key_the_value_and_what_is_allowed():
    check_fields(_Outer())  # defaults pass; None is "unset", not checked
    with pytest.raises(ConfigError, match=r"^epochs must be >= 1 and <= 100; got 0$"):
        check_fields(_Outer(epochs=0))
    with pytest.raises(ConfigError, match=r"^cfg\.inner\.lr must be > 0 and <= 1; got 2\.0$"):
        check_fields(_Outer(inner=_Inner(lr=2.0)), "cfg.")
    with pytest.raises(UnknownBackboneError, match=r"^inner\.backbone: unknown backbone 'vat'$"):
        check_fields(_Outer(inner=_Inner(backbone="vat")))  # the validator's own error type is kept
    long = "x" * 100
    with pytest.raises(ConfigError, match=r"got 'x{76}\.\.\.$"):
        check_fields(_Outer(root=long + "\x00"))


def test_declared_keys_and_dotted():
    keys = declared_keys(_Outer)
    assert list(keys) == ["epochs", "root", "note", "inner.lr", "inner.backbone"]
    assert keys["epochs"][1] == Rule(ge=1, le=100) and keys["note"] == (str, None)
    assert dotted({"train": {"lr": 1, "opt": {}}, "seed": 0}) == {"train.lr": 1, "train.opt": {}, "seed": 0}
    assert dotted({"a.b": 1}, "x.") == {"x.a.b": 1}
