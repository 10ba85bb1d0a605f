"""Hydra composition: every config file in the tree composes into a valid RunConfig and builds."""

from __future__ import annotations

import pytest
import torch

from geodistill.errors import ConfigError, UnknownBackboneError
from geodistill.models import GeoModel
from geodistill.platform.compose import CONF_DIR, compose_run_config, config_groups

# Options that cannot compose on their own say what they need.
# (data.root must exist: composition reads the dataset's index before anything runs.)
NEEDS = {("data", "univ"): ["data.root={univ}"]}


def _every_option() -> list[tuple[str, str]]:
    return [(group, option) for group, options in config_groups().items() for option in options]


def test_the_tree_has_every_group_and_file_is_covered():
    groups = config_groups()
    assert {"data", "model", "train", "distill", "scaling", "preset"} <= set(groups)
    yaml_files = {p.relative_to(CONF_DIR).as_posix() for p in CONF_DIR.rglob("*.yaml")}
    covered = {"config.yaml", "_bases/model.yaml"} | {f"{g}/{o}.yaml" for g, o in _every_option()}
    assert yaml_files == covered


def test_model_options_inherit_one_base_that_equals_the_dataclass_defaults():
    import dataclasses

    import yaml

    from geodistill.models import ModelConfig

    base = yaml.safe_load((CONF_DIR / "_bases" / "model.yaml").read_text())
    defaults = {f.name: f.default for f in dataclasses.fields(ModelConfig)}
    assert set(base) == set(defaults)  # every field, no stray key
    assert base.pop("img_size") == "${data.img_size}"  # follows the data size, by design
    assert base == {k: v for k, v in defaults.items() if k != "img_size"}
    # Every option inherits the base and states only what differs from it.
    for option in config_groups()["model"]:
        text = yaml.safe_load((CONF_DIR / "model" / f"{option}.yaml").read_text())
        assert text["defaults"] == ["/_bases/model@_here_", "_self_"], option
        own = {k: v for k, v in text.items() if k != "defaults"}
        assert "backbone" in own and all(base.get(k) != v for k, v in own.items() if k != "backbone"), option
        composed = compose_run_config([f"model={option}"]).model
        assert {k: getattr(composed, k) for k in own} == own
        assert composed.embed_dim == base["embed_dim"] and composed.droprate == base["droprate"]


@pytest.mark.parametrize(("group", "option"), _every_option())
def test_every_config_composes_and_instantiates(group, option, synth_univ):
    needs = [n.format(univ=synth_univ) for n in NEEDS.get((group, option), [])]
    cfg = compose_run_config([f"{group}={option}", *needs])
    assert cfg.model.img_size == cfg.data.img_size
    if group == "model" and not option.startswith("dinov2"):
        assert cfg.model.backbone == option
    # Instantiate: the model on the meta device (shapes and wiring, no weights allocated).
    with torch.device("meta"):
        model = GeoModel(cfg.model, num_classes=cfg.data.synth_buildings)
    assert sum(p.numel() for p in model.parameters()) > 0
    assert cfg.to_dict() == type(cfg).from_dict(cfg.to_dict()).to_dict()


def test_defaults_and_overrides_reach_the_typed_config():
    cfg = compose_run_config([])
    assert (cfg.stage, cfg.model.backbone, cfg.scaling.num_workers, cfg.train.strategy) == (
        "teacher",
        "vit_tiny",
        0,
        "ddp",
    )
    cfg = compose_run_config(
        ["model=resnet18", "data.img_size=48", "train.lr=3e-4", "train.strategy=deepspeed", "distill=none"]
    )
    assert cfg.model.backbone == "resnet18" and cfg.model.img_size == 48 and cfg.data.img_size == 48
    assert cfg.train.lr == pytest.approx(3e-4) and cfg.train.strategy == "deepspeed"
    assert (cfg.distill.w_logit, cfg.distill.w_feature, cfg.distill.w_relation, cfg.distill.w_task) == (
        0.0,
        0.0,
        0.0,
        1.0,
    )


def test_pfed_presets_carry_the_papers_recipe():
    student = compose_run_config(["preset=pfed"])
    assert (student.stage, student.model.backbone, student.model.pooling) == (
        "student",
        "convnext_tiny",
        "gem",
    )
    assert student.model.stage_heads and student.model.refiner == "mi" and student.model.pretrained
    t = student.train
    assert (t.stage_ce_weight, t.fisd_weight, t.triplet_weight, t.uapa_weight) == (1.0, 1.0, 1.0, 1.0)
    assert t.fisd_direction == "inverse" and t.infonce_weight == 1.0
    assert (student.distill.w_logit, student.distill.w_feature, student.distill.w_relation) == (1.0, 1.0, 0.0)
    teacher = compose_run_config(["preset=pfed_teacher"])
    assert (teacher.stage, teacher.model.pooling, teacher.train.triplet_weight) == ("teacher", "gem", 1.0)
    assert teacher.model.pretrained and teacher.model.trainable_blocks == 2
    assert not teacher.model.stage_heads and teacher.train.fisd_weight == 0.0


def test_smoke_preset_is_tiny_and_keeps_an_explicit_model_choice():
    cfg = compose_run_config(["preset=smoke"])
    assert (cfg.model.backbone, cfg.data.img_size, cfg.train.epochs, cfg.train.max_steps_per_epoch) == (
        "vit_tiny",
        32,
        1,
        2,
    )
    cfg = compose_run_config(["preset=smoke", "model=resnet18", "train.epochs=2"])
    assert (cfg.model.backbone, cfg.data.img_size, cfg.train.epochs) == ("resnet18", 32, 2)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["model.foo=1"], "unknown config key model.foo"),
        (["+model.foo=1"], "unknown config key model.foo"),
        (["nonsense=1"], "unknown config key nonsense"),
        (["model=nope"], "unknown model option 'nope'; available: convnext_atto,"),
        (["train.lr=="], "bad override: 'train.lr=='"),
        (["model.img_size"], "bad override: 'model.img_size': missing EQUAL"),
        (["data=univ"], "data.root is required (set it with data.root=...)"),
        (
            ["train.strategy=horovod"],
            "train.strategy must be one of ddp, accelerate, deepspeed; got 'horovod'",
        ),
        (["train.lr=fast"], "train.lr must be float, got 'fast'"),
        (["model.img_size=96"], "data.img_size (64) and model.img_size (96) differ"),
        (["train.lr=${nowhere}"], "Interpolation key 'nowhere' not found"),
    ],
)
def test_bad_overrides_raise_one_line_config_errors(overrides, message):
    with pytest.raises(ConfigError) as info:
        compose_run_config(overrides)
    text = str(info.value)
    assert message in text
    assert "\n" not in text


def test_unknown_backbone_is_refused_at_compose_time():
    with pytest.raises(
        UnknownBackboneError,
        match="unknown backbone 'vit_huge': not in timm.list_models\\(\\) nor an alias; known: vit_tiny",
    ):
        compose_run_config(["model.backbone=vit_huge"])


def test_user_config_dir_adds_options_or_replaces_the_primary(tmp_path):
    extra = tmp_path / "extra"
    (extra / "model").mkdir(parents=True)
    (extra / "model" / "mine.yaml").write_text(
        "backbone: resnet18\nimg_size: ${data.img_size}\nembed_dim: 96\n"
    )
    cfg = compose_run_config(["model=mine"], config_dir=extra)
    assert (cfg.model.backbone, cfg.model.embed_dim) == ("resnet18", 96)
    assert compose_run_config(["model=vit_small"], config_dir=extra).model.backbone == "vit_small"

    primary = tmp_path / "primary"
    primary.mkdir()
    (primary / "config.yaml").write_text(
        "defaults:\n  - data: synth\n  - model: convnext_atto\n  - _self_\nexperiment: mine\n"
    )
    cfg = compose_run_config([], config_dir=primary)
    assert (cfg.experiment, cfg.model.backbone) == ("mine", "convnext_atto")
    with pytest.raises(ConfigError, match="does not exist"):
        compose_run_config([], config_dir=tmp_path / "missing")
