"""`geodistill eval`: the checkpoint's evaluation reproduces training's, its table and cost, one-line errors."""

from __future__ import annotations

import json

import pytest

from geodistill.platform.cli import main


def test_eval_of_the_checkpoint_reproduces_the_training_evaluation(trained, capsys):
    out, payload = trained
    # Run dir -> latest epoch; dataset, views, fps and size from the checkpoint's config.
    assert main(["eval", "--checkpoint", str(out / "cli"), "--json"]) == 0
    evaluated = json.loads(capsys.readouterr().out)
    assert (evaluated["views"], evaluated["fps"], evaluated["elevation"], evaluated["img_size"]) == (
        1,
        2,
        45,
        32,
    )
    assert evaluated["data"] == str(out / "data" / "synth_8_0")
    for key, value in evaluated["metrics"].items():
        assert value == pytest.approx(payload["metrics"][key], abs=1e-6), key
    assert evaluated["cost"] is None
    # The checkpoint may also be given positionally, as `geodistill eval CHECKPOINT`.
    assert main(["eval", str(out / "cli"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["metrics"] == evaluated["metrics"]


def test_eval_table_and_profile(trained, capsys):
    out, _ = trained
    assert (
        main(
            [
                "eval",
                "--checkpoint",
                str(out / "cli" / "checkpoints" / "epoch_0001"),
                "--profile",
                "--views",
                "2",
            ]
        )
        == 0
    )
    text = capsys.readouterr().out
    lines = text.splitlines()
    assert "(epoch 1)" in lines[0] and "2 view(s)" in lines[0]
    assert lines[1].split() == ["direction", "R@1", "R@5", "R@10", "R@top1%", "AP"]
    assert lines[2].startswith("drone->satellite") and lines[3].startswith("satellite->drone")
    assert "GFLOPs" in lines[4] and "M params" in lines[4]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["eval"], "geodistill eval: error: give --checkpoint PATH or --video2bev FILE"),
        (["eval", "--checkpoint", "/nonexistent/ckpt"], "geodistill eval: error: "),
        (["eval", "--views", "0", "x"], "geodistill eval: error: argument --views: must be >= 1"),
    ],
)
def test_user_errors_exit_2_with_one_line(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(message), err
    assert len(err.splitlines()) == 1
    assert not (tmp_path / "runs").exists()  # nothing started
