"""run_search on a local Ray: real smoke search, early stopping, failed trials, interrupt + resume.

One Ray head for the session (``ray_local``). The smoke search trains real students against a
real (tiny) teacher; the other searches use trivial objectives (``tests/helpers/trivial_search.py``, or
defined inside the test) to pin down the platform's behaviour exactly.
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import optuna
import polars as pl
import pytest
from trivial_search import lr_ramp, search, search_dirs, trivial_space

from geodistill.leaderboard import Leaderboard
from geodistill.models.cost import config_cost
from geodistill.platform.compose import compose_run_config
from geodistill.platform.search import SearchPlan, train_teacher_for
from geodistill.platform.search.space import load_space, parse_space
from geodistill.train.config import RunConfig

SMOKE = "smoke"  # the packaged space, by name


@pytest.fixture(scope="module")
def shared(tmp_path_factory, ray_local):
    """A work dir (synthetic data + teacher cache) shared by the module's searches, and a teacher."""
    root = tmp_path_factory.mktemp("search")
    overrides = ["preset=smoke", f"output_dir={root / 'work'}"]
    base = compose_run_config(overrides)
    plan = SearchPlan.build(load_space(SMOKE, base=base.to_dict()), base, check_teacher=False)
    teacher = train_teacher_for(plan, root / "teacher")
    return {"root": root, "overrides": overrides, "teacher": teacher}


@pytest.mark.slow  # trains a teacher and four real students; the trivial-objective searches below are fast
def test_smoke_search_writes_one_row_per_trial_a_pareto_set_and_a_sqlite_study(shared, tmp_path):
    result = search(
        SMOKE,
        experiment="smoke4",
        num_samples=4,
        sampler="tpe",
        overrides=shared["overrides"],
        teacher=str(shared["teacher"]),
        **search_dirs(tmp_path),
        max_concurrent=2,
    )
    rows = result.rows
    assert not result.interrupted and result.trials == 4
    assert rows.height == 4 and rows["trial_id"].n_unique() == 4
    assert set(rows["status"]) <= {"ok", "stopped"} and "ok" in set(rows["status"])
    assert (rows["row_key"] == "smoke4/" + rows["trial_id"] + "/student").all()
    assert (rows["teacher"] == str(shared["teacher"])).all()
    for row in rows.iter_rows(named=True):
        cfg = RunConfig.from_dict(json.loads(row["config_json"]))
        assert cfg.model.backbone == row["backbone"] and cfg.data.views == row["views"]
        assert cfg.distill.teacher_checkpoint == str(shared["teacher"])
        assert row["gflops"] == pytest.approx(
            config_cost(cfg.model, cfg.data.views)["gflops"]
        )  # counted before training
        if row["status"] == "ok":
            assert row["epochs"] == 2 and 0 <= row["d2s_recall1"] <= 100 and row["s2d_ap"] is not None
            assert (Path(row["checkpoint_uri"]) / "meta.json").is_file()  # every trial keeps its last
    front = set(result.pareto["trial_id"])  # a stopped trial counts at its values then
    assert 1 <= len(front) <= rows.height and front <= set(rows["trial_id"])
    # The Optuna study is a real SQLite database with both objectives of every finished trial.
    study = optuna.load_study(study_name="smoke4", storage=result.study_url)
    assert result.study_url.startswith("sqlite:///") and Path(result.study_url[10:]).is_file()
    assert [d.name for d in study.directions] == ["MAXIMIZE", "MINIMIZE"]
    assert len(study.trials) == 4
    by_gflops = {round(t.values[1], 9) for t in study.trials if t.values}
    assert by_gflops <= {round(g, 9) for g in rows["gflops"]}


@pytest.mark.slow  # 15-35 s: the second tier (CI runs it), keeping `make test` under 8 minutes
def test_early_stopping_stops_weak_trials_and_the_search_finishes(ray_local, tmp_path):
    result = search(
        trivial_space(4),
        experiment="asha",
        num_samples=6,
        sampler="random",
        **search_dirs(tmp_path),
        max_concurrent=1,
        reduction_factor=2,  # the rung's cut is the median: below the first trial's value stops
        objective=lr_ramp,
    )
    rows = result.rows.sort("created_at")
    assert rows.height == 6 and not result.interrupted
    stopped = rows.filter(pl.col("status") == "stopped")
    assert stopped.height >= 1 and (stopped["epochs"] < 4).all()
    assert (rows.filter(pl.col("status") == "ok")["epochs"] == 4).all()
    # Trials run one at a time: a trial stops at rung 1 exactly when it is below every trial
    # recorded there before it (the median of one value is that value).
    first = rows.row(0, named=True)
    assert first["status"] == "ok"
    for row in rows.iter_rows(named=True):
        if row["lr"] < first["lr"]:
            assert row["status"] == "stopped" and row["epochs"] == 1


@pytest.mark.slow  # 10-30 s: the second tier (CI runs it), keeping `make test` under 8 minutes
def test_a_failing_trial_is_recorded_failed_and_the_others_finish(ray_local, tmp_path):
    def objective(cfg, *, context):
        context.report({"epoch": 1, "d2s_recall1": 10.0})
        if cfg.train.lr > 0.007:
            raise ValueError(f"diverged at lr={cfg.train.lr:.4f}")
        context.report({"epoch": 2, "d2s_recall1": 20.0})

    result = search(
        trivial_space(2),
        experiment="fails",
        num_samples=4,
        sampler="random",
        **search_dirs(tmp_path),
        max_concurrent=2,
        early_stopping=False,
        objective=objective,
    )
    rows = result.rows
    assert rows.height == 4
    failed = rows.filter(pl.col("status") == "failed")
    ok = rows.filter(pl.col("status") == "ok")
    assert failed.height >= 1 and ok.height >= 1 and failed.height + ok.height == 4, rows.select(
        "lr", "status", "error"
    ).to_dicts()
    assert (failed["lr"] > 0.007).all() and (ok["lr"] <= 0.007).all()
    for row in failed.iter_rows(named=True):
        assert row["error"] == f"ValueError: diverged at lr={row['lr']:.4f}"
    assert (ok["d2s_recall1"] == 20.0).all() and (ok["epochs"] == 2).all()


@pytest.mark.slow  # 15-35 s: the second tier (CI runs it), keeping `make test` under 8 minutes
def test_interrupted_search_resumes_without_rerunning_or_duplicating(ray_local, tmp_path):
    log = tmp_path / "epochs.log"

    def objective(cfg, *, context):
        import time

        for epoch in (1, 2):
            time.sleep(0.3)
            with open(log, "a") as fh:
                fh.write(f"{cfg.run_name} {epoch}\n")
            context.report({"epoch": epoch, "d2s_recall1": cfg.train.lr * 1000})

    class InterruptAfter:
        """Ctrl-C (SIGINT to this process) once two trials have completed."""

        def __init__(self):
            from ray import tune

            class _Cb(tune.Callback):
                done = 0

                def on_trial_complete(self, iteration, trials, trial, **info):
                    _Cb.done += 1
                    if _Cb.done == 2:
                        os.kill(os.getpid(), signal.SIGINT)

            self.callback = _Cb()

    kwargs = dict(
        experiment="resume",
        num_samples=4,
        sampler="random",
        **search_dirs(tmp_path),
        max_concurrent=1,
        early_stopping=False,
        objective=objective,
    )
    first = search(trivial_space(2), callbacks=[InterruptAfter().callback], **kwargs)
    assert first.interrupted
    # The two finished trials' rows; a trial the interrupt cut has none until it runs again.
    assert first.rows.height == 2 and set(first.rows["status"]) == {"ok"}
    before = {r["trial_id"]: r["created_at"] for r in first.rows.iter_rows(named=True)}
    runs_before = log.read_text().splitlines()

    with pytest.raises(Exception, match="already exists.*--resume"):
        search(trivial_space(2), **kwargs)
    second = search(trivial_space(2), resume=True, **kwargs)
    assert not second.interrupted
    rows = second.rows
    assert rows.height == 4 and rows["trial_id"].n_unique() == 4
    raw = Leaderboard(tmp_path / "lb").scan("resume", dedup=False).collect()
    assert raw.height == 4  # no row written twice
    for trial_id, created in before.items():
        assert rows.filter(pl.col("trial_id") == trial_id)["created_at"].item() == created
    rerun = log.read_text().splitlines()[len(runs_before) :]
    assert not {line.split()[0] for line in rerun} & set(before)  # finished trials not re-run


@pytest.mark.slow  # ~1 min per TorchTrainer trial on 2 shared cores; the rule itself: test_search_rung.py
def test_multi_worker_trials_stop_themselves_by_the_rung_rule(ray_local, tmp_path):
    """Trials hosting a 2-worker TorchTrainer: no scheduler, the rung rule ends weak ones in the loop."""

    def objective(cfg, *, context):
        from geodistill.train.loop import TrainResult

        metrics, stopped = {}, False
        for epoch in range(1, cfg.train.epochs + 1):
            metrics = {"epoch": epoch, "d2s_recall1": cfg.train.lr * 1000 * epoch}
            context.report(metrics)  # every rank reports (Ray Train needs all of them)
            if context.should_stop(epoch, metrics):
                stopped = True
                break
        return TrainResult(
            epochs_done=int(metrics["epoch"]),
            metrics=metrics,
            checkpoint=None,
            stopped_early=stopped,
            skipped_media=0,
        )

    result = search(
        trivial_space(3, **{"scaling.num_workers": 2}),
        experiment="multi",
        num_samples=3,
        sampler="random",
        **search_dirs(tmp_path),
        max_concurrent=1,
        objective=objective,
    )
    rows = result.rows.sort("created_at")
    assert rows.height == 3 and not result.interrupted
    first = rows.row(0, named=True)
    assert first["status"] == "ok" and first["epochs"] == 3
    for row in list(rows.iter_rows(named=True))[1:]:
        if row["lr"] < first["lr"]:
            assert row["status"] == "stopped" and row["epochs"] == 1
    for row in rows.iter_rows(named=True):  # compute counted as in a single-worker trial
        assert row["compute"] == pytest.approx(row["epochs"] * row["gflops"]) and row["compute"] > 0
        assert row["wall_seconds"] > 0
    rungs = json.loads((tmp_path / "tune" / "multi" / "rungs" / "rungs.json").read_text())
    assert set(rungs["1"]) == set(rows["trial_id"])  # every trial passed rung 1 through the store


@pytest.mark.slow  # 15-35 s: the second tier (CI runs it), keeping `make test` under 8 minutes
def test_flops_budget_is_an_optuna_constraint_and_over_budget_trials_never_train(ray_local, tmp_path):
    trained = tmp_path / "trained.log"

    def objective(cfg, *, context):
        with open(trained, "a") as fh:
            fh.write(f"{cfg.data.views}\n")
        context.report({"epoch": 1, "d2s_recall1": 50.0})

    space = parse_space(
        {
            "fixed": {"stage": "teacher", "train.epochs": 1, "data.img_size": 32},
            "params": {"data.views": {"type": "choice", "choices": [1, 8]}},
            "flops_budget": 0.25,  # vit_tiny at 32 px: 0.055 GFLOPs per view (1 view: 0.055, 8 views: 0.44)
        },
        name="budget",
    )
    result = search(
        space,
        experiment="budget",
        num_samples=4,
        sampler="tpe",
        seed=1,  # the cost-weighted start-up draws with seed 1: views 8, 8, 1, 1 (8 views is 8x as dear)
        **search_dirs(tmp_path),
        max_concurrent=2,
        objective=objective,
    )
    rows = result.rows
    assert rows.height == 4
    over = rows.filter(pl.col("gflops") > 0.25)
    under = rows.filter(pl.col("gflops") <= 0.25)
    assert over.height >= 1 and under.height >= 1, rows.select("views", "gflops", "status").to_dicts()
    assert (over["views"] == 8).all() and (over["status"] == "stopped").all()
    assert (
        over["error"].str.starts_with("over the flops budget").all() and over["d2s_recall1"].is_null().all()
    )
    assert (under["status"] == "ok").all() and (under["d2s_recall1"] == 50.0).all()
    assert set(trained.read_text().split()) == {"1"}  # no over-budget model was trained
    study = optuna.load_study(study_name="budget", storage=result.study_url)
    gflops_attr = sorted(round(t.user_attrs["gflops"], 6) for t in study.trials)
    assert gflops_attr == sorted(round(g, 6) for g in rows["gflops"])  # costed before the trial ran
    for t in study.trials:  # the constraint Optuna's samplers read: feasible iff within the budget
        value = t.system_attrs["constraints:gflops_over_budget"]
        assert value == pytest.approx(t.user_attrs["gflops"] - 0.25) and (value <= 0) == (
            t.user_attrs["gflops"] <= 0.25
        )


@pytest.mark.slow  # 10-30 s: one small search
def test_the_front_is_taken_over_the_searchs_own_trials_only(ray_local, tmp_path):
    """A teacher's row in the same experiment (the demo writes one there) never joins the front (issue 29)."""
    from geodistill.leaderboard.rows import write_run_row

    dirs = search_dirs(tmp_path)
    teacher = RunConfig.from_dict({"experiment": "mixed", "run_name": "teacher_4views", "stage": "teacher"})
    # Better and cheaper than any trial: on a front over every row it would be the only point.
    write_run_row(teacher, {"epoch": 1, "d2s_recall1": 99.0}, checkpoint=None, root=dirs["leaderboard"])
    result = search(
        trivial_space(1, name="mixed"), experiment="mixed", num_samples=2, sampler="random",
        **dirs, max_concurrent=1, objective=lr_ramp,
    )  # fmt: skip
    assert result.rows.height == 3 and "teacher_4views" in set(result.rows["trial_id"])
    trials = result.rows.filter(pl.col("trial_id") != "teacher_4views")
    assert result.pareto.height >= 1 and set(result.pareto["trial_id"]) <= set(trials["trial_id"])
    best = trials.sort("d2s_recall1", descending=True).row(0, named=True)
    assert best["trial_id"] in set(result.pareto["trial_id"])
