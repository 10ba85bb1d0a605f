"""SearchPlan: the one composition of a trial's RunConfig, and what the space implies for a search."""

from __future__ import annotations

import pytest

from geodistill.errors import CheckpointError, ConfigError
from geodistill.platform.search.plan import SearchPlan
from geodistill.platform.search.space import parse_space
from geodistill.train.config import RunConfig

LR = {"type": "loguniform", "low": 1e-4, "high": 1e-2}


def test_a_trial_is_the_base_then_the_fixed_part_then_the_sampled_values():
    base = RunConfig.from_dict({"train": {"lr": 0.5, "epochs": 7}, "data": {"views": 3}})
    space = parse_space({"fixed": {"train.epochs": 2, "stage": "teacher"}, "params": {"train.lr": LR}})
    plan = SearchPlan.build(space, base)
    cfg = plan.config({"train.lr": 1e-3})
    assert (cfg.train.lr, cfg.train.epochs, cfg.data.views, cfg.stage) == (1e-3, 2, 3, "teacher")
    assert plan.base.train.lr == 0.5 and plan.config({"train.lr": 2e-3}).train.lr == 2e-3  # nothing leaks
    assert (plan.stage, plan.ray_train, plan.max_epochs, plan.metric) == ("teacher", False, 2, "d2s_recall1")


def test_the_epoch_budget_is_the_longest_trial():
    space = parse_space(
        {"fixed": {"stage": "teacher"}, "params": {"train.epochs": {"type": "choice", "choices": [2, 5, 3]}}}
    )
    assert SearchPlan.build(space, RunConfig()).max_epochs == 5


@pytest.mark.parametrize("workers, on_ray_train", [(0, False), (1, True), (2, True)])
def test_num_workers_means_in_a_search_what_it_means_for_train(workers, on_ray_train):
    """0: fit in the calling process; N >= 1: N Ray Train workers, in `train` and in a trial alike."""
    space = parse_space(
        {"fixed": {"scaling.num_workers": workers, "stage": "teacher"}, "params": {"train.lr": LR}}
    )
    plan = SearchPlan.build(space, RunConfig())
    cfg = plan.config({"train.lr": 1e-3})
    assert cfg.scaling.num_workers == workers  # a trial never rewrites it
    assert cfg.scaling.in_process is (not on_ray_train)
    assert plan.ray_train is on_ray_train


def test_a_sampled_worker_count_of_one_puts_the_search_on_ray_train():
    def plan(spec):
        space = parse_space({"fixed": {"stage": "teacher"}, "params": {"scaling.num_workers": spec}})
        return SearchPlan.build(space, RunConfig())

    assert not plan({"type": "choice", "choices": [0]}).ray_train
    assert plan({"type": "choice", "choices": [0, 1]}).ray_train
    assert plan({"type": "int", "low": 0, "high": 1}).ray_train


def test_a_student_space_needs_a_teacher_that_is_there(tmp_path):
    space = parse_space({"fixed": {"stage": "student"}, "params": {"train.lr": LR}})
    with pytest.raises(ConfigError, match="trains students: give --teacher"):
        SearchPlan.build(space, RunConfig())
    with pytest.raises(CheckpointError, match="teacher checkpoint not found"):
        SearchPlan.build(space, RunConfig(), teacher=str(tmp_path / "missing"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="no checkpoint here"):
        SearchPlan.build(space, RunConfig(), teacher=str(tmp_path / "empty"))
    draft = SearchPlan.build(space, RunConfig(), check_teacher=False)  # what --smoke-test trains one for
    assert draft.stage == "student" and draft.first_config().train.lr == pytest.approx(1e-4)


def test_the_metric_option_replaces_the_spaces():
    space = parse_space({"fixed": {"stage": "teacher"}, "params": {"train.lr": LR}})
    assert SearchPlan.build(space, RunConfig(), metric="s2d_ap").metric == "s2d_ap"


def test_the_plan_moves_the_output_folder_only():
    space = parse_space({"fixed": {"stage": "teacher"}, "params": {"train.lr": LR}})
    plan = SearchPlan.build(space, RunConfig())
    moved = plan.with_output_dir("/elsewhere/work")
    assert moved.config({"train.lr": 1e-3}).output_dir == "/elsewhere/work"
    assert plan.config({"train.lr": 1e-3}).output_dir == RunConfig().output_dir


def test_options_and_plan_import_no_ray():
    """The CLI builds `geodistill search`'s flags from SearchOptions: its --help must not start Ray's imports."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "import geodistill.platform.search.options, geodistill.platform.search.plan\n"
        "import geodistill.platform.cli.commands.search\n"
        "print(sorted({m.split('.')[0] for m in sys.modules if m == 'ray' or m.startswith('ray.')}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_options_have_one_default_each_and_name_the_flag_when_refused():
    from geodistill.platform.search.options import SearchOptions

    defaults = SearchOptions()
    assert (defaults.reduction_factor, defaults.grace_period, defaults.num_samples) == (4.0, 1, 8)
    with pytest.raises(ConfigError, match=r"^--reduction-factor must be > 1"):
        SearchOptions(reduction_factor=1.0).check()
    with pytest.raises(ConfigError, match=r"^--time-budget must be > 0"):
        SearchOptions(time_budget_s=0.0).check()
    with pytest.raises(ConfigError, match=r"^--logger must be one of"):
        SearchOptions(loggers="tensorbored").check()
    with pytest.raises(ConfigError, match=r"--gpus-per-trial above 1 must be a whole number"):
        SearchOptions(gpus_per_trial=1.5).check()
    assert SearchOptions(experiment="x").named("space").experiment == "x"
    assert SearchOptions().named("space").experiment.startswith("space-")
