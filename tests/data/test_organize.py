"""`data organize`: query folders from the galleries and lent views, by hard link, idempotent."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from geodistill.data.organize import organize_univ, query_buildings
from geodistill.errors import DataError


def _touch(root: Path, *rels: str) -> None:
    for rel in rels:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(rel.encode())


@pytest.fixture
def archive(tmp_path: Path) -> Path:
    """A UniV as shipped: 45/2fps with the lent views, 30/5fps with drone galleries only; 0003 is a distractor."""
    root = tmp_path / "univ"
    for ident in ("0001", "0002", "0003"):
        _touch(
            root,
            f"45/2fps/test/gallery_drone/{ident}/f1.jpeg",
            f"45/2fps/test/gallery_satellite/{ident}/s.png",
            f"30/5fps/test/gallery_drone/{ident}/f1.jpeg",
        )
    _touch(root, "45/2fps/train/drone/0004/f1.jpeg", "45/2fps/train/satellite/0004/s.png")
    (root / "dataset_split.json").write_text(json.dumps({"train": [4], "test": [2, 1]}))
    return root


def test_organize_creates_query_folders_and_lends_views_by_hard_link(archive: Path):
    report = organize_univ(archive)
    assert report.query_buildings == 2
    assert sorted(report.created) == [
        "30/5fps/test/gallery_satellite",
        "30/5fps/test/query_drone",
        "30/5fps/test/query_satellite",
        "30/5fps/train/satellite",
        "45/2fps/test/query_drone",
        "45/2fps/test/query_satellite",
    ]
    # 2 + 2 query folders under 45/2fps, 2 query drones + 1 train + 3 gallery + 2 query satellites lent to 30/5fps
    assert (report.files_linked, report.files_copied) == (12, 0)
    query = archive / "30/5fps/test/query_drone"
    assert sorted(p.name for p in query.iterdir()) == ["0001", "0002"]  # the distractor stays gallery-only
    lent, src = archive / "30/5fps/train/satellite/0004/s.png", archive / "45/2fps/train/satellite/0004/s.png"
    assert lent.stat().st_ino == src.stat().st_ino
    assert not list(archive.rglob(".*.tmp"))


def test_a_second_run_changes_nothing(archive: Path):
    organize_univ(archive)
    before = sorted(p.relative_to(archive) for p in archive.rglob("*"))
    again = organize_univ(archive)
    assert (again.created, again.files_linked, again.files_copied) == ([], 0, 0)
    assert sorted(p.relative_to(archive) for p in archive.rglob("*")) == before


def test_query_buildings_reads_the_first_list_key_or_a_plain_list(tmp_path: Path):
    split = tmp_path / "split.json"
    split.write_text(json.dumps({"query": "not a list", "query_buildings": [12, "0003"], "test": [1]}))
    assert query_buildings(tmp_path, split) == ["0003", "0012"]
    split.write_text(json.dumps([7]))
    assert query_buildings(tmp_path, split) == ["0007"]
    split.write_text(json.dumps({"train": [1]}))
    with pytest.raises(DataError, match="no list of query building ids .*query, query_buildings, test"):
        query_buildings(tmp_path, split)
    split.write_text("{not json")
    with pytest.raises(DataError, match="not a readable JSON file"):
        query_buildings(tmp_path, split)


def test_organize_refuses_other_layouts_a_missing_split_and_a_split_matching_nothing(archive, tmp_path):
    (tmp_path / "u1652" / "train").mkdir(parents=True)
    with pytest.raises(DataError, match="not a UniV layout"):
        organize_univ(tmp_path / "u1652")
    (archive / "dataset_split.json").unlink()
    with pytest.raises(DataError, match=r"dataset_split.json not found: .*pass --split FILE"):
        organize_univ(archive)
    other = tmp_path / "other.json"
    other.write_text("[9999]")
    with pytest.raises(DataError, match="none of the query buildings is in the gallery"):
        organize_univ(archive, split_file=other)
    assert not (archive / "45/2fps/test/query_satellite").exists()  # nothing half-made
