"""`geodistill demo`: its flags and what it asks the demo pipeline for; the run itself is in test_demo_pipeline.py."""

from __future__ import annotations

import pytest

from geodistill.platform import demo_pipeline
from geodistill.platform.cli import main


@pytest.fixture
def asked(monkeypatch) -> list[dict]:
    """What the command passes to ``run_demo`` (the pipeline itself runs in tests/platform/test_demo_pipeline.py)."""
    calls: list[dict] = []
    monkeypatch.setattr(demo_pipeline, "run_demo", lambda out, **kw: calls.append({"out": out, **kw}))
    return calls


def test_the_default_and_the_smoke_plan(asked, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["demo"]) == 0
    assert main(["demo", "--smoke-test", "--out", "x", "--seed", "3", "--address", "127.0.0.1:6379"]) == 0
    assert asked == [
        {"out": "demo_out", "plan": demo_pipeline.FULL, "seed": 0, "address": None},
        {"out": "x", "plan": demo_pipeline.SMOKE, "seed": 3, "address": "127.0.0.1:6379"},
    ]
    assert demo_pipeline.SMOKE != demo_pipeline.FULL


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["demo", "--seed", "-1"],
            "geodistill demo: error: argument --seed: must be >= 0 and <= 4294967295; got -1",
        ),
        (
            ["demo", "--out", "a_file"],
            "geodistill demo: error: argument --out: is not a directory; got 'a_file'",
        ),
        (["demo", "--address", ""], "geodistill demo: error: argument --address: must not be empty"),
    ],
)
def test_user_errors_exit_2_with_one_line_before_anything_runs(
    argv, message, asked, tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a_file").write_text("x")
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(message) and "\n" not in err, err
    assert asked == [] and sorted(p.name for p in tmp_path.iterdir()) == ["a_file"]
