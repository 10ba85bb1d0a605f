"""Hydra composition: every config file in the tree composes into a valid RunConfig and builds."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import yaml

from geodistill.config_files import FILE_GROUPS
from geodistill.errors import ConfigError, UnknownBackboneError
from geodistill.models import GeoModel, ModelConfig
from geodistill.platform.compose import CONF_DIR, compose_run_config, config_groups
from geodistill.train.config import DataConfig, DistillConfig, RunConfig, ScalingConfig, TrainConfig

# Options that cannot compose on their own say what they need.
# (data.root must exist: composition reads the dataset's index before anything runs.)
NEEDS = {("data", "univ"): ["data.root={univ}"]}


def _every_option() -> list[tuple[str, str]]:
    return [(group, option) for group, options in config_groups().items() for option in options]


# The dataclass that types each config group; a new group must be added here (the tree test says so).
GROUP_TYPES = {
    "data": DataConfig,
    "model": ModelConfig,
    "train": TrainConfig,
    "distill": DistillConfig,
    "scaling": ScalingConfig,
}


# Options that cannot inherit their group's base, and why; they must then name every field.
STANDALONE = {
    # A required `root: ???` cannot be merged over an inherited value: OmegaConf keeps the old one.
    ("data", "univ"): "root must stay required",
}


def _yaml(relative: str) -> dict:
    return yaml.safe_load((CONF_DIR / relative).read_text()) or {}


def _chosen() -> dict[str, str]:
    """Group -> the option config.yaml's defaults list picks."""
    return {
        k: v
        for entry in _yaml("config.yaml")["defaults"]
        if isinstance(entry, dict)
        for k, v in entry.items()
    }


def _base(group: str) -> tuple[str, str, dict]:
    """The one file a group's defaults are written in: ``_bases/<group>.yaml``, else the chosen option.

    Returns (its path under conf/, how an option names it in its defaults list, its keys).
    """
    if (CONF_DIR / "_bases" / f"{group}.yaml").is_file():
        return f"_bases/{group}.yaml", f"/_bases/{group}@_here_", _yaml(f"_bases/{group}.yaml")
    option = _chosen()[group]
    return f"{group}/{option}.yaml", option, _yaml(f"{group}/{option}.yaml")


def test_the_tree_has_every_group_and_file_is_covered():
    groups = config_groups()
    assert set(groups) == {*GROUP_TYPES, "preset"}  # a new group needs its dataclass in GROUP_TYPES
    assert set(_chosen()) == set(groups)
    yaml_files = {p.relative_to(CONF_DIR).as_posix() for p in CONF_DIR.rglob("*.yaml")}
    covered = {"config.yaml", "_bases/model.yaml"} | {f"{g}/{o}.yaml" for g, o in _every_option()}
    whole_files = {f for f in yaml_files if f.split("/")[0] in FILE_GROUPS}  # tests/test_config_files.py
    assert yaml_files - whole_files == covered


@pytest.mark.parametrize("group", sorted(GROUP_TYPES))
def test_each_group_writes_its_defaults_once_and_they_equal_the_dataclass(group):
    """The base file of a group holds every field at its dataclass default; every other option
    inherits it and states only what differs, so a default lives in one YAML line and one field."""
    path, ref, base = _base(group)
    defaults = {f.name: f.default for f in dataclasses.fields(GROUP_TYPES[group])}
    assert set(base) == set(defaults), path  # every field, no stray key, no defaults list of its own
    if group == "model":
        assert base.pop("img_size") == "${data.img_size}"  # follows the data size, by design
        defaults.pop("img_size")
    assert base == defaults, path
    for option in config_groups()[group]:
        if f"{group}/{option}.yaml" == path:
            continue
        text = _yaml(f"{group}/{option}.yaml")
        if (group, option) in STANDALONE:
            assert "defaults" not in text and set(text) == set(base), (
                f"{group}/{option}.yaml names every field"
            )
            continue
        assert text.get("defaults") == [ref, "_self_"], f"{group}/{option}.yaml must inherit {ref}"
        own = {k: v for k, v in text.items() if k != "defaults"}
        assert set(own) <= set(base) | ({"img_size"} if group == "model" else set()), option
        restated = sorted(k for k, v in own.items() if base.get(k) == v and k != "backbone")
        assert not restated, f"{group}/{option}.yaml restates defaults: {restated}"
        if group == "model":
            assert "backbone" in own, option
        composed = getattr(compose_run_config([f"{group}={option}"]), group)
        assert {k: getattr(composed, k) for k in own} == own, option
        assert {k: getattr(composed, k) for k in defaults if k not in own} == {
            k: v for k, v in defaults.items() if k not in own
        }, option


def test_the_composed_default_config_is_the_dataclass_default():
    """`geodistill train` with no overrides trains what RunConfig() describes, but for what the
    chosen model option (vit_tiny: class-token pooling) states on top of the model base."""
    top = {k: v for k, v in _yaml("config.yaml").items() if k != "defaults"}
    scalars = {f.name for f in dataclasses.fields(RunConfig)} - set(GROUP_TYPES)
    assert set(top) == scalars
    expected = RunConfig().to_dict()
    model_option = {k: v for k, v in _yaml(f"model/{_chosen()['model']}.yaml").items() if k != "defaults"}
    expected["model"].update(model_option)
    assert compose_run_config([]).to_dict() == expected


@pytest.mark.parametrize("option", config_groups()["preset"])
def test_every_value_a_preset_states_reaches_the_typed_config(option):
    text = _yaml(f"preset/{option}.yaml")
    text.pop("defaults", None)
    cfg = compose_run_config([f"preset={option}"])
    for key, value in text.items():
        if isinstance(value, dict):
            assert key in GROUP_TYPES, f"preset/{option}.yaml: unknown group {key}"
            assert {k: getattr(getattr(cfg, key), k) for k in value} == value, f"preset/{option}.yaml {key}"
        else:
            assert getattr(cfg, key) == value, f"preset/{option}.yaml {key}"


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
