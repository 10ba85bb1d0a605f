"""`geodistill leaderboard show|compact` through the real CLI (and an unreadable file named by report too)."""

from __future__ import annotations

import csv
import io
import json

from geodistill.leaderboard import Leaderboard
from geodistill.platform.cli import main


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


def test_compact_keeps_rows(root, capsys):
    before = Leaderboard(root).read().sort("row_key")
    assert main(["leaderboard", "compact"]) == 0
    out = capsys.readouterr().out
    assert "a: 4 file(s) -> 1, 3 row(s)" in out and "b: 1 file(s) -> 1, 1 row(s)" in out
    assert len(Leaderboard(root).files()) == 2
    assert Leaderboard(root).read().sort("row_key").equals(before)


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


def test_show_names_a_missing_root_and_takes_leaderboard(root, tmp_path, capsys):
    """Issue 29: a root that does not exist is one line naming it (exit 2), not '(0 rows)';
    --leaderboard is accepted as in every other command."""
    missing = tmp_path / "nowhere"
    assert main(["leaderboard", "show", "--leaderboard", str(missing)]) == 2
    err = capsys.readouterr().err
    assert (
        err.startswith(f"geodistill leaderboard: error: no leaderboard at {missing}") and err.count("\n") == 1
    )
    assert "--leaderboard DIR" in err and "demo_out/leaderboard" in err
    assert main(["leaderboard", "compact", "--leaderboard", str(missing)]) == 2
    assert main(["leaderboard", "show", "--leaderboard", str(root), "--format", "csv"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 5  # header + 4 rows
