"""`geodistill train` / `geodistill eval`: results, the eval/train agreement, exit codes and one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from geodistill.platform.cli import main


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, dict]:
    """One smoke teacher trained through the CLI (JSON output), shared by the eval tests."""
    out = tmp_path_factory.mktemp("cli_runs")
    capture = subprocess.run(
        [
            sys.executable,
            "-m",
            "geodistill",
            "train",
            "--smoke-test",
            "--json",
            f"output_dir={out}",
            "run_name=cli",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "GEODISTILL_LEADERBOARD": str(out / "leaderboard")},
    )
    assert capture.returncode == 0, capture.stderr[-2000:]
    return out, json.loads(capture.stdout)


def test_train_writes_its_leaderboard_row(trained):
    from geodistill.leaderboard import Leaderboard

    out, payload = trained
    rows = Leaderboard(out / "leaderboard").read()
    assert rows["row_key"].to_list() == [payload["leaderboard_row"]] == ["default/cli/teacher"]
    row = rows.row(0, named=True)
    assert row["status"] == "ok" and row["backbone"] == "vit_tiny" and row["img_size"] == 32
    assert row["d2s_recall1"] == pytest.approx(payload["metrics"]["d2s_recall1"])
    assert row["gflops"] > 0 and row["checkpoint_uri"] == payload["checkpoint"]


def test_train_smoke_reports_metrics_and_a_loadable_checkpoint(trained):
    out, payload = trained
    assert payload["run_name"] == "cli" and payload["epochs_done"] == 1 and not payload["stopped_early"]
    assert payload["checkpoint"] == str(out / "cli" / "checkpoints" / "epoch_0001")
    assert (
        payload["config"]["model"]["backbone"] == "vit_tiny" and payload["config"]["data"]["img_size"] == 32
    )
    for key in ("loss", "d2s_recall1", "d2s_ap", "s2d_recall1", "s2d_ap"):
        assert key in payload["metrics"]
    assert 0.0 <= payload["metrics"]["d2s_recall1"] <= 100.0
    logged = [json.loads(line) for line in (out / "cli" / "metrics.jsonl").read_text().splitlines()]
    assert [row["epoch"] for row in logged] == [1.0]
    assert logged[0]["d2s_ap"] == pytest.approx(payload["metrics"]["d2s_ap"])


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


def test_train_summary_and_table_in_text_mode(trained, capsys):
    out, _ = trained  # same output dir: the synthetic set is reused
    argv = ["train", "--smoke-test", f"output_dir={out}", "run_name=txt", "train.max_steps_per_epoch=1"]
    assert main([*argv, "--leaderboard", str(out / "lb_txt")]) == 0
    text = capsys.readouterr().out
    assert text.startswith("run txt: stage teacher, in-process, strategy ddp")
    assert "direction" in text and "drone->satellite" in text
    assert text.rstrip().endswith(
        f"checkpoint: {out / 'txt' / 'checkpoints' / 'epoch_0001'}\nleaderboard row: default/txt/teacher"
    )


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["train", "model.foo=1"], "geodistill train: error: unknown config key model.foo"),
        (["train", "train.lr=="], "geodistill train: error: bad override: 'train.lr=='"),
        (["train", "model=nope"], "geodistill train: error: unknown model option 'nope'; available:"),
        (
            ["train", "model.backbone=vit_huge"],
            "geodistill train: error: model.backbone: unknown backbone 'vit_huge': not in timm.list_models() nor an alias; known:",
        ),
        (
            ["train", "stage=student"],
            "geodistill train: error: stage=student needs distill.teacher_checkpoint=PATH",
        ),
        (
            ["train", "stage=student", "distill.teacher_checkpoint=/nonexistent/teacher"],
            "geodistill train: error: distill.teacher_checkpoint does not exist; got '/nonexistent/teacher'",
        ),
        (["eval"], "geodistill eval: error: give --checkpoint PATH or --video2bev FILE"),
        (["eval", "--checkpoint", "/nonexistent/ckpt"], "geodistill eval: error: "),
        # the bound is the node names' (node_a .. node_z), declared once in platform/clusters/rehearse.py
        (
            ["cluster", "rehearse", "--workers", "27"],
            "geodistill cluster rehearse: error: argument --workers: must be >= 1 and <= 26; got 27",
        ),
    ],
)
def test_user_errors_exit_2_with_one_line(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(message), err
    assert len(err.splitlines()) == 1
    assert not (tmp_path / "runs").exists()  # nothing started


def test_console_script_exit_code_for_a_bad_override():
    done = subprocess.run(
        [sys.executable, "-m", "geodistill", "train", "scaling.num_workers=-1"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert (
        done.stderr.strip() == "geodistill train: error: scaling.num_workers must be >= 0 and <= 4096; got -1"
    )


def test_student_stage_distils_from_the_cli_teacher(trained, capsys):
    out, _ = trained
    argv = ["train", "--smoke-test", "--json", f"output_dir={out}", "run_name=student", "stage=student"]
    argv[1:1] = ["--leaderboard", str(out / "lb_student")]
    assert main([*argv, f"distill.teacher_checkpoint={out / 'cli'}", "model=resnet18"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["config"]["stage"] == "student" and payload["config"]["model"]["backbone"] == "resnet18"
    assert payload["config"]["distill"]["teacher_checkpoint"] == str(out / "cli")
    m = payload["metrics"]
    assert m["loss_logit"] > 0 and m["loss_feature"] > 0 and m["loss_relation"] > 0
    assert Path(payload["checkpoint"]) == out / "student" / "checkpoints" / "epoch_0001"
    assert payload["leaderboard_row"] == "default/student/student"
