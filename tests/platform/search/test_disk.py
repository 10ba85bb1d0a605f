"""An ended trial keeps its checkpoint's weights and drops the optimizer state nothing will resume."""

from __future__ import annotations

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
