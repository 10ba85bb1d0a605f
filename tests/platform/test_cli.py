"""The `geodistill` entry point: help lists every subcommand, exit codes of each way a command ends."""

from __future__ import annotations

import subprocess
import sys
import warnings

import pytest

from geodistill import __version__
from geodistill.errors import ConfigError, RegressionFailure
from geodistill.platform.cli import COMMAND_MODULES, main
from geodistill.platform.cli.commands import demo


def test_top_level_help_lists_every_subcommand_in_order(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    commands = out.split("COMMAND")[-1].splitlines()[1:]
    # one line per subcommand at four spaces; its help may wrap onto deeper-indented lines
    listed = [line.split()[0] for line in commands if line.startswith("    ") and line[4] != " "]
    assert listed == COMMAND_MODULES
    assert len(COMMAND_MODULES) == 11 and "search" in listed and "demo" in listed
    assert main([]) == 0 and "usage: geodistill" in capsys.readouterr().out  # no command: the help


def test_unknown_command_and_version(capsys):
    assert main(["trian"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("geodistill: error: argument COMMAND: invalid choice: 'trian'")
    assert err.endswith("(see geodistill --help)\n") and err.count("\n") == 1
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"geodistill {__version__}"


def _ending(monkeypatch, outcome):
    def run(args):
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome()

    monkeypatch.setattr(demo, "_run", run)  # the command's body; main and its parser are real


@pytest.mark.parametrize(
    ("outcome", "code", "stderr"),
    [
        (
            ConfigError("train.lr must be > 0; got 0"),
            2,
            "geodistill demo: error: train.lr must be > 0; got 0\n",
        ),
        (
            RegressionFailure("1 of 3 checks regressed: x"),
            1,
            "geodistill demo: REGRESSION: 1 of 3 checks regressed: x\n",
        ),
        (KeyboardInterrupt(), 130, "geodistill demo: interrupted\n"),
    ],
)
def test_how_a_command_ends_sets_the_exit_code_and_one_stderr_line(
    monkeypatch, capsys, outcome, code, stderr
):
    monkeypatch.delenv("GEODISTILL_DEBUG", raising=False)
    _ending(monkeypatch, outcome)
    assert main(["demo"]) == code
    assert capsys.readouterr().err == stderr


def test_debug_shows_the_traceback_of_a_user_error(monkeypatch):
    monkeypatch.setenv("GEODISTILL_DEBUG", "1")
    _ending(monkeypatch, ConfigError("bad"))
    with pytest.raises(ConfigError, match="^bad$"):
        main(["demo"])


def test_geodistills_own_warnings_are_one_line_each(monkeypatch, capsys):
    class GeodistillWarning(UserWarning):
        __module__ = "geodistill.leaderboard.store"

    def warn():
        warnings.warn("cannot read part-1.parquet", GeodistillWarning, stacklevel=1)
        return None

    _ending(monkeypatch, warn)
    assert main(["demo"]) == 0
    assert capsys.readouterr().err == "geodistill demo: warning: cannot read part-1.parquet\n"


def test_the_console_script_exits_with_mains_code():
    done = subprocess.run(
        [sys.executable, "-m", "geodistill", "nope"], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 2 and done.stderr.count("\n") == 1
    assert "invalid choice: 'nope'" in done.stderr
