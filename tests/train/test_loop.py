"""fit() end to end on tiny synthetic UniV sets: the teacher learns, the student distils from it,
the teacher cache hits, resume continues exactly, early stop and divergence end cleanly."""

from __future__ import annotations

import json
import math

import pytest
import torch

from geodistill.data import generate_univ
from geodistill.errors import CheckpointError, ConfigError
from geodistill.eval import METRIC_KEYS, epoch_evaluator, fit_evaluated
from geodistill.models import model_from_config
from geodistill.models.cost import config_cost
from geodistill.train.checkpoint import load_checkpoint
from geodistill.train.config import RunConfig
from geodistill.train.context import InProcessContext
from geodistill.train.loop import TrainingDiverged, fit
from geodistill.train.steps import TrainModule
from geodistill.train.teacher_cache import TeacherOutputs

torch.set_num_threads(1)  # 2 shared cores: keep each test to one

METRIC_KEYS = {
    "epoch", "loss", "loss_task", "loss_logit", "loss_feature", "loss_relation", "skipped_media",
    "epoch_seconds", "train_samples", "train_sample_gflops", *METRIC_KEYS,
}  # fmt: skip


def run_cfg(out, stage="teacher", **sections) -> RunConfig:
    d = {
        "stage": stage,
        "output_dir": str(out),
        "data": {"synth_buildings": 16, "img_size": 32, "batch_size": 4, "views": 2},
        "model": {"backbone": "convnext_atto", "embed_dim": 32},
        "train": {"epochs": 2, "lr": 3e-3, "warmup_steps": 1},
    }
    for key, value in sections.items():
        d[key] = {**d.get(key, {}), **value} if isinstance(value, dict) else value
    return RunConfig.from_dict(d)


def rows(run_dir) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def univ48(tmp_path_factory):
    """24 training buildings, 24 test + 6 distractors (chance R@1 = 1/30)."""
    return generate_univ(tmp_path_factory.mktemp("u48") / "univ", buildings=48, seed=3, img_size=64)


@pytest.fixture(scope="module")
def teacher_run(tmp_path_factory, univ48):
    """Stage 1 for 5 short epochs (15 steps); the student tests distil from its checkpoint."""
    out = tmp_path_factory.mktemp("teacher")
    cfg = run_cfg(
        out,
        data={"root": str(univ48), "batch_size": 8, "views": 1},
        model={"embed_dim": 64},
        train={"epochs": 5, "warmup_steps": 2},
    )
    torch.manual_seed(cfg.train.seed)
    untrained = epoch_evaluator(cfg)(model_from_config(cfg.model, 24), 0)
    result = fit_evaluated(cfg, context=InProcessContext(out / "teacher"))
    return out, cfg, result, untrained


def test_teacher_learns_far_above_chance_and_above_its_init(teacher_run):
    out, _, result, untrained = teacher_run
    m = result.metrics
    chance = 100 / 30
    assert m["d2s_recall1"] >= 10 * chance, m
    assert m["d2s_recall1"] >= untrained["d2s_recall1"] + 15, (untrained["d2s_recall1"], m["d2s_recall1"])
    assert m["s2d_recall1"] >= untrained["s2d_recall1"] + 15, (untrained["s2d_recall1"], m["s2d_recall1"])
    history = rows(out / "teacher")
    assert history[-1]["loss_task"] < history[0]["loss_task"]


def test_fit_reports_every_epoch_and_checkpoints(teacher_run):
    out, _, result, _ = teacher_run
    assert result.epochs_done == 5 and not result.stopped_early and result.skipped_media == 0
    assert result.checkpoint == out / "teacher" / "checkpoints" / "epoch_0005"
    history = rows(out / "teacher")
    assert [r["epoch"] for r in history] == [1, 2, 3, 4, 5]
    assert set(history[-1]) == METRIC_KEYS and history[-1] == result.metrics
    first = history[0]
    assert first["loss_logit"] == first["loss_feature"] == first["loss_relation"] == 0
    assert first["loss"] == pytest.approx(first["loss_task"]) and first["loss"] > 0
    model, meta = load_checkpoint(result.checkpoint)
    assert meta["epoch"] == 5 and meta["metrics"] == result.metrics and model.num_classes == 24
    # 24 buildings in batches of 8: 24 samples an epoch; one view, so a sample's forward is two
    # one-frame queries (drone, satellite), and training costs 3 x that (forward + backward).
    one = config_cost(model.cfg, 1)["gflops"]
    assert first["train_samples"] == 24 and first["train_sample_gflops"] == pytest.approx(3 * 2 * one)
    assert sorted(p.name for p in (out / "teacher" / "checkpoints").iterdir()) == [
        f"epoch_000{i}" for i in range(1, 6)
    ]


def test_synthetic_data_is_generated_once_under_output_dir(tmp_path):
    cfg = run_cfg(tmp_path, train={"epochs": 1, "max_steps_per_epoch": 1})
    fit(cfg, context=InProcessContext(tmp_path / "a"), evaluate_fn=lambda model, epoch: {})
    root = tmp_path / "data" / "synth_16_0"
    stamp = (root / "dataset_split.json").stat().st_mtime_ns
    fit(cfg, context=InProcessContext(tmp_path / "b"), evaluate_fn=lambda model, epoch: {})
    assert (root / "dataset_split.json").stat().st_mtime_ns == stamp
    assert [p.name for p in (tmp_path / "data").iterdir() if not p.name.startswith(".")] == ["synth_16_0"]


def test_student_needs_an_existing_teacher(tmp_path):
    with pytest.raises(ConfigError, match="distill.teacher_checkpoint"):
        fit(run_cfg(tmp_path, "student"), context=InProcessContext(tmp_path / "s"))
    cfg = run_cfg(tmp_path, "student", distill={"teacher_checkpoint": str(tmp_path / "missing")})
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        fit(cfg, context=InProcessContext(tmp_path / "s"))


def student_cfg(out, teacher_run, **sections):
    _, tcfg, teacher, _ = teacher_run
    base = {
        "data": {"root": tcfg.data.root, "batch_size": 8, "views": 2},
        "model": {"backbone": "resnet18", "embed_dim": 32},
        "train": {"epochs": 2, "max_steps_per_epoch": 2},
        "distill": {"teacher_checkpoint": str(teacher.checkpoint)},
    }
    for key, value in sections.items():
        base[key] = {**base.get(key, {}), **value}
    return run_cfg(out, "student", **base)


def test_a_students_training_cost_adds_the_teachers_forward_unless_it_is_cached(teacher_run, tmp_path):
    """2 views, teacher on 2 frames: (3 x student + teacher) x (2-frame query + 1-frame satellite)."""
    _, tcfg, _, _ = teacher_run
    no_eval = {"evaluate_fn": lambda model, epoch: {}}
    short = {"epochs": 1, "max_steps_per_epoch": 1}
    off = student_cfg(tmp_path, teacher_run, train=short, distill={"cache_teacher": False})
    m = fit(off, context=InProcessContext(tmp_path / "off"), **no_eval).metrics
    student = config_cost(off.model, 2)["gflops"] + config_cost(off.model, 1)["gflops"]
    teacher = config_cost(tcfg.model, 2)["gflops"] + config_cost(tcfg.model, 1)["gflops"]
    assert m["train_samples"] == 8  # one step of 8 buildings
    assert m["train_sample_gflops"] == pytest.approx(3 * student + teacher)
    cached = student_cfg(tmp_path, teacher_run, train=short)
    m = fit(cached, context=InProcessContext(tmp_path / "on"), **no_eval).metrics
    assert m["train_sample_gflops"] == pytest.approx(3 * student)  # the cache's outputs cost nothing


def test_student_reports_every_distillation_level(teacher_run, tmp_path):
    cfg = student_cfg(tmp_path, teacher_run, distill={"w_self": 0.5})
    result = fit(cfg, context=InProcessContext(tmp_path / "student"), evaluate_fn=lambda model, epoch: {})
    m = result.metrics
    assert result.epochs_done == 2
    assert m["loss_logit"] > 0 and m["loss_feature"] > 0 and m["loss_relation"] > 0
    d = cfg.distill
    # total = the weighted reported parts + w_self * self-distillation (not a METRIC KEY): larger
    weighted = (
        d.w_task * m["loss_task"] + d.w_logit * m["loss_logit"]
        + d.w_feature * m["loss_feature"] + d.w_relation * m["loss_relation"]
    )  # fmt: skip
    assert m["loss"] > weighted + 1e-4
    model, _ = load_checkpoint(result.checkpoint)
    assert model.cfg.backbone == "resnet18"


@pytest.mark.slow  # 10-30 s: the second tier (CI runs it), keeping `make test` under 8 minutes
def test_distillation_moves_the_student_toward_the_teacher(teacher_run, tmp_path):
    """KD only (no task loss): the student-teacher divergence falls over training."""
    cfg = student_cfg(
        tmp_path, teacher_run,
        train={"epochs": 4, "max_steps_per_epoch": 3, "lr": 3e-3},
        distill={"w_task": 0.0, "w_feature": 0.0, "w_relation": 1.0, "w_logit": 1.0},
    )  # fmt: skip
    fit(cfg, context=InProcessContext(tmp_path / "kd"), evaluate_fn=lambda model, epoch: {})
    history = rows(tmp_path / "kd")
    assert history[-1]["loss_relation"] < 0.8 * history[0]["loss_relation"], history
    assert history[-1]["loss_logit"] < history[0]["loss_logit"], history


@pytest.mark.slow  # 15-35 s: the second tier (CI runs it), keeping `make test` under 8 minutes
def test_teacher_cache_hits_on_the_second_run_with_identical_losses(teacher_run, tmp_path, monkeypatch):
    forwards = []
    real_forward = TeacherOutputs._forward

    def counting_forward(self, drone, satellite):
        forwards.append(drone.shape[0])
        return real_forward(self, drone, satellite)

    monkeypatch.setattr(TeacherOutputs, "_forward", counting_forward)
    cfg = student_cfg(tmp_path, teacher_run)
    no_eval = {"evaluate_fn": lambda model, epoch: {}}
    fit(cfg, context=InProcessContext(tmp_path / "cold"), **no_eval)
    cold = len(forwards)
    assert cold == 4  # 2 epochs x 2 steps
    cached = sorted(p.name for p in next((tmp_path / "teacher_cache").iterdir()).iterdir())
    assert len(cached) == 2 * 2 * 8 and cached[0].startswith("e0001_")  # one file per (epoch, sample)
    fit(cfg, context=InProcessContext(tmp_path / "warm"), **no_eval)
    assert len(forwards) == cold  # warm cache: the teacher never ran
    off = student_cfg(tmp_path, teacher_run, distill={"cache_teacher": False})
    fit(off, context=InProcessContext(tmp_path / "off"), **no_eval)
    assert len(forwards) == 2 * cold  # no cache: every batch runs the teacher
    keys = ("loss", "loss_task", "loss_logit", "loss_feature", "loss_relation")
    losses = {run: [[r[k] for k in keys] for r in rows(tmp_path / run)] for run in ("cold", "warm", "off")}
    assert losses["cold"] == losses["warm"] == losses["off"]


@pytest.mark.slow  # 15-35 s: the second tier (CI runs it), keeping `make test` under 8 minutes
def test_a_teacher_with_more_views_teaches_a_student_with_fewer(teacher_run, tmp_path, monkeypatch):
    """distill.teacher_views=4, data.views=2: the teacher runs on 4 frames a video, the student on 2."""
    seen = {"teacher": [], "student": []}
    teacher_forward, student_forward = TeacherOutputs._forward, TrainModule.forward

    def record_teacher(self, drone, satellite):
        seen["teacher"].append(tuple(drone.shape))
        return teacher_forward(self, drone, satellite)

    def record_student(self, drone, satellite, labels, teacher=None):
        seen["student"].append(tuple(drone.shape))
        return student_forward(self, drone, satellite, labels, teacher)

    monkeypatch.setattr(TeacherOutputs, "_forward", record_teacher)
    monkeypatch.setattr(TrainModule, "forward", record_student)
    cfg = student_cfg(tmp_path, teacher_run, distill={"teacher_views": 4})
    result = fit(cfg, context=InProcessContext(tmp_path / "mv"), evaluate_fn=lambda model, epoch: {})
    assert {s[:2] for s in seen["teacher"]} == {(8, 4)} and len(seen["teacher"]) == 4  # 2 epochs x 2 steps
    assert {s[:2] for s in seen["student"]} == {(8, 2)}
    assert result.metrics["loss_relation"] > 0 and math.isfinite(result.metrics["loss"])
    # the teacher cache keys on the teacher's view count: a 2-view run does not reuse 4-view outputs
    fit(
        student_cfg(tmp_path, teacher_run),
        context=InProcessContext(tmp_path / "sv"),
        evaluate_fn=lambda m, e: {},
    )
    assert len(list((tmp_path / "teacher_cache").iterdir())) == 2


@pytest.mark.slow  # 10-30 s: the second tier (CI runs it), keeping `make test` under 8 minutes
def test_resume_continues_from_the_saved_epoch_exactly(tmp_path):
    cfg = run_cfg(tmp_path, train={"epochs": 3})
    no_eval = {"evaluate_fn": lambda model, epoch: {"d2s_recall1": float(epoch)}}
    straight = fit(cfg, context=InProcessContext(tmp_path / "straight"), **no_eval)
    first = fit(cfg, context=InProcessContext(tmp_path / "resumed", stop_after=1), **no_eval)
    assert first.epochs_done == 1 and first.stopped_early
    second = fit(cfg, context=InProcessContext(tmp_path / "resumed"), **no_eval)
    assert second.epochs_done == 3 and not second.stopped_early
    assert [r["epoch"] for r in rows(tmp_path / "resumed")] == [1, 2, 3]  # no duplicate epoch
    # model, optimizer, scheduler and RNG restored: the same numbers as without the interruption
    for a, b in zip(rows(tmp_path / "straight"), rows(tmp_path / "resumed")):
        assert a["loss"] == b["loss"], (a, b)
    s_model, _ = load_checkpoint(straight.checkpoint)
    r_model, _ = load_checkpoint(second.checkpoint)
    for (name, a), b in zip(s_model.state_dict().items(), r_model.state_dict().values()):
        assert torch.equal(a, b), name
    # a finished run resumed again trains nothing and returns the last metrics
    again = fit(cfg, context=InProcessContext(tmp_path / "resumed"), **no_eval)
    assert again.epochs_done == 3 and again.metrics["epoch"] == 3
    assert len(rows(tmp_path / "resumed")) == 3


def test_divergence_stops_with_one_line_and_keeps_the_last_good_checkpoint(tmp_path):
    cfg = run_cfg(
        tmp_path,
        train={"epochs": 3, "lr": 10.0, "backbone_lr_mult": 100.0, "warmup_steps": 0, "grad_clip": 0.0},
    )
    calls = []

    def evaluate(model, epoch):
        calls.append(epoch)
        return {}

    with pytest.raises(TrainingDiverged) as err:
        fit(cfg, context=InProcessContext(tmp_path / "nan"), evaluate_fn=evaluate)
    msg = str(err.value)
    # lr is at its declared maximum: epoch 1 survives (its checkpoint is the last good one), epoch 2 does not
    assert msg.startswith("loss became non-finite at epoch 2 step 1") and "\n" not in msg
    assert msg.endswith("the last good checkpoint is kept")
    checkpoints = sorted(p.name for p in (tmp_path / "nan" / "checkpoints").iterdir())
    assert checkpoints == ["epoch_0001"] and calls == [1]


def test_corrupt_frames_are_skipped_and_counted_through_loader_workers(tmp_path):
    root = generate_univ(tmp_path / "univ", buildings=16, seed=5, img_size=64)
    drone_dir = root / "45" / "2fps" / "train" / "drone"
    building = sorted(drone_dir.iterdir())[0]
    frames = sorted(building.iterdir())
    for frame in frames[1:]:  # only frame 0 of this flight still decodes
        frame.write_bytes(b"not a jpeg")
    cfg = run_cfg(
        tmp_path,
        data={"root": str(root), "views": 3, "loader_workers": 1},
        train={"epochs": 2},
    )
    result = fit(cfg, context=InProcessContext(tmp_path / "run"), evaluate_fn=lambda model, epoch: {})
    history = rows(tmp_path / "run")
    assert result.epochs_done == 2 and result.skipped_media > 0
    assert history[-1]["skipped_media"] == result.skipped_media >= history[0]["skipped_media"] > 0
