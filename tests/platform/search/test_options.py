"""SearchOptions: one default per setting, one-line errors named by the flag, no Ray on import."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import pytest

from geodistill.errors import ConfigError
from geodistill.platform.search.options import SAMPLERS, SearchOptions


def test_defaults_are_the_ones_the_search_benchmark_chose():
    options = SearchOptions()
    assert options.sampler == "tpe" and options.sampler in SAMPLERS
    assert (options.grace_period, options.reduction_factor) == (1, 4.0)
    assert options.early_stopping is True and options.resume is False
    assert options.check() is options


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"num_samples": 0}, "--num-samples must be >= 1"),
        ({"reduction_factor": 1.0}, "--reduction-factor must be > 1"),
        ({"sampler": "cmaes"}, "--sampler must be one of tpe, gp, nsga2, random"),
        ({"loggers": "tensorbord"}, "--logger must be one of none, tensorboard, mlflow, wandb"),
        ({"time_budget_s": -5.0}, "--time-budget must be > 0"),
    ],
)
def test_a_wrong_value_is_one_line_naming_the_flag_the_user_typed(change, message):
    options = dataclasses.replace(SearchOptions(), **change)
    with pytest.raises(ConfigError) as err:
        options.check()
    text = str(err.value)
    assert "\n" not in text
    assert text.startswith(message), text


def test_named_gives_an_unnamed_search_the_space_and_a_utc_time_and_keeps_a_given_name():
    named = SearchOptions().named("smoke").experiment
    assert named.startswith("smoke-") and len(named) == len("smoke-20261206-210000")
    assert SearchOptions(experiment="mine").named("smoke").experiment == "mine"


def test_trials_get_the_options_without_the_driver_side_callbacks():
    options = SearchOptions(callbacks=(object(),))
    assert options.for_trials().callbacks == ()
    assert options.for_trials().num_samples == options.num_samples


def test_every_command_line_setting_is_a_flag_of_geodistill_search():
    help_text = subprocess.run(
        [sys.executable, "-m", "geodistill", "search", "--help"], capture_output=True, text=True, check=True
    ).stdout
    for f in dataclasses.fields(SearchOptions):
        flag = f.metadata.get("flag")
        if flag == "":  # programmatic only (objective, callbacks)
            continue
        flag = flag or "--" + f.name.replace("_", "-")
        assert flag in help_text, f"{f.name} has no flag {flag} in `geodistill search --help`"


def test_importing_the_options_imports_no_ray():
    code = "import sys, geodistill.platform.search.options; print('ray' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
