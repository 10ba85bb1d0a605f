"""An ended trial drops the optimizer state nothing will resume; a search keeps the front's weights."""

from __future__ import annotations

from pathlib import Path

import pytest
from trivial_search import search, search_dirs, trivial_space

from geodistill.leaderboard.pareto import pareto_rows
from geodistill.platform.search.disk import drop_state
from geodistill.train.checkpoint import STATE_FILE


def test_drop_state_removes_only_the_training_state_of_every_checkpoint(tmp_path):
    for n in (0, 1):
        ckpt = tmp_path / f"checkpoint_00000{n}"
        ckpt.mkdir()
        (ckpt / STATE_FILE).write_bytes(b"x" * 100)
        (ckpt / "model.safetensors").write_bytes(b"w")
        (ckpt / "meta.json").write_text("{}")
    (tmp_path / STATE_FILE).write_bytes(b"not a checkpoint's")  # outside checkpoint_*: kept
    gone = drop_state(str(tmp_path))
    assert sorted(p.parent.name for p in gone) == ["checkpoint_000000", "checkpoint_000001"]
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file()) == [
        "checkpoint_000000/meta.json",
        "checkpoint_000000/model.safetensors",
        "checkpoint_000001/meta.json",
        "checkpoint_000001/model.safetensors",
        STATE_FILE,
    ]


def test_drop_state_leaves_uri_storage_and_a_missing_path_alone(tmp_path):
    assert drop_state(None) == []
    assert drop_state("s3://bucket/trial") == []
    assert drop_state(str(tmp_path / "nowhere")) == []


@pytest.mark.slow  # two 5-trial searches on a local Ray: 20-40 s
def test_a_search_keeps_only_the_fronts_checkpoints_unless_asked_for_all(ray_local, tmp_path):
    # Defined here, not at module level: Ray's workers cannot import a test module.
    def _checkpointing(cfg, *, context) -> None:
        """Two epochs, each with a checkpoint; precision grows with lr, GFLOPs 1 below lr 0.0055 and 2 above
        (so the front holds the best trial of each cost, and the others are dominated)."""
        import tempfile

        for epoch in (1, 2):
            with tempfile.TemporaryDirectory() as folder:
                (Path(folder) / "model.safetensors").write_bytes(b"w" * 1000)
                metrics = {
                    "epoch": epoch,
                    "d2s_recall1": cfg.train.lr * 1000 * epoch,
                    "gflops": 1.0 if cfg.train.lr < 0.0055 else 2.0,
                }
                context.report(metrics, checkpoint_dir=Path(folder))

    dirs = search_dirs(tmp_path)
    fronts = {}
    for keep in ("all", "front"):
        result = search(
            trivial_space(2),
            experiment=f"keep-{keep}",
            num_samples=5,
            sampler="random",
            seed=3,
            keep_checkpoints=keep,
            early_stopping=False,
            objective=_checkpointing,
            **dirs,
        )
        rows = result.rows
        assert rows.height == 5 and (rows["status"] == "ok").all()  # every row stays
        front = set(pareto_rows(rows)["trial_id"])
        assert set(result.pareto["trial_id"]) == front and 1 <= len(front) < 5
        fronts[keep] = sorted(rows.filter(rows["trial_id"].is_in(front))["lr"])
        kept = set()
        for row in rows.iter_rows(named=True):
            trial_dir = Path(dirs["storage"]) / f"keep-{keep}" / row["run_id"]
            assert trial_dir.is_dir(), row["run_id"]  # results and logs stay; only checkpoints go
            folders = sorted(trial_dir.glob("checkpoint_*"))
            if folders:
                kept.add(row["trial_id"])
                assert len(folders) == 1 and (folders[0] / "model.safetensors").stat().st_size == 1000
                assert row["checkpoint_uri"] == str(folders[0])
            else:
                assert row["checkpoint_uri"] is None
        assert kept == (set(rows["trial_id"]) if keep == "all" else front)
    assert fronts["all"] == fronts["front"]  # the same seed samples the same trials
