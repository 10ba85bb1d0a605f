"""Decoding mp4 flights at 2/5/10 fps, and images that fail with the file's name."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from geodistill.data import count_video_frames, load_image, open_index, read_video_frames
from geodistill.errors import CorruptMediaError


@pytest.fixture(scope="module")
def video(synth_univ_mp4: Path) -> Path:
    return open_index(synth_univ_mp4, elevation=30, fps=10).select(subset="drone")[0].video


def test_mp4_frame_counts_per_fps(video: Path):
    assert count_video_frames(video) == 40
    for fps, n in ((2, 8), (5, 20), (10, 40)):
        assert count_video_frames(video, fps=fps) == n
        frames = read_video_frames(video, fps=fps)
        assert len(frames) == n and frames[0].size == (48, 48) and frames[0].mode == "RGB"


def test_mp4_resampling_keeps_the_same_flight(video: Path):
    full = read_video_frames(video, fps=10)
    at2 = read_video_frames(video, fps=2)
    for k, img in enumerate(at2):  # 2 fps frame k is 10 fps frame 5k
        assert np.array_equal(np.asarray(img), np.asarray(full[5 * k]))
    picked = read_video_frames(video, fps=5, indices=[1, 3])
    assert np.array_equal(np.asarray(picked[1]), np.asarray(full[6]))


def test_corrupt_media_names_the_file(tmp_path: Path):
    bad = tmp_path / "frame_000.jpeg"
    bad.write_bytes(b"not a jpeg at all")
    with pytest.raises(CorruptMediaError, match="frame_000.jpeg"):
        load_image(bad)
    vid = tmp_path / "0001.mp4"
    vid.write_bytes(b"\x00" * 64)
    with pytest.raises(CorruptMediaError, match="0001.mp4"):
        read_video_frames(vid, fps=2)
