"""An ended trial drops the optimizer state nothing will resume; a search keeps the front's weights;
an interrupted search's running trials keep everything --resume needs."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from trivial_search import search, search_dirs, slow_checkpointing, trivial_space, two_cost_checkpointing

from geodistill.leaderboard.pareto import pareto_rows
from geodistill.platform.search.disk import drop_state, settle_ended
from geodistill.train.layout import STATE_FILE


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


def test_drop_state_leaves_uri_storage_and_a_missing_path_alone(tmp_path, monkeypatch):
    assert drop_state(None) == []
    assert drop_state("s3://bucket/trial") == []
    assert drop_state(str(tmp_path / "nowhere")) == []
    # Ray's path on a store has no scheme (bucket/...): never a folder under the cwd.
    monkeypatch.chdir(tmp_path)
    _checkpoint(tmp_path / "bucket" / "trial" / "checkpoint_000000")
    assert drop_state("bucket/trial") == []
    assert (tmp_path / "bucket" / "trial" / "checkpoint_000000" / STATE_FILE).is_file()


def test_a_row_naming_its_checkpoint_by_an_azure_uri_is_nulled_once_pruned(tmp_path):
    """On abfs Tune's path is <container>/<path> (the account dropped) while the row names the
    URI ``uri_on`` made: pruning reads the row's folder back as that path. The store is a
    local folder behind pyarrow's SubTreeFileSystem, laid out as the Azure one would be."""
    import polars as pl
    import pyarrow.fs as pafs

    from geodistill.leaderboard import Leaderboard
    from geodistill.leaderboard.rows import trial_row
    from geodistill.platform.compose import compose_run_config
    from geodistill.platform.runtime.remote import uri_on
    from geodistill.platform.search.disk import prune_off_front

    storage = "abfss://c@acct.dfs.core.windows.net/tune"
    store = pafs.SubTreeFileSystem(str(tmp_path / "account"), pafs.LocalFileSystem())
    cfg = compose_run_config(["preset=smoke", f"output_dir={tmp_path}"])
    trials, rows = [], []
    for trial_id, recall in (("front", 90.0), ("off", 10.0)):
        folder = f"c/tune/exp/trial_{trial_id}/checkpoint_000001"
        store.create_dir(folder)
        trials.append(SimpleNamespace(trial_id=trial_id, path=f"c/tune/exp/trial_{trial_id}",
                                      storage=SimpleNamespace(storage_filesystem=store), checkpoint=None))  # fmt: skip
        result = {"epoch": 2, "d2s_recall1": recall, "gflops": 1.0}
        rows.append(trial_row(experiment="exp", trial_id=trial_id, cfg=cfg, result=result, status="ok",
                              checkpoint=uri_on(storage, folder)))  # fmt: skip
    lb = tmp_path / "lb"
    Leaderboard(lb).write(rows)
    frame = Leaderboard(lb).read("exp")
    removed = prune_off_front(trials, frame, frame.filter(pl.col("trial_id") == "front"), str(lb))
    assert removed == ["c/tune/exp/trial_off/checkpoint_000001"]
    named = dict(Leaderboard(lb).read("exp").select("trial_id", "checkpoint_uri").iter_rows())
    assert named == {
        "front": "abfss://c@acct.dfs.core.windows.net/tune/exp/trial_front/checkpoint_000001",
        "off": None,
    }


def _upload_tree(s3, local: Path, key: str) -> None:
    fs = s3.filesystem()
    for path in sorted(local.rglob("*")):
        if path.is_file():
            with fs.open_output_stream(f"{s3.bucket}/{key}/{path.relative_to(local).as_posix()}") as out:
                out.write(path.read_bytes())


def _store_files(s3, key: str) -> list[str]:
    import pyarrow.fs as pafs

    root = f"{s3.bucket}/{key}"
    infos = s3.filesystem().get_file_info(pafs.FileSelector(root, recursive=True, allow_not_found=True))
    return sorted(i.path[len(root) + 1 :] for i in infos if i.type == pafs.FileType.File)


def test_ended_trials_on_s3_lose_their_training_state_and_what_tune_never_registered(
    s3, tmp_path, monkeypatch
):
    """URI storage as local: nothing resumes an ended trial, so no checkpoint keeps its training
    state (a Ray Train run's latest included), and the checkpoint of the epoch a budget stop cut
    (never registered) goes. A same-named local folder under the cwd is never touched."""
    import polars as pl

    from geodistill.leaderboard import Leaderboard
    from geodistill.leaderboard.rows import trial_row
    from geodistill.platform.compose import compose_run_config
    from geodistill.platform.search.disk import DropFinishedState, prune_off_front

    layout = tmp_path / "layout"
    _checkpoint(layout / "trial_cut" / "checkpoint_000004")  # registered
    _checkpoint(layout / "trial_cut" / "checkpoint_000005")  # written as the budget struck
    for trial_id in ("rt", "rt_cut"):
        _checkpoint(layout / "trainers" / trial_id / "epoch_0002")  # a Ray Train run: the best
        _checkpoint(layout / "trainers" / trial_id / "epoch_0003")  # and its latest
    _upload_tree(s3, layout, "tune/exp")
    monkeypatch.chdir(tmp_path)  # a decoy where Ray's scheme-less paths would land locally
    decoy = tmp_path / s3.bucket / "tune" / "exp"
    shutil.copytree(layout, decoy)

    fs, exp = s3.filesystem(), f"{s3.bucket}/tune/exp"
    storage = SimpleNamespace(storage_filesystem=fs)
    registered = SimpleNamespace(path=f"{exp}/trial_cut/checkpoint_000004")
    latest = s3.uri("tune/exp/trainers/rt/epoch_0003")
    trials = [
        SimpleNamespace(trial_id="cut", path=f"{exp}/trial_cut", storage=storage, checkpoint=registered, last_result={}),
        SimpleNamespace(trial_id="rt", path=f"{exp}/trial_rt", storage=storage, checkpoint=None,
                        last_result={"epoch": 3, "checkpoint_uri": latest}),
        SimpleNamespace(trial_id="rt_cut", path=f"{exp}/trial_rt_cut", storage=storage, checkpoint=None,
                        last_result={}),
    ]  # fmt: skip
    DropFinishedState().on_trial_complete(0, trials, trials[1])
    assert [p for p in _store_files(s3, "tune/exp") if p.startswith("trainers/rt/")] == [
        "trainers/rt/epoch_0002/meta.json",
        "trainers/rt/epoch_0002/model.safetensors",
        "trainers/rt/epoch_0003/meta.json",  # ended: its latest resumes nothing either
        "trainers/rt/epoch_0003/model.safetensors",
    ]
    removed = settle_ended(trials)
    assert f"{exp}/trial_cut/checkpoint_000005" in removed
    assert _store_files(s3, "tune/exp") == [
        "trainers/rt/epoch_0002/meta.json",
        "trainers/rt/epoch_0002/model.safetensors",
        "trainers/rt/epoch_0003/meta.json",
        "trainers/rt/epoch_0003/model.safetensors",
        "trainers/rt_cut/epoch_0002/meta.json",
        "trainers/rt_cut/epoch_0002/model.safetensors",
        "trainers/rt_cut/epoch_0003/meta.json",
        "trainers/rt_cut/epoch_0003/model.safetensors",
        "trial_cut/checkpoint_000004/meta.json",
        "trial_cut/checkpoint_000004/model.safetensors",
    ]
    # Off the front, rows naming a store's checkpoint (by URI, or by the scheme-less path rows
    # once held) lose it as on local storage; the front's stays, and the local decoy stays whole.
    cfg = compose_run_config(["preset=smoke", f"output_dir={tmp_path}"])
    rows = [
        trial_row(experiment="exp", trial_id=t, cfg=cfg, result={"epoch": 3, "d2s_recall1": r, "gflops": 1.0},
                  status="ok", checkpoint=uri)
        for t, r, uri in (("rt", 90.0, latest), ("rt_cut", 10.0, f"{exp}/trainers/rt_cut/epoch_0003"),
                          ("cut", 5.0, s3.uri("tune/exp/trial_cut/checkpoint_000004")))
    ]  # fmt: skip
    lb = tmp_path / "lb"
    Leaderboard(lb).write(rows)
    frame = Leaderboard(lb).read("exp")
    removed = prune_off_front(trials, frame, frame.filter(pl.col("trial_id") == "rt"), str(lb))
    assert sorted(removed) == [
        f"{exp}/trainers/rt_cut/epoch_0002",
        f"{exp}/trainers/rt_cut/epoch_0003",
        f"{exp}/trial_cut/checkpoint_000004",
    ]
    assert _files(decoy) == _files(layout)
    assert _store_files(s3, "tune/exp") == [
        "trainers/rt/epoch_0002/meta.json",
        "trainers/rt/epoch_0002/model.safetensors",
        "trainers/rt/epoch_0003/meta.json",
        "trainers/rt/epoch_0003/model.safetensors",
    ]
    named = dict(Leaderboard(lb).read("exp").select("trial_id", "checkpoint_uri").iter_rows())
    assert named == {"rt": latest, "rt_cut": None, "cut": None}


def _checkpoint(folder: Path, weights: int = 1000, state: int = 2000) -> Path:
    folder.mkdir(parents=True)
    (folder / "model.safetensors").write_bytes(b"w" * weights)
    (folder / STATE_FILE).write_bytes(b"s" * state)
    (folder / "meta.json").write_text("{}")
    return folder


def _files(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def test_settle_ended_keeps_only_the_registered_checkpoint_without_its_training_state(tmp_path):
    # A trial the time budget stopped mid-epoch: Tune registered epoch 5's checkpoint; epoch 6's
    # was written by the worker, but its result never reached Tune.
    stopped = tmp_path / "stopped"
    registered = _checkpoint(stopped / "checkpoint_000004")
    _checkpoint(stopped / "checkpoint_000005")
    # A trial that never registered a checkpoint: its folders are left (weights only).
    bare = tmp_path / "bare"
    _checkpoint(bare / "checkpoint_000000")
    trials = [
        SimpleNamespace(path=str(stopped), checkpoint=SimpleNamespace(path=str(registered)), storage=None),
        SimpleNamespace(path=str(bare), checkpoint=None, storage=None),
    ]
    removed = settle_ended(trials)
    assert stopped / "checkpoint_000005" in removed
    assert _files(tmp_path) == [
        "bare/checkpoint_000000/meta.json",
        "bare/checkpoint_000000/model.safetensors",
        "stopped/checkpoint_000004/meta.json",
        "stopped/checkpoint_000004/model.safetensors",
    ]
    assert (registered / "model.safetensors").stat().st_size == 1000


@pytest.mark.slow  # a search that its 20 s time budget ends: ~30 s
def test_trials_the_time_budget_stopped_keep_one_checkpoint_without_training_state(ray_local, tmp_path):
    dirs = search_dirs(tmp_path)
    result = search(
        trivial_space(200),  # 40 s a trial: the budget stops every one that started
        experiment="budget",
        num_samples=2,
        max_concurrent=2,
        sampler="random",
        seed=3,
        keep_checkpoints="all",
        early_stopping=False,
        time_budget_s=20,
        objective=slow_checkpointing,
        **dirs,
    )
    rows = result.rows
    assert rows.height >= 1 and (rows["status"] == "stopped").all(), rows
    assert not result.interrupted
    experiment = Path(dirs["storage"]) / "budget"
    for row in rows.iter_rows(named=True):
        folders = sorted((experiment / row["run_id"]).glob("checkpoint_*"))
        assert [str(f) for f in folders] == [row["checkpoint_uri"]]  # the one its row names, only
    assert list(experiment.rglob(STATE_FILE)) == []  # nothing resumes an ended trial


@pytest.mark.slow  # a search interrupted, then resumed: ~40 s
def test_an_interrupted_search_keeps_its_running_trials_resumable(ray_local, tmp_path):
    from ray import tune

    fired = tmp_path / "ctrl-c.sent"

    class CtrlC(tune.Callback):
        """SIGINT to this process (Ctrl-C) once, when a trial reports its third epoch (the
        restored experiment carries this callback too: the file says it has been sent)."""

        def on_trial_result(self, iteration, trials, trial, result, **info):
            if result.get("epoch") == 3 and not fired.exists():
                fired.touch()
                os.kill(os.getpid(), signal.SIGINT)

    dirs = search_dirs(tmp_path)
    kwargs = dict(
        experiment="ctrl-c",
        num_samples=3,
        max_concurrent=2,
        sampler="random",
        seed=3,
        keep_checkpoints="front",
        early_stopping=False,
        objective=slow_checkpointing,
        **dirs,
    )
    first = search(trivial_space(8), callbacks=[CtrlC()], **kwargs)
    assert first.interrupted
    experiment = Path(dirs["storage"]) / "ctrl-c"
    running = [d for d in experiment.glob("run_trial_*") if d.name not in set(first.rows["run_id"].to_list())]
    assert running, "no trial was running at Ctrl-C"
    for trial_dir in running:  # no row yet, and its checkpoint with the state --resume continues from
        assert list(trial_dir.glob(f"checkpoint_*/{STATE_FILE}")), _files(trial_dir)

    second = search(trivial_space(8), resume=True, **kwargs)
    rows = second.rows
    assert not second.interrupted and rows.height == 3 and (rows["status"] == "ok").all(), rows
    assert (rows["epochs"] == 8).all()
    assert list(experiment.rglob(STATE_FILE)) == []  # every trial has ended now
    front = set(pareto_rows(rows)["trial_id"])
    assert {r["trial_id"] for r in rows.iter_rows(named=True) if r["checkpoint_uri"]} == front


@pytest.mark.slow  # two 5-trial searches on a local Ray: 20-40 s
def test_a_search_keeps_only_the_fronts_checkpoints_unless_asked_for_all(ray_local, tmp_path):
    # Defined here, not at module level: Ray's workers cannot import a test module.
    dirs = search_dirs(tmp_path)
    fronts = {}
    for keep in ("all", "front"):
        result = search(
            trivial_space(2),
            experiment=f"keep-{keep}",
            num_samples=5,
            sampler="random",
            seed=3,
            keep_checkpoints=keep,
            early_stopping=False,
            objective=two_cost_checkpointing,
            **dirs,
        )
        rows = result.rows
        assert rows.height == 5 and (rows["status"] == "ok").all()  # every row stays
        front = set(pareto_rows(rows)["trial_id"])
        assert set(result.pareto["trial_id"]) == front and 1 <= len(front) < 5
        fronts[keep] = sorted(rows.filter(rows["trial_id"].is_in(front))["lr"])
        kept = set()
        for row in rows.iter_rows(named=True):
            trial_dir = Path(dirs["storage"]) / f"keep-{keep}" / row["run_id"]
            assert trial_dir.is_dir(), row["run_id"]  # results and logs stay; only checkpoints go
            folders = sorted(trial_dir.glob("checkpoint_*"))
            if folders:
                kept.add(row["trial_id"])
                assert len(folders) == 1 and (folders[0] / "model.safetensors").stat().st_size == 1000
                assert row["checkpoint_uri"] == str(folders[0])
            else:
                assert row["checkpoint_uri"] is None
        assert kept == (set(rows["trial_id"]) if keep == "all" else front)
    assert fronts["all"] == fronts["front"]  # the same seed samples the same trials


def test_ray_train_trials_drop_their_state_and_off_front_runs_lose_their_epochs(tmp_path):
    """A Ray Train trial's checkpoints live in its run folder, <experiment>/trainers/<trial_id>,
    as epoch_NNNN (the latest and the best, train_driver's last_best); its last result names the
    latest. Ended, nothing resumes it; off the front, its weights are never the search's answer."""
    import polars as pl

    from geodistill.leaderboard import Leaderboard
    from geodistill.leaderboard.rows import trial_row
    from geodistill.platform.compose import compose_run_config
    from geodistill.platform.search.disk import DropFinishedState, prune_off_front

    experiment = tmp_path / "exp"
    trials, rows = [], []
    cfg = compose_run_config(["preset=smoke", f"output_dir={tmp_path}"])
    for trial_id, recall in (("on", 90.0), ("off", 10.0)):
        run = experiment / "trainers" / trial_id
        _checkpoint(run / "epoch_0002")  # the best
        latest = _checkpoint(run / "epoch_0003")
        result = {"epoch": 3, "d2s_recall1": recall, "gflops": 1.0, "checkpoint_uri": str(latest)}
        trial = SimpleNamespace(
            trial_id=trial_id, path=str(experiment / f"trial_{trial_id}"), storage=None, checkpoint=None,
            last_result=result,
        )  # fmt: skip
        DropFinishedState().on_trial_complete(0, [], trial)
        trials.append(trial)
        rows.append(trial_row(experiment="exp", trial_id=trial_id, cfg=cfg, result=result, status="ok"))
    assert list(experiment.rglob(STATE_FILE)) == []
    assert len(list(experiment.rglob("model.safetensors"))) == 4  # weights stay until the front is known

    lb = tmp_path / "lb"
    Leaderboard(lb).write(rows)
    frame = Leaderboard(lb).read("exp")
    removed = prune_off_front(trials, frame, frame.filter(pl.col("trial_id") == "on"), str(lb))
    assert sorted(p.relative_to(experiment).as_posix() for p in removed) == [
        "trainers/off/epoch_0002",
        "trainers/off/epoch_0003",
    ]
    assert _files(experiment) == [
        "trainers/on/epoch_0002/meta.json",
        "trainers/on/epoch_0002/model.safetensors",
        "trainers/on/epoch_0003/meta.json",
        "trainers/on/epoch_0003/model.safetensors",
    ]
    named = dict(Leaderboard(lb).read("exp").select("trial_id", "checkpoint_uri").iter_rows())
    assert named == {"on": str(experiment / "trainers" / "on" / "epoch_0003"), "off": None}


@pytest.mark.slow  # two Ray Train trials (a TorchTrainer each) on a local Ray: ~60 s
def test_a_search_of_ray_train_trials_keeps_the_fronts_latest_and_best_weights_only(ray_local, tmp_path):
    def _three_epochs(cfg, *, context):
        """Epoch 2 is each trial's best, epoch 3 its latest; precision grows with lr."""
        import json
        import tempfile

        from geodistill.train.loop import TrainResult

        metrics: dict = {}
        for epoch in (1, 2, 3):
            metrics = {"epoch": epoch, "d2s_recall1": cfg.train.lr * 1000 * (2 if epoch == 2 else 1)}
            with tempfile.TemporaryDirectory() as folder:
                (Path(folder) / "model.safetensors").write_bytes(b"w" * 1000)
                (Path(folder) / STATE_FILE).write_bytes(b"s" * 2000)
                (Path(folder) / "meta.json").write_text(json.dumps({"epoch": epoch, "metrics": metrics}))
                context.report(metrics, checkpoint_dir=Path(folder))
        return TrainResult(
            epochs_done=3, metrics=metrics, checkpoint=None, stopped_early=False, skipped_media=0
        )

    dirs = search_dirs(tmp_path)
    result = search(
        trivial_space(3, **{"scaling.num_workers": 1}),
        experiment="rt",
        num_samples=2,
        sampler="random",
        seed=3,
        max_concurrent=1,
        keep_checkpoints="front",
        early_stopping=False,
        objective=_three_epochs,
        **dirs,
    )
    rows = result.rows
    assert rows.height == 2 and (rows["status"] == "ok").all(), rows
    best = rows.sort("lr").row(1, named=True)["trial_id"]  # same cost: the higher lr is the front
    trainers = Path(dirs["storage"]) / "rt" / "trainers"
    kept = {p.parent.name: [] for p in trainers.glob("*/epoch_*")}
    for folder in sorted(trainers.glob("*/epoch_*")):
        kept[folder.parent.name].append(folder.name)
    assert kept == {best: ["epoch_0002", "epoch_0003"]}  # Ray kept the latest and the best, no more
    assert list(trainers.rglob(STATE_FILE)) == []  # an ended trial resumes no more
    named = dict(rows.select("trial_id", "checkpoint_uri").iter_rows())
    assert named[best] == str(trainers / best / "epoch_0003")
    assert [uri for trial_id, uri in named.items() if trial_id != best] == [None]


def test_a_ray_train_trial_that_reported_nothing_is_settled_and_pruned_by_its_id(tmp_path):
    """A Ray Train trial reports to Tune once, when its run ends: one the time budget cut (or that
    failed) has no last result naming its run, which is found as <experiment>/trainers/<trial_id>."""
    import polars as pl

    from geodistill.leaderboard import Leaderboard
    from geodistill.leaderboard.rows import trial_row
    from geodistill.platform.compose import compose_run_config
    from geodistill.platform.search.disk import prune_off_front

    experiment = tmp_path / "exp"
    cfg = compose_run_config(["preset=smoke", f"output_dir={tmp_path}"])
    trials, rows = [], []
    for trial_id in ("cut", "done"):
        run = experiment / "trainers" / trial_id
        _checkpoint(run / "epoch_0001")  # the best
        latest = _checkpoint(run / "epoch_0002")
        result = {} if trial_id == "cut" else {"epoch": 2, "d2s_recall1": 5.0, "checkpoint_uri": str(latest)}
        trial = SimpleNamespace(
            trial_id=trial_id, path=str(experiment / f"run_trial_{trial_id}"), storage=None, checkpoint=None,
            last_result=result,
        )  # fmt: skip
        trials.append(trial)
        status = "stopped" if trial_id == "cut" else "ok"
        rows.append(trial_row(experiment="exp", trial_id=trial_id, cfg=cfg, result=result, status=status))
    settle_ended(trials)
    assert list(experiment.rglob(STATE_FILE)) == []  # nothing resumes either: weights only
    assert len(list(experiment.rglob("model.safetensors"))) == 4

    lb = tmp_path / "lb"
    Leaderboard(lb).write(rows)
    frame = Leaderboard(lb).read("exp")
    removed = prune_off_front(trials, frame, frame.filter(pl.col("trial_id") == "done"), str(lb))
    assert sorted(p.relative_to(experiment).as_posix() for p in removed) == [
        "trainers/cut/epoch_0001",
        "trainers/cut/epoch_0002",
    ]
    assert _files(experiment / "trainers") == [
        "done/epoch_0001/meta.json",
        "done/epoch_0001/model.safetensors",
        "done/epoch_0002/meta.json",
        "done/epoch_0002/model.safetensors",
    ]


@pytest.mark.slow  # a Ray Train trial (a TorchTrainer) that the search's 30 s time budget cuts: ~60 s
def test_a_ray_train_trial_the_time_budget_cut_keeps_no_training_state(ray_local, tmp_path):
    def _slow_epochs(cfg, *, context):
        """0.5 s epochs, each with weights, a training state and meta; the budget ends it first."""
        import json
        import tempfile
        import time

        from geodistill.train.loop import TrainResult

        metrics: dict = {}
        for epoch in range(1, cfg.train.epochs + 1):
            time.sleep(0.5)
            metrics = {"epoch": epoch, "d2s_recall1": 1.0 + (epoch % 3)}  # the best is not the latest
            with tempfile.TemporaryDirectory() as folder:
                (Path(folder) / "model.safetensors").write_bytes(b"w" * 1000)
                (Path(folder) / STATE_FILE).write_bytes(b"s" * 2000)
                (Path(folder) / "meta.json").write_text(json.dumps({"epoch": epoch, "metrics": metrics}))
                context.report(metrics, checkpoint_dir=Path(folder))
        return TrainResult(
            epochs_done=cfg.train.epochs,
            metrics=metrics,
            checkpoint=None,
            stopped_early=False,
            skipped_media=0,
        )

    kwargs = dict(
        experiment="rt-budget",
        num_samples=1,
        max_concurrent=1,
        sampler="random",
        seed=3,
        keep_checkpoints="all",  # weights stay: this test is about the training state
        early_stopping=False,
        time_budget_s=30,
        objective=_slow_epochs,
        **search_dirs(tmp_path),
    )
    space = trivial_space(400, **{"scaling.num_workers": 1})  # 200 s a trial: the budget cuts it
    result = search(space, **kwargs)
    rows = result.rows
    assert rows.height == 1 and rows["status"].to_list() == ["stopped"] and not result.interrupted, rows
    trainers = tmp_path / "tune" / "rt-budget" / "trainers"
    epochs = sorted(trainers.glob("*/epoch_*"))
    assert epochs, "the budget cut the trial before its first checkpoint: nothing was tested"
    # Its row, as a cut single-worker trial's: the last epoch its trainer wrote to metrics.jsonl,
    # what it cost, and the checkpoint its run kept for that epoch (Ray keeps the latest).
    row = rows.row(0, named=True)
    done = row["epochs"]
    assert done and done >= 1 and row["d2s_recall1"] == 1.0 + (done % 3), row
    assert row["gflops"] > 0 and row["compute"] == pytest.approx(done * row["gflops"]), row
    assert row["checkpoint_uri"] == str(trainers / row["trial_id"] / f"epoch_{done:04d}"), row
    assert (Path(row["checkpoint_uri"]) / "model.safetensors").is_file()
    assert all((e / "model.safetensors").is_file() for e in epochs)
    assert list(trainers.rglob(STATE_FILE)) == []  # nothing resumes it: --resume does not, below

    again = search(space, resume=True, **kwargs)  # Tune saved the cut trial TERMINATED: it stays ended
    assert again.rows.height == 1 and again.rows["status"].to_list() == ["stopped"], again.rows
    assert sorted(trainers.glob("*/epoch_*")) == epochs


def test_the_modules_a_trial_actor_unpickles_do_not_import_timm():
    """Tune's trial actors import ``search.trial`` (and through it ``disk`` and ``runtime.remote``)
    before any trial runs; a replayed trial builds no model, so timm must stay out of them."""
    code = (
        "import sys\n"
        "import geodistill.platform.search.trial, geodistill.platform.search.disk\n"
        "import geodistill.platform.runtime.remote\n"
        "print('timm' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=os.environ, check=True
    )
    assert out.stdout.strip() == "False"
