"""`geodistill search` argument errors end in one line and exit 2, before Ray starts."""

from __future__ import annotations

from pathlib import Path

import pytest

from geodistill.platform.cli import main

REPO = Path(__file__).resolve().parents[4]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["search"], "search_space=NAME is required"),
        (["search", "search_space=nope"], "unknown search space 'nope'"),
        (["search", "search_space=smoke", "oops"], "expected search_space=NAME or key=value, got 'oops'"),
        (["search", "search_space=smoke", "train.colour=red"], "train.colour"),
        (
            ["search", "search_space=smoke", "--sampler", "grid"],
            "argument --sampler: must be one of tpe, gp, nsga2, random",
        ),
        (
            ["search", "search_space=smoke", "--metric", "accuracy"],
            "argument --metric: must be one of d2s_recall1",
        ),
        (["search", "search_space=smoke", "--num-samples", "0"], "argument --num-samples: must be >= 1"),
        (["search", "search_space=smoke"], "trains students: give --teacher CHECKPOINT"),
        (["search", "search_space=smoke", "--teacher", "/nonexistent/ckpt"], "teacher checkpoint not found"),
        (["search", "search_space=smoke", "--teacher", "nosuch://b/t"], "cannot open nosuch://b/t"),
        (
            ["search", "search_space=smoke", "--experiment", "a/b"],
            "argument --experiment: must be a plain name",
        ),
    ],
)
def test_search_errors_are_one_line_and_exit_2(argv, message, capsys, monkeypatch, tmp_path):
    monkeypatch.chdir(REPO)
    argv = [*argv, "--storage", str(tmp_path / "tune"), "--leaderboard", str(tmp_path / "lb")]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("geodistill search: error: ")
    assert message in err[0]


def test_bad_space_file_is_rejected_by_the_cli(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("params:\n  train.lr: {type: loguniform, low: 0, high: 1}\n")
    assert main(["search", f"search_space={bad}", "--storage", str(tmp_path / "tune")]) == 2
    err = capsys.readouterr().err.strip()
    assert (
        err
        == "geodistill search: error: search space bad: params.train.lr: a log-scale bound must be > 0; got low=0"
    )
