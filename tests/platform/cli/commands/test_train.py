"""`geodistill train`: the run's JSON and text results, its leaderboard row, stage 2, exit codes and one-line errors;
its module stays clear of Ray Tune (a training run is no search).

The smoke teacher (fixture ``trained``) is trained once per session in conftest.py; the eval tests read it too.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from geodistill.platform.cli import main

REPO = Path(__file__).resolve().parents[4]


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


def test_the_train_command_imports_no_ray_tune():
    """Its leaderboard row comes from leaderboard.rows and its cost from models.cost, not the search."""
    code = (
        "import sys\n"
        "import geodistill.platform.cli.commands.train\n"
        "import geodistill.leaderboard.rows, geodistill.models.cost, geodistill.platform.tracking\n"
        "print(sorted(m for m in sys.modules if m == 'ray.tune' or m.startswith('ray.tune.')))\n"
        "print('geodistill.platform.search.trial' in sys.modules)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    assert out.stdout.splitlines() == ["[]", "False"], out.stdout
