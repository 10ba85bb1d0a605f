"""Help text a newcomer reads: every flag explains itself, top-level help names every action."""

from __future__ import annotations

import argparse

from geodistill.platform.cli import build_parser
from geodistill.platform.cli.flags import walk_parsers


def test_every_flag_and_positional_has_help():
    """Issue 29: --format, --seed, --cpus-per-trial, --embed-dim and `cluster validate FILE` had none."""
    missing = [
        f"{' '.join(path)} {action.option_strings or action.dest}"
        for path, parser in walk_parsers(build_parser())
        for action in parser._actions
        if not isinstance(action, argparse._HelpAction | argparse._SubParsersAction) and not action.help
    ]
    assert missing == []


def test_top_level_help_names_every_action_of_every_command(capsys):
    """Issue 29: `cluster rehearse` and `data organize` were missing from `geodistill --help`."""
    parser = build_parser()
    text = " ".join(parser.format_help().split())
    for path, _ in walk_parsers(parser):
        if len(path) == 2:
            assert f"{path[1]}:" in text, f"geodistill --help does not name `{' '.join(path)}`"


def test_a_mistyped_key_or_logger_is_one_line_said_once(capsys):
    """Issue 29: `train.epoch=3` got no "did you mean"; `--logger tensorbord` named the value twice."""
    from geodistill.platform.cli import main

    assert main(["train", "train.epoch=3"]) == 2
    assert capsys.readouterr().err == (
        "geodistill train: error: unknown config key train.epoch; did you mean train.epochs?\n"
    )
    assert main(["train", "zzz.qqq=1"]) == 2
    assert capsys.readouterr().err == "geodistill train: error: unknown config key zzz.qqq\n"
    assert main(["search", "--logger", "tensorbord"]) == 2
    err = capsys.readouterr().err
    assert err.count("tensorbord") == 1 and err.count("\n") == 1
