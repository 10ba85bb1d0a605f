"""RunConfig: building from a mapping (types, unknown keys, the shared image size), cross-field rules, round trip."""

from __future__ import annotations

import pytest

from geodistill.errors import ConfigError
from geodistill.train.config import RunConfig


def test_cross_field_rules():
    with pytest.raises(ConfigError, match="train.offload=true needs train.strategy=deepspeed"):
        RunConfig.from_dict({"train": {"offload": True, "strategy": "ddp"}})
    RunConfig.from_dict({"train": {"offload": True, "strategy": "deepspeed"}})
    with pytest.raises(ConfigError, match="pooling 'token' needs a ViT"):
        RunConfig.from_dict({"model": {"backbone": "resnet18", "pooling": "token"}})
    with pytest.raises(ConfigError, match="data.batch_size=2 is split across scaling.num_workers=4"):
        RunConfig.from_dict({"data": {"batch_size": 2}, "scaling": {"num_workers": 4}})
    with pytest.raises(ConfigError, match="must be a finite number"):
        RunConfig.from_dict({"distill": {"temperature": float("inf")}})
    with pytest.raises(ConfigError, match="experiment must be a plain name"):
        RunConfig.from_dict({"experiment": "../../elsewhere"})


def test_one_image_size_for_data_and_model():
    assert (RunConfig.from_dict({"model": {"img_size": 48}}).data.img_size, RunConfig().model.img_size) == (
        48,
        64,
    )
    cfg = RunConfig.from_dict({"data": {"img_size": 32}})
    assert (cfg.data.img_size, cfg.model.img_size) == (32, 32)
    with pytest.raises(ConfigError, match=r"^data.img_size \(32\) and model.img_size \(48\) differ$"):
        RunConfig.from_dict({"data": {"img_size": 32}, "model": {"img_size": 48}})


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"train": {"epochz": 3}}, "unknown config key train.epochz; did you mean train.epochs?"),
        ({"train": {"epochs": True}}, "train.epochs must be int, got True"),
        ({"train": {"epochs": "3"}}, "train.epochs must be int, got '3'"),
        ({"train": {"lr": None}}, "train.lr must not be null"),
        ({"train": 5}, "train must be a mapping, got int"),
        ({"logger": ""}, "logger must be a comma-separated list (e.g. none); got ''"),
        (
            {"logger": "tensorboard,wandbb"},
            "logger must be one of none, tensorboard, mlflow, wandb; got 'wandbb'",
        ),
        (
            {"train": {"fisd_weight": 0.5}},
            "train.fisd_weight > 0 needs model.stage_heads=true (the per-stage heads)",
        ),
    ],
)
def test_what_from_dict_refuses_in_one_line(config, message):
    with pytest.raises(ConfigError) as err:
        RunConfig.from_dict(config)
    assert str(err.value) == message


def test_coercions_and_the_round_trip():
    cfg = RunConfig.from_dict(
        {"train": {"lr": 1, "epochs": 4}, "logger": "tensorboard, mlflow", "scaling": {"num_workers": 0}}
    )
    assert cfg.train.lr == 1.0 and isinstance(cfg.train.lr, float)  # an int is a float
    assert cfg.logger == ["tensorboard", "mlflow"] and cfg.scaling.in_process
    assert RunConfig.from_dict(cfg.to_dict()) == cfg
    assert cfg.to_dict()["train"]["epochs"] == 4
    with pytest.raises(ConfigError, match="run config must be a mapping, got list"):
        RunConfig.from_dict([])
