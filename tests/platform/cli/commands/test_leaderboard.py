"""`geodistill leaderboard show|compact` and `geodistill report` through the real CLI."""

from __future__ import annotations

import csv
import io
import json

import pytest

from geodistill.leaderboard import Leaderboard, make_row
from geodistill.platform.cli import main


@pytest.fixture()
def root(tmp_path, monkeypatch):
    lb = Leaderboard(tmp_path / "lb")
    rows = [
        make_row(
            experiment="a", trial_id="t1", stage="student", backbone="resnet18", d2s_recall1=40.0, gflops=2.0
        ),
        make_row(
            experiment="a", trial_id="t2", stage="student", backbone="vit_tiny", d2s_recall1=60.0, gflops=4.0
        ),
        make_row(experiment="a", trial_id="t3", stage="student", status="failed", error="worker died"),
        make_row(
            experiment="b", trial_id="t1", stage="teacher", backbone="vit_small", d2s_recall1=70.0, gflops=9.0
        ),
    ]
    for r in rows:
        lb.write([r])
    lb.write(
        [
            make_row(
                experiment="a",
                trial_id="t1",
                stage="student",
                backbone="resnet18",
                d2s_recall1=45.0,
                gflops=2.0,
            )
        ]
    )
    monkeypatch.setenv("GEODISTILL_LEADERBOARD", str(tmp_path / "lb"))
    return tmp_path / "lb"


def test_show_sorts_filters_and_formats(root, capsys):
    assert main(["leaderboard", "show", "--experiment", "a", "--sort", "recall@1", "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["trial_id"], r["d2s_recall1"]) for r in rows] == [("t2", 60.0), ("t1", 45.0), ("t3", None)]
    assert main(["leaderboard", "show", "--sort", "gflops", "--top", "2", "--format", "csv"]) == 0
    parsed = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [(r["experiment"], r["trial_id"], r["gflops"]) for r in parsed] == [
        ("a", "t1", "2.0"),
        ("a", "t2", "4.0"),
    ]
    assert (
        main(["leaderboard", "show", "--root", str(root), "--format", "md", "--columns", "trial_id,status"])
        == 0
    )
    md = capsys.readouterr().out.splitlines()
    assert md[0] == "| trial_id | status |" and md[1] == "|---|---|" and len(md) == 6
    assert main(["leaderboard", "show"]) == 0
    table = capsys.readouterr().out
    assert table.splitlines()[0].split()[:4] == ["experiment", "trial_id", "stage", "status"]
    assert table.splitlines()[2].split()[:2] == ["b", "t1"] and "(4 rows)" in table


def test_show_user_errors(root, capsys):
    assert main(["leaderboard", "show", "--sort", "recall"]) == 2
    assert capsys.readouterr().err.startswith("geodistill leaderboard: error: unknown --sort column 'recall'")
    assert main(["leaderboard", "show", "--columns", "nope"]) == 2
    assert "unknown column(s) nope" in capsys.readouterr().err


def test_compact_keeps_rows_and_report_writes_the_page(root, tmp_path, capsys):
    before = Leaderboard(root).read().sort("row_key")
    assert main(["leaderboard", "compact"]) == 0
    out = capsys.readouterr().out
    assert "a: 4 file(s) -> 1, 3 row(s)" in out and "b: 1 file(s) -> 1, 1 row(s)" in out
    assert len(Leaderboard(root).files()) == 2
    assert Leaderboard(root).read().sort("row_key").equals(before)
    assert main(["report", "--out", str(tmp_path / "rep"), "--experiment", "a", "--no-anchors"]) == 0
    assert (tmp_path / "rep" / "report.html").is_file() and (tmp_path / "rep" / "pareto.svg").is_file()
    md = (tmp_path / "rep" / "report.md").read_text()
    assert "3 runs (failed: 1, ok: 2); 2 finished with d2s_recall1 and GFLOPs" in md
    assert "; 2 on the Pareto front;" in md
    assert main(["report", "--out", str(tmp_path / "rep2"), "--experiment", "zzz"]) == 2
    assert "no rows in experiment 'zzz'" in capsys.readouterr().err


def test_smoke_tests_of_report_and_regress(tmp_path, capsys):
    import torch

    assert main(["report", "--smoke-test", "--out", str(tmp_path / "rep")]) == 0
    md = (tmp_path / "rep" / "report.md").read_text()
    assert "13 runs (failed: 1, ok: 12)" in md and "report-smoke" in md
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert main(["regress", "--smoke-test", "--leaderboard", str(tmp_path / "lb")]) == 0
    finally:
        torch.set_num_threads(threads)
    out = capsys.readouterr().out
    assert "REGRESSED" not in out and out.count(" ok\n") == 6
    assert Leaderboard(tmp_path / "lb").keys() == {"regress-smoke/smoke/baseline"}


def test_show_report_and_compact_name_an_unreadable_file_on_stderr(root, tmp_path, capsys):
    bad = tmp_path / "lb" / "experiment=a" / "part-truncated.parquet"
    bad.write_bytes(b"PAR1 cut short")
    for argv in (
        ["leaderboard", "show", "--root", str(tmp_path / "lb")],
        ["leaderboard", "compact", "--root", str(tmp_path / "lb"), "--experiment", "a"],
        ["report", "--root", str(tmp_path / "lb"), "--out", str(tmp_path / "rep"), "--no-anchors"],
    ):
        assert main(argv) == 0, argv
        err = capsys.readouterr().err
        line = next(ln for ln in err.splitlines() if "part-truncated.parquet" in ln)
        assert line.startswith(f"geodistill {argv[0]}: warning: leaderboard "), argv
    assert bad.exists()
