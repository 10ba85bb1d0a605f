"""Declared CLI flags: text to a checked value, argparse errors in one line, and the parser walk."""

from __future__ import annotations

import argparse

import pytest

from geodistill.platform.cli import build_parser
from geodistill.platform.cli.flags import (
    FlagType,
    OneLineParser,
    add_leaderboard_flag,
    flag,
    free_form,
    value_actions,
    walk_parsers,
)
from geodistill.schema import Rule


def test_flag_types_parse_then_check_the_rule():
    assert flag(int, ge=1, le=8)(" 3 ") == 3
    assert flag(float, gt=0.0)("1e-3") == pytest.approx(0.001)
    assert flag(choices=("a", "b"))("b") == "b"
    cases = [
        (flag(int, ge=1), "2.5", "'2.5' is not an integer (>= 1)"),
        (flag(int, ge=1), "0", "must be >= 1; got 0"),
        (flag(float, le=1.0), "nan", "'nan' is not a finite number (<= 1)"),
        (flag(float, le=1.0), "x", "'x' is not a number (<= 1)"),
        (flag(choices=("a", "b")), "c", "must be one of a, b; got 'c'"),
        (flag(kind="name"), "a/b", "must be a plain name (letters, digits, '_', '-', '.', '+'); got 'a/b'"),
    ]
    for parse, text, message in cases:
        with pytest.raises(argparse.ArgumentTypeError) as err:
            parse(text)
        assert str(err.value) == message
    with pytest.raises(ValueError, match="flag base type must be int, float or str"):
        FlagType(bool, Rule())


def test_one_line_parser_errors_exit_2_with_one_line(capsys):
    parser = OneLineParser(prog="geodistill x")
    parser.add_argument("--n", type=flag(int, ge=1), choices=None)
    with pytest.raises(SystemExit) as exit_:
        parser.parse_args(["--n", "0"])
    assert exit_.value.code == 2
    assert capsys.readouterr().err == (
        "geodistill x: error: argument --n: must be >= 1; got 0 (see geodistill x --help)\n"
    )
    sub = parser.add_subparsers(dest="cmd")
    child = sub.add_parser("child")
    assert isinstance(child, OneLineParser)  # subparsers inherit the one-line errors


def test_walk_parsers_and_value_actions_see_every_command():
    parser = build_parser()
    paths = [path for path, _ in walk_parsers(parser)]
    assert paths[0] == () and ("cluster", "validate") in paths and ("leaderboard", "show") in paths
    demo = dict(walk_parsers(parser))[("demo",)]
    assert sorted(a.dest for a in value_actions(demo)) == ["address", "out", "seed"]  # not --smoke-test
    train = dict(walk_parsers(parser))[("train",)]
    free = [a.dest for a in value_actions(train) if free_form(a)]
    assert free == ["overrides"]


def test_the_leaderboard_flag_is_declared_once_with_its_names():
    parser = OneLineParser(prog="p")
    add_leaderboard_flag(parser, "--root", "--leaderboard", dest="root")
    assert parser.parse_args(["--leaderboard", "s3://b/lb"]).root == "s3://b/lb"
    assert parser.parse_args(["--root", "lb"]).root == "lb"
    (action,) = [a for a in parser._actions if a.dest == "root"]
    assert action.option_strings == ["--root", "--leaderboard"] and action.type.rule.kind == "store"
