"""`geodistill report`: the page of an experiment from the leaderboard, its smoke test, an unknown experiment."""

from __future__ import annotations

import pytest

from geodistill.platform.cli import main


def test_report_writes_the_page_of_one_experiment(root, tmp_path, capsys):
    assert main(["report", "--out", str(tmp_path / "rep"), "--experiment", "a", "--no-anchors"]) == 0
    assert (tmp_path / "rep" / "report.html").is_file() and (tmp_path / "rep" / "pareto.svg").is_file()
    md = (tmp_path / "rep" / "report.md").read_text()
    assert "3 runs (failed: 1, ok: 2); 2 finished with d2s_recall1 and GFLOPs" in md
    assert "; 2 on the Pareto front;" in md
    assert main(["report", "--out", str(tmp_path / "rep2"), "--experiment", "zzz"]) == 2
    assert "no rows in experiment 'zzz'" in capsys.readouterr().err


def test_report_smoke_test_writes_thirteen_synthetic_runs(tmp_path, capsys):
    assert main(["report", "--smoke-test", "--out", str(tmp_path / "rep")]) == 0
    md = (tmp_path / "rep" / "report.md").read_text()
    assert "13 runs (failed: 1, ok: 12)" in md and "report-smoke" in md


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["report"], "geodistill report: error: the following arguments are required: --out"),
        (
            ["report", "--out", "r", "--metric", "recall"],
            "geodistill report: error: argument --metric: must be one of",
        ),
        (
            ["report", "--out", "r", "--experiment", "../x"],
            "geodistill report: error: argument --experiment: must be a plain name",
        ),
    ],
)
def test_user_errors_exit_2_with_one_line(argv, message, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(message) and "\n" not in err, err
    assert not (tmp_path / "r").exists()
