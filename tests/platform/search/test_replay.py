"""--replay: the real search answered from a recorded table; what a table must hold, checked first."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import polars as pl
import pytest
from trivial_search import search, search_dirs

from geodistill.errors import ConfigError
from geodistill.platform.search import replay
from geodistill.platform.search.plan import first_assignment
from geodistill.platform.search.replay import ReplayFit, ReplayTable, write_replay_table
from geodistill.platform.search.space import parse_space

ROOT = Path(__file__).resolve().parents[3]
TABLE = ROOT / "benchmarks" / "search_table.parquet"
SPACE = ROOT / "benchmarks" / "search_table_space.yaml"


def _table(tmp_path: Path, epochs: int = 3, **extra_cols) -> Path:
    rows = [
        {"data__views": v, "epoch": e, "d2s_ap": 10.0 * v + e, "gflops": 0.01 * v, "epoch_seconds": 0.5}
        for v in (1, 2)
        for e in range(1, epochs + 1)
    ]
    path = tmp_path / "t.parquet"
    pl.DataFrame(rows).with_columns(**{k: pl.lit(v) for k, v in extra_cols.items()}).write_parquet(path)
    return path


def _space(choices=(1, 2), name="data.views", typ="choice"):
    param = {"type": typ, "choices": list(choices)} if typ == "choice" else {"type": typ, "low": 1, "high": 2}
    return parse_space({"fixed": {"stage": "teacher", "train.epochs": 3}, "params": {name: param}}, name="t")


def test_a_table_is_read_per_configuration_and_epoch(tmp_path):
    table = ReplayTable(_table(tmp_path))
    assert table.knobs == ["data__views"] and table.grid == {"data__views": [1, 2]}
    assert table.metrics == ["d2s_ap"]
    assert [r["d2s_ap"] for r in table.history({"data.views": 2})] == [21.0, 22.0, 23.0]
    table.check_space(_space(), "d2s_ap", {"data.views": 1})  # every trial is in the table


def test_only_numeric_columns_are_metrics(tmp_path):
    """A column of text (a note, a run's name) is not a metric: a trial would fail turning it into
    a number in the middle of the search."""
    table = ReplayTable(_table(tmp_path, note="seed 0", s2d_ap=5.0))
    assert table.metrics == ["d2s_ap", "s2d_ap"]
    with pytest.raises(ConfigError, match="metric note is not a column"):
        table.check_space(_space(), "note", {"data.views": 1})


def test_a_configuration_costs_what_the_table_recorded(tmp_path):
    """``gflops`` always, ``params_m``/``gmacs``/``flop_counter`` where the table has them (not
    metrics), else None: a replayed trial counts nothing itself."""
    bare = ReplayTable(_table(tmp_path))
    assert bare.cost({"data.views": 2}) == {
        "gflops": 0.02,
        "params_m": None,
        "gmacs": None,
        "flop_counter": None,
    }
    full = ReplayTable(_table(tmp_path, params_m=1.5, flop_counter="meta"))
    assert full.metrics == ["d2s_ap"]
    assert full.cost({"data.views": 1}) == {
        "gflops": 0.01,
        "params_m": 1.5,
        "gmacs": None,
        "flop_counter": "meta",
    }


def test_a_finished_search_s_table_keeps_the_cost_its_rows_counted(tmp_path):
    history = json.dumps([{"epoch": e, "d2s_ap": 10.0 * e, "epoch_seconds": 0.5} for e in (1, 2)])
    rows = pl.DataFrame(
        [
            {"config_json": json.dumps({"data": {"views": v}}), "history": history, "epochs": 2,
             "gflops": 0.01 * v, "params_m": 2.0 * v, "gmacs": 0.005 * v, "flop_counter": "meta"}
            for v in (1, 2)
        ]
    )  # fmt: skip
    write_replay_table(rows, tmp_path / "out.parquet", ["data.views"])
    table = ReplayTable(tmp_path / "out.parquet")
    assert table.metrics == ["d2s_ap"]
    assert table.cost({"data.views": 2}) == {
        "gflops": 0.02,
        "params_m": 4.0,
        "gmacs": 0.01,
        "flop_counter": "meta",
    }


@pytest.mark.parametrize(
    ("space", "metric", "message"),
    [
        (_space(name="data.fps", choices=(2,)), "d2s_ap", "has no column for the knob data.fps"),
        (_space(choices=(1, 4)), "d2s_ap", "values [4] are outside the table's grid [1, 2]"),
        (_space(typ="int"), "d2s_ap", "must be a choice"),
        (_space(), "s2d_ap", "metric s2d_ap is not a column"),
    ],
)
def test_a_space_the_table_cannot_answer_is_one_line(tmp_path, space, metric, message):
    table = ReplayTable(_table(tmp_path))
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        table.check_space(space, metric, {"data.views": 1, **first_assignment(space)})


def test_each_shipped_table_space_is_answered_by_its_table_and_not_by_the_other():
    """The driver's own check (``_replayed``): the 1,152-configuration space against the committed
    table, the 160-place space against its sub-grid; the full space against the sub-grid is one
    line naming a knob value the sub-grid lacks."""
    from geodistill.platform.compose import compose_run_config
    from geodistill.platform.search import SearchPlan
    from geodistill.platform.search.replay import config_values

    def check(space_file: Path, table_file: Path) -> None:
        plan = SearchPlan.build(parse_space_file(space_file), compose_run_config([]), check_teacher=False)
        table = ReplayTable(table_file)
        table.check_space(plan.space, plan.metric, config_values(plan.first_config(), table.knobs))

    places160 = ROOT / "benchmarks" / "search_table_places160.parquet"
    check(SPACE, TABLE)
    check(ROOT / "benchmarks" / "search_table_places160_space.yaml", places160)
    with pytest.raises(
        ConfigError, match=r"distill.temperature values \[4.0\] are outside the table's grid \[1.0\]"
    ):
        check(SPACE, places160)


class _Clock:
    """``time`` for ``replay``: sleeping and reporting move a fake clock, nothing waits."""

    def __init__(self) -> None:
        self.now = 0.0

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds >= 0
        self.now += seconds


class _SlowReports:
    """A trial context whose every report takes 0.3 s (Tune waiting for its driver)."""

    def __init__(self, clock: _Clock) -> None:
        self.clock, self.reported = clock, []

    def report(self, metrics, checkpoint_dir=None) -> None:
        self.reported.append((metrics["epoch"], self.clock.now))
        self.clock.now += 0.3

    def should_stop(self, epoch, metrics) -> bool:
        return False


def test_the_replay_clock_does_not_run_slow_by_the_time_reports_take(tmp_path, monkeypatch):
    """Epoch e is reported at speed x (recorded seconds of epochs 1..e) after the trial started,
    however long each report took: otherwise a trial's lag grew with its epochs, and concurrent
    trials ended out of their recorded order (bench_search_product.py measures the order)."""
    clock = _Clock()
    monkeypatch.setattr(replay, "time", clock)
    cfg = SimpleNamespace(data=SimpleNamespace(views=2), train=SimpleNamespace(epochs=3))
    context = _SlowReports(clock)
    ReplayFit(str(_table(tmp_path)), speed=2.0)(cfg, context=context)
    # 0.5 recorded seconds an epoch x speed 2: at 1, 2 and 3 s, not 1, 2.3 and 3.6 s.
    assert context.reported == [(1, pytest.approx(1.0)), (2, pytest.approx(2.0)), (3, pytest.approx(3.0))]


def test_a_table_of_final_values_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="one row per epoch"):
        ReplayTable(_table(tmp_path, epochs=1))
    with pytest.raises(ConfigError, match="no epoch_seconds column"):
        path = tmp_path / "bare.parquet"
        pl.read_parquet(_table(tmp_path)).drop("epoch_seconds").write_parquet(path)
        ReplayTable(path)
    with pytest.raises(ConfigError, match="no table"):
        ReplayTable(tmp_path / "missing.parquet")


def test_the_cli_refuses_a_knob_outside_the_grid_before_anything_runs(tmp_path):
    space = tmp_path / "space.yaml"
    space.write_text(SPACE.read_text().replace("choices: [1, 2, 4, 8]", "choices: [1, 3]"))
    out = subprocess.run(
        [sys.executable, "-m", "geodistill", "search", f"search_space={space}", "--replay", str(TABLE),
         "--storage", str(tmp_path / "tune"), "--leaderboard", str(tmp_path / "lb")],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert out.returncode == 2, out.stderr
    assert "data.views values [3] are outside the table's grid [1, 2, 4, 8]" in out.stderr
    assert not (tmp_path / "tune").exists()  # nothing ran


@pytest.mark.slow
def test_a_replayed_search_is_the_real_search_answered_from_the_table(ray_local, tmp_path):
    """Rows carry the table's values at the epoch each trial ended, compute and history; the
    front keeps stopped trials; the search's own rows make a replay table that replays again."""
    result = search(
        str(SPACE), experiment="replayed", num_samples=12, max_concurrent=2, replay=str(TABLE),
        **search_dirs(tmp_path),
    )  # fmt: skip
    table = ReplayTable(TABLE)
    rows = result.rows
    assert rows.height == 12 and set(rows["status"]) <= {"ok", "stopped"}
    assert (rows["status"] == "stopped").any(), "nothing stopped: the test would prove less"
    for row in rows.iter_rows(named=True):
        config = json.loads(row["config_json"])
        values = {k.replace("__", "."): config[k.split("__")[0]][k.split("__")[1]] for k in table.knobs}
        recorded = table.history(values)[row["epochs"] - 1]
        assert row["d2s_ap"] == pytest.approx(recorded["d2s_ap"])
        assert row["gflops"] == pytest.approx(recorded["gflops"])
        assert row["compute"] == pytest.approx(row["epochs"] * recorded["gflops"])
        assert len(json.loads(row["history"])) == row["epochs"]
    front = result.pareto
    assert front.height and set(front["status"]) <= {"ok", "stopped"}
    out = tmp_path / "again.parquet"
    write_replay_table(rows, out, [p.name for p in parse_space_file(SPACE).params])
    again = ReplayTable(out) if rows.filter(pl.col("epochs") >= 2).height else None
    if again is not None:
        assert set(again.grid) == set(table.grid)


def parse_space_file(path: Path):
    from geodistill.platform.search.space import load_space

    return load_space(str(path))


# Loaded by every Python process of the search (the CLI, Ray's workers) through PYTHONPATH: it
# records each process's command line, and which processes imported timm.
_TIMM_PROBE = """
import os, sys
def _mark(kind):
    cmdline = open("/proc/self/cmdline", "rb").read().replace(b"\\0", b" ")
    with open(os.path.join(os.environ["TIMM_PROBE"], f"{kind}-{os.getpid()}"), "wb") as f:
        f.write(cmdline)
class _Timm:
    def find_spec(self, name, path=None, target=None):
        if name == "timm":
            _mark("timm")
        return None
sys.meta_path.insert(0, _Timm())
_mark("start")
"""


@pytest.mark.slow
def test_a_replayed_trial_takes_its_cost_from_the_table_and_never_imports_timm(tmp_path):
    """The table's GFLOPs (here 100x what counting the model gives) are the row's and decide the
    flops-budget refusal; the other cost columns are the table's or null; no trial process
    imports timm (the driver does: it checks each trial's backbone before placing it)."""
    table_path = tmp_path / "table.parquet"
    pl.read_parquet(TABLE).with_columns(pl.col("gflops") * 100, params_m=pl.lit(1.5)).write_parquet(
        table_path
    )
    space = tmp_path / "space.yaml"
    space.write_text(SPACE.read_text() + "flops_budget: 5.0\n")
    probe = tmp_path / "probe"
    (probe / "site").mkdir(parents=True)
    (probe / "site" / "sitecustomize.py").write_text(_TIMM_PROBE)
    env = {**os.environ, "TIMM_PROBE": str(probe), "PYTHONPATH": os.pathsep.join(
        [str(probe / "site"), str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}  # fmt: skip
    out = subprocess.run(
        [sys.executable, "-m", "geodistill", "search", f"search_space={space}", "--replay", str(table_path),
         "--num-samples", "10", "--replay-speed", "0", "--storage", str(tmp_path / "tune"),
         "--leaderboard", str(tmp_path / "lb")],
        capture_output=True, text=True, timeout=600, env=env,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    assert list((tmp_path / "tune").glob("*/report/report.html")), "no report written"
    table = ReplayTable(table_path)
    rows = pl.read_parquet(tmp_path / "lb" / "**" / "*.parquet")
    assert rows.height == 10
    for row in rows.iter_rows(named=True):
        config = json.loads(row["config_json"])
        values = {k.replace("__", "."): config[k.split("__")[0]][k.split("__")[1]] for k in table.knobs}
        assert row["gflops"] == pytest.approx(table.cost(values)["gflops"])
        assert (row["params_m"], row["gmacs"], row["flop_counter"]) == (1.5, None, None)
        refused = "flops budget" in (row["error"] or "")
        assert refused == (row["gflops"] > 5.0), row
        assert (row["d2s_ap"] is None) == refused
    assert (rows["gflops"] > 5.0).any() and (rows["gflops"] <= 5.0).any(), "the test would prove less"
    started = {p.name.split("-")[1]: p.read_text() for p in probe.glob("start-*")}
    imported = {p.name.split("-")[1]: p.read_text() for p in probe.glob("timm-*")}
    workers = [pid for pid, cmd in started.items() if "default_worker.py" in cmd]
    assert workers, f"no Ray worker loaded the probe: {sorted(started.values())}"
    assert any("geodistill search" in cmd for cmd in imported.values()), "the probe saw no timm import"
    assert not [imported[pid] for pid in workers if pid in imported]
