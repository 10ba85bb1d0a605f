"""Search spaces: every shipped space validates and composes; bad spaces fail with one line naming the key."""

from __future__ import annotations

import optuna
import pytest
import yaml

from geodistill import config_files
from geodistill.errors import ConfigError
from geodistill.platform.search.plan import SearchPlan
from geodistill.platform.search.space import (
    load_space,
    parse_space,
    resolve_space,
    shared_distributions,
    suggest,
)
from geodistill.train.config import RunConfig

SPACES = config_files.CONF_DIR / "search_space"
SHIPPED = config_files.names("search_space")

optuna.logging.set_verbosity(optuna.logging.WARNING)


def test_the_three_spaces_ship():
    assert {"distill", "views_fps", "smoke"} <= set(SHIPPED)


@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_space_validates_and_composes_into_run_configs(name, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # a packaged name is found from any directory
    space = load_space(name)
    assert space.path == SPACES / f"{name}.yaml"
    study = optuna.create_study(
        directions=["maximize", "minimize"], sampler=optuna.samplers.RandomSampler(seed=0)
    )
    plan = SearchPlan.build(space, RunConfig(), check_teacher=False)
    for _ in range(12):
        params = suggest(study.ask(), space)
        cfg = plan.config(params)
        assert isinstance(cfg, RunConfig)
        for key, value in {**space.fixed, **params}.items():
            section, field = key.split(".") if "." in key else (None, key)
            got = getattr(getattr(cfg, section), field) if section else getattr(cfg, field)
            assert got == value, key
        assert cfg.data.img_size == cfg.model.img_size


def test_conditional_parameter_is_sampled_only_when_its_condition_holds():
    space = parse_space(
        {
            "params": {
                "model.refiner": {"type": "choice", "choices": ["mean", "select"]},
                "model.refiner_k": {"type": "int", "low": 2, "high": 8, "when": {"model.refiner": "select"}},
            }
        }
    )
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    seen = set()
    for _ in range(30):
        params = suggest(study.ask(), space)
        seen.add(params["model.refiner"])
        assert ("model.refiner_k" in params) == (params["model.refiner"] == "select")
        if "model.refiner_k" in params:
            assert 2 <= params["model.refiner_k"] <= 8
    assert seen == {"mean", "select"}


def test_loguniform_and_step_reach_optuna_distributions():
    space = parse_space(
        {
            "params": {
                "train.lr": {"type": "loguniform", "low": 1e-4, "high": 1e-2},
                "distill.w_logit": {"type": "uniform", "low": 0.0, "high": 1.0, "step": 0.25},
                "data.views": {"type": "int", "low": 1, "high": 16, "log": True},
            }
        }
    )
    study = optuna.create_study()
    trial = study.ask()
    suggest(trial, space)
    dist = trial.distributions
    assert dist["train.lr"].log and dist["train.lr"].low == 1e-4
    assert dist["distill.w_logit"].step == 0.25
    assert dist["data.views"].log and isinstance(dist["data.views"], optuna.distributions.IntDistribution)
    # What a sampler is told before any trial ran is what suggest samples.
    assert shared_distributions(space) == dist


def test_shared_distributions_leave_out_conditional_parameters():
    space = parse_space(
        {
            "params": {
                "model.refiner": {"type": "choice", "choices": ["mean", "select"]},
                "model.refiner_k": {"type": "int", "low": 2, "high": 8, "when": {"model.refiner": "select"}},
            }
        }
    )
    assert shared_distributions(space) == {
        "model.refiner": optuna.distributions.CategoricalDistribution(["mean", "select"])
    }


def test_resolve_space_by_name_config_dir_and_path(tmp_path):
    (tmp_path / "search_space").mkdir()
    mine = tmp_path / "search_space" / "mine.yaml"
    mine.write_text(yaml.safe_dump({"params": {"train.lr": {"type": "uniform", "low": 0.1, "high": 0.2}}}))
    assert resolve_space("mine", config_dir=tmp_path) == mine.resolve()
    assert resolve_space("smoke", config_dir=tmp_path) == SPACES / "smoke.yaml"  # packaged still found
    assert load_space(str(mine)).params[0].name == "train.lr"
    assert load_space("mine", config_dir=tmp_path).path == mine.resolve()
    with pytest.raises(ConfigError, match="unknown search space 'nope'; known: demo, .*mine.*smoke"):
        resolve_space("nope", config_dir=tmp_path)
    with pytest.raises(ConfigError, match="unknown search space 'mine'"):
        resolve_space("mine")  # without the config dir
    with pytest.raises(ConfigError, match="search space file not found"):
        resolve_space(str(tmp_path / "missing.yaml"))
    with pytest.raises(ConfigError, match="config dir .* does not exist"):
        resolve_space("smoke", config_dir=tmp_path / "absent")


def test_a_user_space_extends_a_packaged_one(tmp_path):
    (tmp_path / "wider.yaml").write_text("defaults:\n  - smoke\n  - _self_\nflops_budget: 9.0\n")
    space = load_space(tmp_path / "wider.yaml")
    assert space.flops_budget == 9.0 and space.fixed == load_space("smoke").fixed


def test_hydra_defaults_let_a_space_extend_another(tmp_path):
    (tmp_path / "base.yaml").write_text(
        yaml.safe_dump(
            {
                "fixed": {"train.epochs": 3},
                "params": {"train.lr": {"type": "uniform", "low": 0.1, "high": 0.2}},
            }
        )
    )
    (tmp_path / "child.yaml").write_text(
        "defaults:\n  - base\n  - _self_\nflops_budget: 2.5\nfixed:\n  train.epochs: 5\n"
    )
    space = load_space(tmp_path / "child.yaml")
    assert space.fixed == {"train.epochs": 5} and space.flops_budget == 2.5
    assert [p.name for p in space.params] == ["train.lr"]


LR = {"type": "loguniform", "low": 1e-4, "high": 1e-2}


@pytest.mark.parametrize(
    ("space", "message"),
    [
        ({"params": {"train.nope": LR}}, r"params\.train\.nope is not a run config key"),
        ({"params": {"train": LR}}, r"params\.train is not a run config key"),
        (
            {"params": {"train.lr": {"type": "uniform", "low": 0.5, "high": 0.5}}},
            r"params\.train\.lr: low \(0\.5\) must be < high",
        ),
        (
            {"params": {"train.lr": {"type": "loguniform", "low": 0.0, "high": 1.0}}},
            r"params\.train\.lr: a log-scale bound must be > 0",
        ),
        (
            {"params": {"train.lr": {"type": "uniform", "low": -1, "high": 1, "log": True}}},
            r"params\.train\.lr: a log-scale bound",
        ),
        (
            {"params": {"train.lr": {"type": "normal", "low": 0, "high": 1}}},
            r"params\.train\.lr\.type must be one of loguniform, uniform, int, choice; got 'normal'",
        ),
        (
            {"params": {"model.backbone": {"type": "choice", "choices": ["vit_tiny", "vit_huge"]}}},
            r"params\.model\.backbone: unknown backbone 'vit_huge'",
        ),
        (
            {"params": {"data.fps": {"type": "choice", "choices": [2, 7]}}},
            r"params\.data\.fps: data\.fps must be one of 2, 5, 10; got 7",
        ),
        (
            {"params": {"model.refiner": {"type": "choice", "choices": ["mean", "lstm"]}}},
            r"params\.model\.refiner: unknown refiner 'lstm'",
        ),
        (
            {"params": {"data.views": {"type": "int", "low": 0, "high": 4}}},
            r"params\.data\.views: data\.views must be >= 1",
        ),
        (
            {"params": {"data.views": {"type": "int", "low": 1.5, "high": 4}}},
            r"params\.data\.views: low must be an integer",
        ),
        (
            {"params": {"train.lr": {"type": "choice", "choices": []}}},
            r"params\.train\.lr: choice needs a non-empty list",
        ),
        (
            {
                "params": {
                    "model.refiner_k": {
                        "type": "int",
                        "low": 1,
                        "high": 4,
                        "when": {"model.refiner": "select"},
                    }
                }
            },
            r"when refers to 'model\.refiner', which is not a parameter listed before it",
        ),
        (
            {
                "params": {"train.lr": LR, "train.epochs": {"type": "int", "low": 1, "high": 3}},
                "fixed": {"train.epochs": 2},
            },
            r"params\.train\.epochs is also in fixed",
        ),
        (
            {"params": {"train.lr": LR}, "fixed": {"train.colour": "red"}},
            r"fixed\.train\.colour is not a run config key",
        ),
        (
            {"params": {"train.lr": LR}, "fixed": {"stage": "pupil"}},
            r"fixed\.stage: stage must be one of teacher, student",
        ),
        (
            {"params": {"train.lr": LR}, "objectives": {"metric": "accuracy"}},
            r"objectives\.metric must be one of d2s_recall1",
        ),
        ({"params": {"train.lr": LR}, "flops_budget": -1}, r"flops_budget must be > 0"),
        ({"params": {"train.lr": LR}, "flops_budget": "2"}, r"flops_budget must be float or null, got '2'"),
        ({"params": {"train.lr": LR}, "sampler": "tpe"}, r"unknown config key sampler"),
        ({"params": {"train.lr": {"low": 1, "high": 2}}}, r"params\.train\.lr\.type is required"),
        ({"params": {"train.lr": {**LR, "log": "yes"}}}, r"params\.train\.lr\.log must be bool"),
        ({"params": {}}, r"params must be a non-empty mapping"),
        ({"params": {"train.lr": {**LR, "hgih": 3}}}, r"unknown config key params\.train\.lr\.hgih"),
    ],
)
def test_bad_spaces_are_rejected_with_one_line_naming_the_key(space, message):
    with pytest.raises(ConfigError, match=message) as err:
        parse_space(space, name="bad")
    text = str(err.value)
    assert "\n" not in text and text.startswith("search space bad")


def test_malformed_yaml_is_one_line(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("params: {train.lr: [unclosed\n")
    with pytest.raises(ConfigError, match="search space broken.yaml") as err:
        load_space(path)
    assert "\n" not in str(err.value)


def test_a_convnet_choice_with_token_pooling_is_rejected_before_any_trial():
    base = RunConfig().to_dict()
    base["model"]["pooling"] = "token"
    space = {"params": {"model.backbone": {"type": "choice", "choices": ["vit_tiny", "resnet18"]}}}
    with pytest.raises(ConfigError, match=r"params\.model\.backbone: resnet18 has no class token"):
        parse_space(space, name="bad", base=base)
    parse_space({**space, "fixed": {"model.pooling": "avg"}}, name="ok", base=base)


def test_reading_a_space_imports_no_ray_tune_and_the_package_names_load_lazily():
    import subprocess
    import sys

    code = (
        "import sys\n"
        "import geodistill.platform.search as search\n"
        "from geodistill.platform.search import parse_space\n"
        "print('ray.tune' in sys.modules, 'run_search' in dir(search), callable(parse_space))\n"
        "try:\n"
        "    search.nope\n"
        "except AttributeError as err:\n"
        "    print(err)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.splitlines() == [
        "False True True",
        "module 'geodistill.platform.search' has no attribute 'nope'",
    ]
