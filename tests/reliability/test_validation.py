"""The one validation pass: the failures users hit before it existed, cross-field rules, and UniV as shipped.

Each of the first four tests is a case that used to end in a traceback or fail only after work
was done (issue 19); now each is one line, exit 2, before anything runs.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from geodistill.data import open_index
from geodistill.data.synth import generate_univ
from geodistill.errors import ConfigError, DataError
from geodistill.platform.compose import compose_run_config
from geodistill.train.config import RunConfig

from .test_bad_inputs import assert_one_line_error


@pytest.fixture
def no_leaderboard(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    board = tmp_path / "board"
    monkeypatch.setenv("GEODISTILL_LEADERBOARD", str(board))
    monkeypatch.chdir(tmp_path)
    return board


def test_negative_embedding_size_is_refused_before_pytorch(cli, no_leaderboard, tmp_path):
    result = cli("train", "preset=smoke", "model.embed_dim=-4")
    line = assert_one_line_error(result, code=2, command="train", contains="model.embed_dim must be >= 1")
    assert "got -4" in line and not (tmp_path / "runs").exists() and not no_leaderboard.exists()
    line = assert_one_line_error(
        cli("profile", "--embed-dim", "-4", "--no-latency"), code=2, command="profile", contains="--embed-dim"
    )


@pytest.mark.parametrize(("backbone", "size", "stride"), [("vit_tiny", 8, 16), ("resnet18", 16, 32)])
def test_image_smaller_than_one_backbone_cell_is_refused(cli, no_leaderboard, backbone, size, stride):
    result = cli("train", "preset=smoke", f"model={backbone}", f"data.img_size={size}")
    line = assert_one_line_error(result, code=2, command="train", contains=f"img_size={size}")
    assert f"total stride {stride}" in line and f">= {stride}" in line
    with pytest.raises(ConfigError, match=f"total stride {stride}"):
        RunConfig.from_dict({"model": {"backbone": backbone}, "data": {"img_size": size}})
    # the smallest size that fits is accepted
    RunConfig.from_dict({"model": {"backbone": backbone}, "data": {"img_size": stride}})


def test_synth_into_a_folder_that_cannot_be_created(cli, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    result = cli("data", "synth", "--out", blocker / "univ", "--buildings", "4")
    assert result.code == 2 and len(result.error_lines) == 1 and "Traceback" not in result.stderr
    assert "argument --out" in result.stderr and "is a file" in result.stderr


def test_search_num_samples_zero_is_refused_before_the_teacher_trains(cli, no_leaderboard, tmp_path):
    result = cli("search", "--smoke-test", "--num-samples", "0", "--storage", tmp_path / "tune")
    assert result.code == 2 and len(result.error_lines) == 1
    assert "argument --num-samples: must be >= 1" in result.stderr and "got 0" in result.stderr
    assert "training a tiny teacher" not in result.stdout and not (tmp_path / "tune").exists()


def test_unknown_refiner_is_refused_before_the_summary(cli, no_leaderboard):
    result = cli("train", "preset=smoke", "model.refiner=median")
    assert_one_line_error(result, code=2, command="train", contains="model.refiner must be one of mean")
    assert result.stdout == ""  # no run summary: nothing was started


def test_search_space_override_is_validated_before_any_compute(cli, no_leaderboard, tmp_path):
    result = cli("search", "search_space=smoke", "model.refiner=median", "--storage", tmp_path / "tune")
    assert_one_line_error(result, code=2, command="search", contains="model.refiner")


def test_paths_are_checked_at_composition_not_when_a_config_is_read_back(tmp_path):
    row_config = RunConfig(output_dir=str(tmp_path / "gone"))
    row_config.data.root = str(tmp_path / "deleted_dataset")
    # a config read back from a leaderboard row may name folders that are gone: from_dict accepts it
    RunConfig.from_dict(row_config.to_dict())
    with pytest.raises(ConfigError, match="data.root does not exist"):
        compose_run_config([f"data.root={tmp_path / 'deleted_dataset'}"])
    (tmp_path / "f").write_text("x")
    with pytest.raises(ConfigError, match="output_dir cannot be created: .* is a file"):
        compose_run_config([f"output_dir={tmp_path / 'f' / 'runs'}"])


# ---------------------------------------------------------------- UniV as shipped


@pytest.fixture(scope="module")
def shipped_univ(tmp_path_factory) -> Path:
    """A synthetic UniV written as the archive ships it: test/gallery_* only."""
    return generate_univ(
        tmp_path_factory.mktemp("shipped") / "univ", buildings=6, seed=3, img_size=32, layout="archive"
    )


def test_synth_archive_layout_has_no_query_folders(shipped_univ: Path):
    assert not list(shipped_univ.rglob("query_*"))
    assert (shipped_univ / "45" / "2fps" / "test" / "gallery_drone").is_dir()
    assert json.loads((shipped_univ / "dataset_split.json").read_text())["layout"] == "archive"


def test_every_command_that_needs_the_queries_says_run_organize(cli, shipped_univ: Path, no_leaderboard):
    hint = f"run `geodistill data organize {shipped_univ}` first"
    line = assert_one_line_error(cli("data", "check", shipped_univ), code=2, command="data", contains=hint)
    assert "UniV is not organised yet" in line and "test/query_drone" in line
    checkpoint = no_leaderboard.parent  # any existing path: the dataset is refused before it is read
    assert_one_line_error(
        cli("eval", checkpoint, "--data", shipped_univ), code=2, command="eval", contains=hint
    )
    assert_one_line_error(
        cli("train", "preset=smoke", f"data.root={shipped_univ}"), code=2, command="train", contains=hint
    )
    with pytest.raises(DataError, match="not organised yet"):
        open_index(shipped_univ, elevation=30, fps=10)


def test_organize_makes_the_shipped_layout_equal_to_the_organised_one(cli, shipped_univ, tmp_path):
    import shutil

    root = tmp_path / "univ"
    shutil.copytree(shipped_univ, root)
    result = cli("data", "organize", root)
    assert result.code == 0, result.stderr
    assert "3 query buildings" in result.stdout
    organised = generate_univ(tmp_path / "ref", buildings=6, seed=3, img_size=32)
    for elevation, fps in ((45, 2), (30, 10)):
        got, want = (
            open_index(root, elevation=elevation, fps=fps),
            open_index(organised, elevation=elevation, fps=fps),
        )
        summary = lambda idx: sorted((it.subset, it.building, len(it.frames)) for it in idx.items)  # noqa: E731
        assert summary(got) == summary(want)
    # the lent views are now in every subset too (hard links: the same inode)
    lent = root / "30" / "5fps" / "train" / "satellite"
    src = root / "45" / "2fps" / "train" / "satellite"
    first = sorted(src.rglob("*.jpeg"))[0]
    assert (lent / first.relative_to(src)).stat().st_ino == first.stat().st_ino
    assert (root / "30" / "5fps" / "test" / "query_satellite").is_dir()
    # data check is happy now, and a second organise changes nothing
    assert cli("data", "check", root).code == 0
    again = cli("data", "organize", root)
    assert again.code == 0 and "already organised" in again.stdout


def test_organize_needs_the_split_file(cli, shipped_univ, tmp_path):
    import shutil

    root = tmp_path / "univ"
    shutil.copytree(shipped_univ / "45", root / "45")
    assert_one_line_error(
        cli("data", "organize", root), code=2, command="data", contains="dataset_split.json not found"
    )
    split = tmp_path / "queries.json"
    split.write_text(json.dumps(["9999"]))
    assert_one_line_error(
        cli("data", "organize", root, "--split", split),
        code=2,
        command="data",
        contains="none of the query buildings is in the gallery",
    )


def test_university1652_missing_a_split_is_named(cli, tmp_path):
    root = tmp_path / "u1652"
    (root / "train" / "drone" / "0001").mkdir(parents=True)
    line = assert_one_line_error(cli("data", "check", root), code=2, command="data", contains="test/ split")
    assert "unpack the archive's test/ folder" in line
