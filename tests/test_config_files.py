"""The one config tree: every shipped file loads into its type, names and paths resolve, a search runs anywhere."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import yaml

from geodistill import config_files
from geodistill.config_files import CONF_DIR, FILE_GROUPS
from geodistill.errors import ConfigError
from geodistill.leaderboard import Leaderboard
from geodistill.leaderboard.anchors import AnchorSet, load_anchors
from geodistill.platform.baseline import Baseline, load_baseline
from geodistill.platform.compose import compose_dict, config_groups
from geodistill.platform.search.space import SearchSpace, load_space
from geodistill.train.config import RunConfig

LOADERS = {
    "search_space": (load_space, SearchSpace),
    "baseline": (load_baseline, Baseline),
    "anchors": (load_anchors, AnchorSet),
}


def _shipped() -> list[tuple[str, str]]:
    run_groups = [(g, o) for g, options in config_groups().items() for o in options]
    return run_groups + [(g, name) for g in FILE_GROUPS for name in config_files.names(g)]


def test_every_yaml_in_the_tree_is_an_option_of_a_group():
    on_disk = {p.relative_to(CONF_DIR).as_posix() for p in CONF_DIR.rglob("*.yaml")}
    known = {"config.yaml", "_bases/model.yaml"} | {f"{g}/{o}.yaml" for g, o in _shipped()}
    assert on_disk == known
    assert {g for g, _ in _shipped()} == {*config_groups(), *FILE_GROUPS}
    assert {"smoke", "demo", "distill"} <= set(config_files.names("search_space"))
    assert config_files.names("anchors") == ["university1652"]


@pytest.mark.parametrize(("group", "name"), _shipped())
def test_every_shipped_config_composes_into_its_type(group, name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # packaged names resolve from any directory
    if group not in FILE_GROUPS:  # a run-config option: composed and typed (its paths are checked when used)
        cfg = RunConfig.from_dict(compose_dict([f"{group}={name}", "data.root=anywhere"]))
        assert cfg.data.img_size == cfg.model.img_size
        return
    load, cls = LOADERS[group]
    loaded = load(name)
    assert isinstance(loaded, cls)
    written = yaml.safe_load((CONF_DIR / group / f"{name}.yaml").read_text())
    if group == "search_space":
        assert [p.name for p in loaded.params] == list(
            written["params"]
        ) and loaded.path.parent == CONF_DIR / group
    elif group == "baseline":
        assert len(loaded.checkpoints) == len(written["checkpoints"]) and loaded.dir == tmp_path
    else:
        assert [a.method for a in loaded.anchors] == [a["method"] for a in written["anchors"]]


def test_names_config_dir_and_paths_resolve_the_same_file(tmp_path):
    mine = tmp_path / "conf" / "anchors" / "mine.yaml"
    mine.parent.mkdir(parents=True)
    mine.write_text("dataset: mine\nanchors: [{method: M, gflops: 1.5, d2s_recall1: 50}]\n")
    by_dir = load_anchors("mine", config_dir=tmp_path / "conf")
    assert by_dir == load_anchors(mine) and by_dir.anchors[0].gflops == 1.5
    assert config_files.names("anchors", config_dir=tmp_path / "conf") == ["mine", "university1652"]
    # a file of the user's tree shadows the packaged file of the same name
    (mine.parent / "university1652.yaml").write_text("anchors: []\n")
    assert load_anchors("university1652", config_dir=tmp_path / "conf").anchors == []
    assert load_anchors("university1652").anchors


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("anchors: [{method: M, gflops: 1}]\nsource: paper\n", r"^anchors bad: unknown config key source$"),
        ("anchors: [{gflops: 1}]\n", r"^anchors bad: anchors\[0\]\.method is required$"),
        (
            "anchors: [{method: M, d2s_ap: 101}]\n",
            r"^anchors bad: anchors\[0\]\.d2s_ap must be >= 0 and <= 100; got 101",
        ),
        (
            "anchors: [{method: M, comparable: yes}]\n",
            r"^anchors bad: unknown config key anchors\[0\]\.comparable$",
        ),
        ("comparable: maybe\n", r"^anchors bad: comparable must be bool, got 'maybe'$"),
        ("anchors: [unclosed\n", r"^anchors bad\.yaml: "),
        ("- a list\n", r"^anchors bad\.yaml: must be a mapping$"),
    ],
)
def test_a_bad_file_is_one_line_naming_the_file_and_key(tmp_path, text, message):
    (tmp_path / "bad.yaml").write_text(text)
    with pytest.raises(ConfigError, match=message) as err:
        load_anchors(tmp_path / "bad.yaml")
    assert "\n" not in str(err.value)


def test_unknown_names_and_missing_files_say_what_exists(tmp_path):
    with pytest.raises(
        ConfigError, match=r"^unknown baseline 'nope'; known: example_student, video2bev_univ \("
    ):
        load_baseline("nope")
    with pytest.raises(ConfigError, match=r"^search space file not found: .*missing\.yaml$"):
        load_space(tmp_path / "missing.yaml")
    old_home = "search_spaces/smoke.yaml"  # where a checkout kept it before the tree was packaged
    with pytest.raises(
        ConfigError,
        match=r"not found: search_spaces/smoke\.yaml \(the packaged search space is named without a path: smoke\)$",
    ):
        load_space(old_home)
    with pytest.raises(ConfigError, match=r"^config dir .*absent does not exist$"):
        load_baseline("nope", config_dir=tmp_path / "absent")


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_search_smoke_runs_from_a_directory_outside_the_checkout(tmp_path):
    """`geodistill search search_space=smoke --smoke-test` as a user runs it after `pip install`:
    a working directory with no search_spaces/ anywhere above it, its own local Ray head."""
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    assert not any(
        (p / "search_spaces").exists() or (p / "pyproject.toml").exists() for p in [outside, *outside.parents]
    )
    lb = tmp_path / "lb"
    cmd = [
        sys.executable, "-m", "geodistill", "search", "search_space=smoke", "--smoke-test",
        "--num-samples", "2", "--max-concurrent", "1", "--experiment", "outside",
        "--storage", str(tmp_path / "tune"), "--leaderboard", str(lb), "--no-report",
    ]  # fmt: skip
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run(cmd, cwd=outside, env=env, capture_output=True, text=True, timeout=850)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    assert "experiment outside: 2 leaderboard rows" in proc.stdout
    rows = Leaderboard(lb).read("outside")
    assert rows.height == 2 and set(rows["status"]) <= {"ok", "stopped"} and (rows["gflops"] > 0).all()


def test_the_cli_finds_a_users_files_in_config_dir(tmp_path, capsys, monkeypatch):
    """`--config-dir DIR` adds DIR/baseline/ and DIR/search_space/; a user's file keeps its paths relative to itself."""
    from geodistill.platform.cli import main

    monkeypatch.chdir(tmp_path)
    (tmp_path / "conf" / "baseline").mkdir(parents=True)
    (tmp_path / "conf" / "baseline" / "mine.yaml").write_text(
        "dataset: {root: data}\ncheckpoints: [{kind: video2bev, path: weights/net.pth}]\n"
    )
    assert main(["regress", "--baseline", "mine", "--config-dir", str(tmp_path / "conf")]) == 2
    missing = tmp_path / "conf" / "baseline" / "weights" / "net.pth"
    assert capsys.readouterr().err.strip() == f"geodistill regress: error: checkpoint not found: {missing}"
    assert main(["regress", "--baseline", "mine"]) == 2  # not packaged: only with the config dir
    assert "unknown baseline 'mine'" in capsys.readouterr().err
    (tmp_path / "conf" / "search_space").mkdir()
    (tmp_path / "conf" / "search_space" / "wide.yaml").write_text(
        "params: {train.lr: {type: uniform, low: 1, high: 0}}\n"
    )
    argv = [
        "search",
        "search_space=wide",
        "--config-dir",
        str(tmp_path / "conf"),
        "--storage",
        str(tmp_path / "t"),
    ]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err == "geodistill search: error: search space wide: params.train.lr: low (1) must be < high (0)"
