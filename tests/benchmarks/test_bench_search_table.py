"""The tabular search benchmark's table: recorded in stages that are product grids, replayed as one.

A recording cut short (the recorder keeps rows per configuration) must leave the replay a table
it can search: every configuration a sampler may ask for has to be in it.
"""

from __future__ import annotations

import importlib.util
import itertools
import math
import sys
from pathlib import Path

import polars as pl
import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"


def _module(name: str):
    if str(BENCH) not in sys.path:  # the scripts import their siblings (_figures)
        sys.path.insert(0, str(BENCH))
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_finished_stage_of_the_recording_is_a_product_grid():
    record = _module("record_search_table")
    points = record.grid_points(record.GRID)
    assert len(points) == math.prod(len(v) for v in record.GRID.values())
    assert len({record.point_key(p) for p in points}) == len(points)
    ends = []
    for i, limits in enumerate(record.STAGES):
        grid = {k: limits.get(k, v) for k, v in record.GRID.items()}
        ends.append(math.prod(len(v) for v in grid.values()))
        prefix = points[: ends[-1]]
        assert {record.point_key(p) for p in prefix} == {
            record.point_key(dict(zip(grid, values))) for values in itertools.product(*grid.values())
        }, f"stage {i}"
    assert ends == sorted(ends) and ends[-1] == len(points)


def test_replay_uses_the_largest_complete_product_grid():
    replay = _module("bench_search_replay")
    columns = ["a", "b", "c"]
    full = set(itertools.product([1, 2, 3], ["x", "y"], [0.0, 1.0]))
    assert replay.largest_product_grid(columns, full) == [[1, 2, 3], ["x", "y"], [0.0, 1.0]]
    # a recording cut short: c = 1.0 recorded only for a = 1 (and one more point)
    cut = {p for p in full if p[2] == 0.0} | {(1, "x", 1.0), (1, "y", 1.0), (2, "x", 1.0)}
    assert replay.largest_product_grid(columns, cut) == [[1, 2, 3], ["x", "y"], [0.0]]
    # the grid of 4 beats the grid of 3 with c = 1.0 when a = 1 alone holds it
    cut = {p for p in full if p[0] == 1} | {(2, "x", 0.0)}
    assert replay.largest_product_grid(columns, cut) == [[1], ["x", "y"], [0.0, 1.0]]


def test_the_committed_table_is_a_complete_grid_of_the_recorders_knobs():
    record = _module("record_search_table")
    frame = pl.read_parquet(BENCH / "search_table.parquet")
    epochs = frame["epoch"].max()
    keys = {
        record.point_key({k: row[k.replace(".", "__")] for k in record.GRID})
        for row in frame.filter(pl.col("epoch") == epochs).to_dicts()
    }
    grid = {record.point_key(p) for p in record.grid_points(record.GRID)}
    assert keys <= grid
    assert frame.group_by("config_id").len()["len"].unique().to_list() == [epochs]
    assert len(keys) == frame["config_id"].n_unique() >= 64


def test_a_recordings_progress_files_are_its_own(tmp_path):
    """Shards' progress files are found (and later removed) beside --out; another table's are not."""
    record = _module("record_search_table")
    names = [
        "search_table.parquet",
        "search_table.partial.parquet",
        "search_table.shard0of2.partial.parquet",
        "search_table.shard1of2.partial.parquet",
        "search_table_small.partial.parquet",  # a recording into another --out, same folder
    ]
    for name in names:
        (tmp_path / name).touch()
    found = [p.name for p in record.partials(tmp_path / "search_table.parquet")]
    assert found == names[1:4]


def test_a_part_or_another_seed_is_refused_over_a_recorded_table(tmp_path, monkeypatch, capsys):
    """--configs / --seed / --limit record a part of the grid: never into a finished table's file,
    which would lose every other configuration. Refused before a teacher is trained."""
    import argparse

    import pytest

    record = _module("record_search_table")
    assert record._config_ids("3,17, 40") == [3, 17, 40]
    for bad in ("3;4", "", "-1"):
        with pytest.raises(argparse.ArgumentTypeError, match="--configs"):
            record._config_ids(bad)
    table = tmp_path / "search_table.parquet"
    pl.DataFrame({"config_id": [0], "epoch": [1]}).write_parquet(table)
    for part in (["--seed", "1"], ["--configs", "0,5"], ["--limit", "2"], ["--places", "160"]):
        argv = ["record_search_table.py", "--out", str(table), "--work", str(tmp_path / "work"), *part]
        monkeypatch.setattr(sys, "argv", argv)
        with pytest.raises(SystemExit, match="give an --out other than the recorded"):
            record.main()
    assert not (tmp_path / "work").exists()  # nothing trained
    assert pl.read_parquet(table).height == 1


def test_resuming_a_part_at_another_seed_is_refused_before_training(tmp_path, monkeypatch):
    """A part's progress names its seed: resumed with another --seed, the rows of two seeds would
    mix in one file, so the recorder stops with one line before it trains anything."""
    record = _module("record_search_table")
    out = tmp_path / "seed1.parquet"
    progress = out.with_suffix(".partial.parquet")
    pl.DataFrame({"config_id": [0], "epoch": [9]}).write_parquet(progress, metadata={record.SEED_KEY: "1"})
    assert record.recorded_seed(progress) == 1
    argv = ["record_search_table.py", "--out", str(out), "--work", str(tmp_path / "work"), "--seed", "2"]
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(
        SystemExit, match=r"recorded at training seed 1, not --seed 2: record into another --out"
    ):
        record.main()
    assert not list((tmp_path / "work").glob("teacher/checkpoints/*"))  # no teacher trained


def test_resuming_on_another_number_of_places_is_refused_before_training(tmp_path, monkeypatch):
    """A recording names its places: progress on 160 places resumed at the default 32 would mix a
    4.7-AP-step table with a 0.94-AP-step one, so the recorder stops with one line first."""
    record = _module("record_search_table")
    out = tmp_path / "places160.parquet"
    progress = out.with_suffix(".partial.parquet")
    entries = {record.SEED_KEY: "0", record.PLACES_KEY: "160"}
    pl.DataFrame({"config_id": [0], "epoch": [9]}).write_parquet(progress, metadata=entries)
    assert record.recorded_places(progress) == 160
    argv = ["record_search_table.py", "--out", str(out), "--work", str(tmp_path / "work")]
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(
        SystemExit, match=r"recorded on 160 places, not --places 32: record into another --out"
    ):
        record.main()
    assert not list((tmp_path / "work").glob("teacher/checkpoints/*"))  # no teacher trained
    monkeypatch.setattr(sys, "argv", [*argv, "--places", "3"])
    with pytest.raises(SystemExit, match=r"--places 3: need at least 4"):
        record.main()


def test_the_committed_recordings_name_their_seed_and_places():
    record = _module("record_search_table")
    files = sorted((BENCH / "search_table_seeds").glob("seed*.parquet"))
    assert [record.recorded_seed(f) for f in files] == [int(f.stem.removeprefix("seed")) for f in files]
    assert record.recorded_seed(BENCH / "search_table.parquet") in (None, 0)
    places = sorted((BENCH / "search_table_places160_seeds").glob("seed*.parquet"))
    assert [record.recorded_seed(f) for f in places] == [int(f.stem.removeprefix("seed")) for f in places]
    assert {record.recorded_places(f) for f in [BENCH / "search_table_places160.parquet", *places]} == {160}
    assert record.recorded_places(BENCH / "search_table.parquet") == 32


def test_knob_effect_is_the_spread_within_groups_equal_in_every_other_knob(tmp_path):
    replay = _module("bench_search_replay")
    finals = {("a", 1): 10.0, ("a", 2): 10.5, ("b", 1): 20.0, ("b", 2): 30.0}  # (backbone, views) -> AP
    rows = []
    for config_id, ((backbone, views), ap) in enumerate(finals.items()):
        for epoch in (1, 2):
            rows.append(
                {
                    "config_id": config_id,
                    "model__backbone": backbone,
                    "data__views": views,
                    "epoch": epoch,
                    "d2s_ap": ap - (2 - epoch),  # the last epoch's value is the final one
                    "epoch_seconds": 1.0,
                    "gflops": 0.1 * views,
                }
            )
    pl.DataFrame(rows).write_parquet(tmp_path / "table.parquet")
    table = replay.Table(tmp_path / "table.parquet")
    assert sorted(replay.knob_effect(table, "data__views").tolist()) == [0.5, 10.0]  # per backbone
    assert sorted(replay.knob_effect(table, "model__backbone").tolist()) == [10.0, 19.5]  # per views


def test_seed_spread_is_the_median_deviation_of_final_values_over_seeds(tmp_path):
    """Two configurations at three seeds, by hand: finals (10, 12, 14) and (80, 80, 86) have sample
    deviations 2 and sqrt(12); the top (config 1, 80 in the table) reads 80 / 80 / 86; seed 0's curve
    of config 0 is the table's, config 1's is not."""
    front = _module("bench_search_front")
    table = pl.DataFrame(
        {
            "config_id": [0, 0, 1, 1],
            "epoch": [1, 2, 1, 2],
            "d2s_ap": [5.0, 10.0, 70.0, 80.0],
            "gflops": [0.1, 0.1, 0.2, 0.2],
        }
    )
    table.write_parquet(tmp_path / "table.parquet")
    seeds = tmp_path / "seeds"
    seeds.mkdir()
    assert front.seed_spread(seeds, tmp_path / "table.parquet", "d2s_ap") is None  # no seeds: no figure
    finals = {0: (10.0, 80.0), 1: (12.0, 80.0), 2: (14.0, 86.0)}
    for seed, (a, b) in finals.items():
        firsts = (5.0, 71.0)  # config 1's first epoch differs from the table's at every seed
        pl.DataFrame(
            {"config_id": [0, 0, 1, 1], "epoch": [1, 2, 1, 2], "d2s_ap": [firsts[0], a, firsts[1], b]}
        ).write_parquet(seeds / f"seed{seed}.parquet")
    spread = front.seed_spread(seeds, tmp_path / "table.parquet", "d2s_ap")
    assert spread["configs"] == 2 and spread["seeds"] == [0, 1, 2]
    assert math.isclose(spread["median_sd"], (2.0 + math.sqrt(12.0)) / 2)
    assert spread["top_id"] == 1 and spread["top_by_seed"] == [80.0, 80.0, 86.0]
    assert spread["reproduced"] == 1
    pl.read_parquet(seeds / "seed2.parquet").write_parquet(
        seeds / "seed2.parquet", metadata={"geodistill.train_seed": "3"}
    )  # a recording at seed 3 under seed 2's name
    with pytest.raises(SystemExit, match=r"seed2.parquet holds a recording at training seed 3"):
        front.seed_spread(seeds, tmp_path / "table.parquet", "d2s_ap")


def test_seed_spread_counts_the_table_front_each_seed_keeps(tmp_path):
    """Three configurations, one epoch, by hand. The table's front is {0, 1} (10 AP at 0.1 GFLOPs,
    50 at 0.2; 40 at 0.3 is dominated). Seed 1's finals (10, 30, 45) keep both on its front, seed 2's
    (60, 50, 40) only config 0. Seed means 26.7 / 43.3 / 41.7: one configuration within 1 AP of the top."""
    front = _module("bench_search_front")
    costs = [0.1, 0.2, 0.3]
    pl.DataFrame(
        {"config_id": [0, 1, 2], "epoch": [1] * 3, "d2s_ap": [10.0, 50.0, 40.0], "gflops": costs}
    ).write_parquet(tmp_path / "table.parquet")
    seeds = tmp_path / "seeds"
    seeds.mkdir()
    for seed, finals in {0: [10.0, 50.0, 40.0], 1: [10.0, 30.0, 45.0], 2: [60.0, 50.0, 40.0]}.items():
        pl.DataFrame({"config_id": [0, 1, 2], "epoch": [1] * 3, "d2s_ap": finals}).write_parquet(
            seeds / f"seed{seed}.parquet"
        )
    spread = front.seed_spread(seeds, tmp_path / "table.parquet", "d2s_ap")
    assert spread["table_front"] == [0, 1]
    assert spread["front_kept"] == [2, 2, 1]
    assert spread["mean_top_within_1"] == 1


def test_top_resolution_reads_the_query_count_off_recall_and_counts_the_top_level(tmp_path):
    """8 queries (Recall@1 in steps of 12.5): one query from rank 1 to rank 2 moves AP by 75/8 =
    9.375 points. The top (config 1: 7 of 8 at rank 1) is reached by configs 1 and 2 at the last
    epoch; config 0 reached it only at epoch 1."""
    front = _module("bench_search_front")
    pl.DataFrame(
        {
            "config_id": [0, 0, 1, 1, 2, 2],
            "epoch": [1, 2] * 3,
            "d2s_ap": [95.0, 60.0, 80.0, 93.75, 70.0, 90.625],
            "d2s_recall1": [87.5, 50.0, 75.0, 87.5, 62.5, 87.5],
            "gflops": [0.1, 0.1, 0.2, 0.2, 0.3, 0.3],
        }
    ).write_parquet(tmp_path / "table.parquet")
    res = front.top_resolution(tmp_path / "table.parquet", "d2s_ap")
    assert res["queries"] == 8 and math.isclose(res["step"], 9.375)
    assert res["top"] == 93.75 and res["top_recall1"] == 87.5
    assert res["at_top_recall1"] == 2 and res["configs"] == 3


def test_sub_grid_keeps_the_rows_holding_every_fixed_value_and_refuses_a_bad_fix(tmp_path):
    """Two knobs of two values each: fixing temperature 1.0 keeps configs 0 and 1 (every epoch),
    and the replay then searches the views alone; a knob or value the table lacks is one line."""
    front = _module("bench_search_front")
    rows = [
        {"config_id": i, "distill__temperature": t, "data__views": v, "epoch": e, "d2s_ap": 10.0 * i + e}
        for i, (t, v) in enumerate(itertools.product([1.0, 4.0], [1, 2]))
        for e in (1, 2)
    ]
    table = tmp_path / "table.parquet"
    pl.DataFrame(rows).write_parquet(table, metadata={"geodistill.synth_places": "160"})
    out = front.sub_grid(table, ["distill.temperature=1.0"], tmp_path / "sub.parquet")
    kept = pl.read_parquet(out)
    assert kept["config_id"].to_list() == [0, 0, 1, 1] and kept[
        "distill__temperature"
    ].unique().to_list() == [1.0]
    record = _module("record_search_table")
    assert record.recorded_places(out) == 160  # the recording's entries travel with its sub-grid
    for bad, message in (
        ("model.backbone=resnet18", "need KNOB=VALUE with a knob of table.parquet"),
        ("distill.temperature", "need KNOB=VALUE"),
        ("distill.temperature=2.0", r"table.parquet has distill.temperature in \['1.0', '4.0'\]"),
    ):
        with pytest.raises(SystemExit, match=message):
            front.sub_grid(table, [bad], tmp_path / "bad.parquet")


def test_seed_spread_leaves_out_seeds_on_other_places_and_configurations_off_the_table(tmp_path):
    """Seeds recorded on 32 places say nothing about a 160-place table (no figure); over a sub-grid
    holding configs 0 and 1 of the seeds' 0-2, only those two are compared."""
    front = _module("bench_search_front")
    seeds = tmp_path / "seeds"
    seeds.mkdir()
    for seed in (0, 1):
        pl.DataFrame(
            {"config_id": [0, 1, 2], "epoch": [1] * 3, "d2s_ap": [10.0 + seed, 50.0, 40.0]}
        ).write_parquet(seeds / f"seed{seed}.parquet")  # no places entry: the committed 32
    table = pl.DataFrame({"config_id": [0, 1], "epoch": [1, 1], "d2s_ap": [10.0, 50.0], "gflops": [0.1, 0.2]})
    table.write_parquet(tmp_path / "sub.parquet")
    spread = front.seed_spread(seeds, tmp_path / "sub.parquet", "d2s_ap")
    assert spread["configs"] == 2 and spread["table_front"] == [0, 1]
    table.write_parquet(tmp_path / "places160.parquet", metadata={"geodistill.synth_places": "160"})
    assert front.seed_spread(seeds, tmp_path / "places160.parquet", "d2s_ap") is None


def test_seed_spread_takes_the_table_as_seed_0_when_seed_0_was_not_recorded_again(tmp_path):
    """Only seed1.parquet beside a table: the table's finals (10, 50) are seed 0 and seed 1's (14, 50)
    the other, so the sample deviations are sqrt(8) and 0 (median sqrt(2)); nothing was recorded
    again at seed 0, so nothing is counted as reproduced."""
    front = _module("bench_search_front")
    pl.DataFrame(
        {"config_id": [0, 1], "epoch": [1, 1], "d2s_ap": [10.0, 50.0], "gflops": [0.1, 0.2]}
    ).write_parquet(tmp_path / "t.parquet")
    seeds = tmp_path / "t_seeds"
    seeds.mkdir()
    pl.DataFrame({"config_id": [0, 1], "epoch": [1, 1], "d2s_ap": [14.0, 50.0]}).write_parquet(
        seeds / "seed1.parquet"
    )
    spread = front.seed_spread(seeds, tmp_path / "t.parquet", "d2s_ap")
    assert spread["seeds"] == [0, 1] and spread["top_by_seed"] == [50.0, 50.0]
    assert math.isclose(spread["median_sd"], math.sqrt(2.0)) and spread["reproduced"] is None
