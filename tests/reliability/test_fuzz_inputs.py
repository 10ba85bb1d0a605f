"""Property-based fuzzing of every config key and CLI flag, generated from the declared schema.

For any key of ``RunConfig`` (data, model, train, distill, scaling and the top level) and any
value flag of any ``geodistill`` subcommand, Hypothesis draws a value the declaration refuses
(fuzz_schema.py) and the test asserts what a user must see: exit status 2, exactly one line on
stderr that names the key or flag, no traceback, nothing trained (no run or data folder), and
nothing written to the leaderboard. The CLI runs in-process (the ``cli`` fixture), so one
example costs a Hydra composition at most. Example counts are fixed; Hypothesis's per-example
deadline is off because the suite must not fail on a slow, shared machine (the counts bound it).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from geodistill.config_files import typed
from geodistill.errors import ConfigError, UserError
from geodistill.leaderboard.anchors import Anchor
from geodistill.leaderboard.regress import Tolerance
from geodistill.platform.baseline import BaselineDataset, GoldenInput
from geodistill.platform.compose import preflight
from geodistill.train.config import RunConfig

from .fuzz_schema import (
    argv_for,
    bad_config_value,
    bad_flag_text,
    cli_flags,
    config_keys,
    hydra_value,
    undeclared_flags,
)

KEYS = config_keys()
# The blocks of the packaged config files (baselines, anchors) that hold values with ranges.
FILE_KEYS = [
    (cls, key) for cls in (BaselineDataset, GoldenInput, Tolerance, Anchor) for key in config_keys(cls)
]
FLAGS = cli_flags()
FUZZ = settings(
    deadline=None,
    derandomize=True,  # the same examples every run: a failure reproduces, CI does not flake
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    database=None,
)


@pytest.fixture
def sandbox(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    """A working directory with a regular file and a missing path, and the leaderboard pointed inside."""
    work = tmp_path / "work"
    work.mkdir()
    (work / "a_file").write_text("not a directory\n")
    monkeypatch.chdir(work)
    monkeypatch.setenv("GEODISTILL_LEADERBOARD", str(tmp_path / "leaderboard"))
    # Tripwires, not mocks: should validation ever let a value through, the first piece of real
    # work raises instead of training or searching for minutes, and the example fails.
    for target in TRIPWIRES:
        monkeypatch.setattr(target, _tripwire(target))
    return {
        "dir": work,
        "file": work / "a_file",
        "missing": work / "missing",
        "board": tmp_path / "leaderboard",
    }


TRIPWIRES = (
    "geodistill.models.geomodel.GeoModel.__init__",
    "geodistill.data.synth.generate_univ",
    "geodistill.data.check.check_dataset",
    "geodistill.leaderboard.store.Leaderboard.write",
    "geodistill.platform.runtime.train_driver.run_training",
    "geodistill.platform.search.driver.run_search",
    "geodistill.platform.demo_pipeline.run_demo",
)


class WorkStarted(Exception):
    """Raised by a tripwire: the command got past validation (not a UserError, so exit is not 2)."""


def _tripwire(target: str):
    def tripped(*args, **kwargs):
        raise WorkStarted(f"{target} was called: the bad value passed validation")

    return tripped


def _assert_refused(result, places: dict[str, Path], names: tuple[str, ...]) -> None:
    assert result.code == 2, (result.code, result.stderr[-2000:], result.stdout[-500:])
    assert "Traceback" not in result.stderr
    lines = result.error_lines
    assert len(lines) == 1, result.stderr
    assert " error: " in lines[0], lines[0]
    assert any(name in lines[0] for name in names), (names, lines[0])
    assert sorted(p.name for p in places["dir"].iterdir()) == ["a_file"], "something was written"
    assert not places["board"].exists(), "the leaderboard was written"


def test_every_config_key_and_flag_is_declared():
    """A key or flag without a declared rule is neither validated nor fuzzed: refuse it here."""
    undeclared_keys = [k.name for k in KEYS + [k for _, k in FILE_KEYS] if k.rule is None]
    assert undeclared_keys == [], f"declare these with geodistill.schema.setting(...): {undeclared_keys}"
    assert undeclared_flags() == [], "give these flags type=flag(...) (geodistill.platform.cli.flags)"
    # the surface is what README's table says it is (update both when it grows)
    assert len(KEYS) >= 50 and len(FLAGS) >= 60, (len(KEYS), len(FLAGS))  # the walks found them all


@settings(FUZZ, max_examples=300)
@given(data=st.data())
def test_config_values_are_refused_by_the_one_validation_pass(data, sandbox):
    """RunConfig.from_dict + preflight (what composition runs) refuse every drawn value in one line."""
    key = data.draw(st.sampled_from(KEYS), label="key")
    value = data.draw(bad_config_value(key, sandbox), label="value")
    group, _, leaf = key.name.rpartition(".")
    config: dict = {leaf: value} if not group else {group: {leaf: value}}
    with pytest.raises(UserError) as info:
        preflight(RunConfig.from_dict(config))
    message = str(info.value)
    assert "\n" not in message
    assert key.name in message or (leaf == "img_size" and "img_size" in message), message


@settings(FUZZ, max_examples=60)
@given(data=st.data())
def test_config_file_blocks_refuse_bad_values(data, sandbox):
    """The blocks of a baseline or anchors YAML go through the same declarations and loader."""
    cls, key = data.draw(st.sampled_from(FILE_KEYS), label="key")
    if key.base is str:  # free text (root is resolved against the baseline file when used)
        value = data.draw(st.sampled_from(["", "  ", 5, False]), label="value")
    else:
        value = data.draw(bad_config_value(key, sandbox), label="value")
    required = {"method": "M"} if cls is Anchor else {}
    with pytest.raises(ConfigError) as info:
        typed(cls, {**required, key.name: value}, "baseline b: block")
    assert f"block: {key.name}" in str(info.value) and "\n" not in str(info.value)


@settings(FUZZ, max_examples=40)
@given(data=st.data())
def test_train_refuses_bad_config_values_before_anything_runs(data, cli, sandbox):
    """The same through `geodistill train KEY=VALUE`: Hydra parsing, composition, one line, exit 2."""
    key = data.draw(st.sampled_from(KEYS), label="key")
    value = data.draw(bad_config_value(key, sandbox), label="value")
    result = cli("train", f"++{key.name}={hydra_value(value)}", "preset=smoke")
    _assert_refused(result, sandbox, (key.name, key.name.rpartition(".")[2]))


@settings(FUZZ, max_examples=250)
@given(data=st.data())
def test_every_flag_refuses_bad_values_in_one_line(data, cli, sandbox):
    flag = data.draw(st.sampled_from(FLAGS), label="flag")
    text = data.draw(bad_flag_text(flag, sandbox), label="text")
    result = cli(*argv_for(flag, text, sandbox))
    names = (flag.option or flag.dest, flag.dest, "argument", "dataset path", "no such", "does not exist")
    _assert_refused(result, sandbox, names)


def test_fuzzed_surface_size(capsys):
    """Prints the numbers tests/reliability/README.md quotes (run with -s to see them)."""
    commands = {f.command for f in FLAGS}
    with capsys.disabled():
        print(f"\nfuzzed: {len(KEYS)} config keys, {len(FLAGS)} flags in {len(commands)} commands")
    assert len(commands) >= 12
