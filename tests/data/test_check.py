"""check_dataset: reports of every subset, one-line failures naming the corrupt files."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from geodistill.data import check_dataset
from geodistill.errors import DataError


def test_check_reports_subsets(synth_univ: Path):
    report = check_dataset(synth_univ)
    assert report.kind == "univ" and report.missing_views == []
    rows = {(r.elevation, r.fps, r.subset): r for r in report.rows}
    assert rows[(30, 10, "drone")].buildings == 6 and rows[(30, 10, "drone")].min_frames == 40
    assert rows[(45, 5, "gallery_drone")].buildings == 7 and rows[(45, 5, "gallery_drone")].max_frames == 20
    assert rows[(45, None, "gallery_satellite")].buildings == 7
    assert len(report.rows) == 2 * 3 * 3 + 7  # drone subsets per elevation/fps + 7 lent subsets once
    # Every file decoded once: frames (6+6+7 flights x (8+20+40) x 2 elevations) + images.
    n_images = 6 * 3 + 7 * 2 + 6 * 2
    assert report.files_checked == 19 * 68 * 2 + n_images


def test_check_mp4(synth_univ_mp4: Path):
    report = check_dataset(synth_univ_mp4)
    row = next(r for r in report.rows if (r.elevation, r.fps, r.subset) == (30, 2, "drone"))
    assert (row.buildings, row.min_frames, row.videos) == (6, 8, 6)


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src / "45" / "2fps", dst / "45" / "2fps")
    return dst


def _one_line_error(root: Path, match: str) -> str:
    with pytest.raises(DataError) as err:
        check_dataset(root)
    msg = str(err.value)
    assert "\n" not in msg and match in msg, msg
    return msg


def test_check_lists_every_corrupt_jpeg(synth_univ: Path, tmp_path: Path):
    root = _copy(synth_univ, tmp_path / "u")
    frames = sorted((root / "45" / "2fps" / "test" / "gallery_drone").rglob("frame_003.jpeg"))
    bad = [frames[0], frames[2], frames[-1]]
    for path in bad:
        path.write_bytes(path.read_bytes()[:200])
    report = check_dataset(root)  # keeps going past the first bad file
    assert report.corrupt_files == sorted(bad)
    assert len(report.corrupt) == 3 and all(line.startswith("corrupt image ") for line in report.corrupt)
    assert report.files_checked > 3  # every other file was decoded too


def test_check_lists_a_truncated_mp4(synth_univ_mp4: Path, tmp_path: Path):
    root = tmp_path / "m"
    shutil.copytree(synth_univ_mp4, root)
    videos = sorted((root / "45" / "mp4" / "train" / "drone").glob("*.mp4"))
    for path in videos[:2]:
        path.write_bytes(path.read_bytes()[:2000])
    report = check_dataset(root)
    assert report.corrupt_files == videos[:2]
    assert all("corrupt video" in line for line in report.corrupt)


def test_check_fails_on_empty_folder_missing_path_and_layout(synth_univ: Path, tmp_path: Path):
    root = _copy(synth_univ, tmp_path / "u")
    empty = root / "45" / "2fps" / "train" / "satellite" / "9999"
    empty.mkdir()
    _one_line_error(root, f"empty class folder {empty}")
    _one_line_error(tmp_path / "missing", "dataset path does not exist")
    (tmp_path / "other" / "images").mkdir(parents=True)
    _one_line_error(tmp_path / "other", "not a UniV")
    (tmp_path / "elev" / "45" / "junk").mkdir(parents=True)
    _one_line_error(tmp_path / "elev", "no <30|45>/<2|5|10>fps")
