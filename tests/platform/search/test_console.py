"""The search command's console side: its positional arguments and the Pareto table it prints."""

from __future__ import annotations

import polars as pl
import pytest

from geodistill.errors import ConfigError
from geodistill.platform.search.console import format_pareto, split_args


def test_split_args_separates_the_space_from_the_overrides():
    assert split_args(["search_space=smoke", "train.epochs=2", "data.views=4"]) == (
        "smoke",
        ["train.epochs=2", "data.views=4"],
    )
    assert split_args(["train.epochs=2"]) == (None, ["train.epochs=2"])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["search_space=a", "search_space=b"], "search_space= given twice"),
        (["search_space="], "search_space= needs a name or a path"),
        (["smoke"], "expected search_space=NAME or key=value, got 'smoke'"),
    ],
)
def test_split_args_refuses_in_one_line(args, message):
    with pytest.raises(ConfigError, match=message):
        split_args(args)


def test_format_pareto_prints_one_aligned_row_per_point_with_the_metric_column():
    front = pl.DataFrame(
        {
            "trial_id": ["t1", "t2"],
            "backbone": ["resnet18", None],
            "img_size": [64, None],
            "views": [2, 8],
            "gflops": [0.0451, 1.5],
            "d2s_ap": [89.456, 91.0],
            "status": ["ok", "stopped"],
        }
    )
    lines = format_pareto(front, metric="d2s_ap").splitlines()
    assert lines[0].split() == ["trial", "backbone", "img", "views", "GFLOPs", "d2s_ap", "status"]
    assert set(lines[1]) == {"-"} and len(lines[1]) == len(lines[0])
    assert lines[2].split() == ["t1", "resnet18", "64", "2", "0.0451", "89.46", "ok"]
    assert lines[3].split() == ["t2", "-", "0", "8", "1.5000", "91.00", "stopped"]
    assert len({len(line) for line in lines}) == 1  # fixed width


# The search's console lines, from a fresh driver process (a new local head, as `geodistill search`).
_TRACKED_SEARCH = """
import sys
from trivial_search import lr_ramp, search, trivial_space
result = search(trivial_space(1), experiment="tb", num_samples=1, storage=sys.argv[1] + "/tune",
                leaderboard=sys.argv[1] + "/lb", loggers="tensorboard", verbose=2, objective=lr_ramp)
print("EXPERIMENT", result.experiment_path, flush=True)
import ray
ray.shutdown()
"""


@pytest.mark.slow  # starts its own Ray head: 20-40 s
def test_tensorboard_line_names_the_experiment_folder_and_token_auth_says_nothing(tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    helpers = str(Path(__file__).parents[2] / "helpers")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([helpers, os.environ.get("PYTHONPATH", "")])}
    env.pop("RAY_AUTH_MODE", None)  # Ray's default: token authentication on, with its warning
    done = subprocess.run(
        [sys.executable, "-c", _TRACKED_SEARCH, str(tmp_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=400,
    )
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-3000:]
    experiment = str(tmp_path / "tune" / "tb")
    assert f"EXPERIMENT {experiment}" in out
    assert out.count("TensorBoard: tensorboard --logdir ") == 1
    assert f"TensorBoard: tensorboard --logdir {experiment}\n" in out
    assert "To visualize your results with TensorBoard" not in out  # Tune's, into Ray's session folder
    assert "Token authentication" not in out
    assert list((tmp_path / "tune" / "tb").glob("*/events.out.tfevents.*"))  # where the line points


def test_the_summary_prints_compute_training_compute_and_writes_the_anytime_front(tmp_path, capsys):
    from datetime import UTC, datetime, timedelta
    from types import SimpleNamespace

    from geodistill.platform.search.console import _print_anytime

    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    rows = pl.DataFrame(
        {
            "row_key": ["e/a/student", "e/b/student"],
            "trial_id": ["a", "b"],
            "status": ["ok", "stopped"],
            "epochs": [2, 1],
            "d2s_ap": [80.0, 60.0],
            "gflops": [0.5, 0.1],
            "compute": [1.0, 0.1],
            "wall_seconds": [30.0, 12.0],
            "train_gflops": [600.0, 90.0],
            "created_at": [t0, t0 + timedelta(seconds=1)],
        }
    )
    _print_anytime(SimpleNamespace(rows=rows, experiment_path=str(tmp_path)), metric="d2s_ap")
    out = capsys.readouterr().out
    assert "compute spent: 1.1 GFLOPs x epochs over 42 trial-seconds" in out
    assert "training compute: 690 GFLOPs" in out
    table = out[out.index("anytime front") :].splitlines()
    assert table[1].split() == ["compute", "hypervolume", "of", "final"]
    # b (60 AP, the lowest, is the reference) adds no hypervolume: one mark, a's, at 1 unit spent.
    assert table[2].split()[0] == "1" and table[2].endswith("100.0 %") and table[3].startswith("  written")
    written = pl.read_csv(tmp_path / "anytime_front.csv")
    assert written["trial_id"].to_list() == ["a", "b"]
    assert written["compute_spent"].to_list() == pytest.approx([1.0, 1.1])
