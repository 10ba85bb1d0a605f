"""A corrupt JPEG or a truncated MP4 in the training set is skipped and counted, never a crash."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

from geodistill.train import InProcessContext, RunConfig
from geodistill.train.loop import fit

torch.set_num_threads(1)


def tiny_teacher(root: Path, out: Path) -> RunConfig:
    return RunConfig.from_dict(
        {
            "stage": "teacher",
            "output_dir": str(out),
            "data": {"root": str(root), "img_size": 32, "batch_size": 6, "views": 2},
            "model": {"backbone": "convnext_atto", "embed_dim": 32, "pooling": "avg"},
            "train": {"epochs": 1, "warmup_steps": 1},
        }
    )


def train_buildings(root: Path) -> list[str]:
    return json.loads((root / "dataset_split.json").read_text())["train"]


def test_corrupt_jpegs_are_replaced_by_a_neighbour_and_counted(synth_univ: Path, tmp_path: Path):
    root = tmp_path / "univ"
    shutil.copytree(synth_univ, root)
    folder = root / "45" / "2fps" / "train" / "drone" / train_buildings(root)[0]
    frames = sorted(folder.glob("*.jpeg"))
    for bad in frames[1:]:  # only frame 0 still decodes: any 2 sampled views hit a corrupt one
        bad.write_bytes(bad.read_bytes()[:100])
    result = fit(tiny_teacher(root, tmp_path / "runs"), context=InProcessContext(tmp_path / "runs" / "t"))
    assert result.epochs_done == 1
    assert result.skipped_media >= 1
    assert result.metrics["skipped_media"] == result.skipped_media
    assert (tmp_path / "runs" / "t" / "checkpoints" / "epoch_0001" / "meta.json").is_file()


def test_truncated_training_video_is_skipped_and_counted(synth_univ_mp4: Path, tmp_path: Path):
    root = tmp_path / "univ"
    shutil.copytree(synth_univ_mp4, root)
    video = root / "45" / "mp4" / "train" / "drone" / f"{train_buildings(root)[0]}.mp4"
    video.write_bytes(video.read_bytes()[:2000])
    result = fit(tiny_teacher(root, tmp_path / "runs"), context=InProcessContext(tmp_path / "runs" / "t"))
    assert result.epochs_done == 1
    assert result.skipped_media >= 1
