"""Hydra composition of a run config: folders of named choices + command-line overrides -> RunConfig.

The packaged tree (``geodistill/platform/conf``) holds ``config.yaml`` (its defaults list picks
one option per group: ``data/``, ``model/``, ``train/``, ``distill/``, ``scaling/``, ``preset/``)
and is composed with Hydra's compose API, so overrides read as on any Hydra app:
``model=resnet18 train.lr=3e-4 preset=smoke +train.foo=1``. The result goes through
``RunConfig.from_dict``, which types and validates it. Every Hydra or OmegaConf failure (bad
override syntax, unknown group option, unknown key, missing mandatory value) becomes a
one-line ``ConfigError``.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from geodistill.config_files import CONF_DIR, FILE_GROUPS, HYDRA_LOCK
from geodistill.errors import ConfigError
from geodistill.train.config import RunConfig

CONFIG_NAME = "config"
SMOKE_OVERRIDES = ["preset=smoke"]

# model.img_size and data.img_size must agree (RunConfig refuses two values): set both.
MIRRORED = {"data.img_size": "model.img_size", "model.img_size": "data.img_size"}


def config_groups(config_dir: str | Path | None = None) -> dict[str, list[str]]:
    """Run-config group -> sorted option names in the tree (the packaged one by default); the
    groups of whole files (search spaces, baselines, anchors) are ``geodistill.config_files``'s."""
    root = Path(config_dir) if config_dir is not None else CONF_DIR
    return {
        group.name: sorted(p.stem for p in group.glob("*.yaml"))
        for group in sorted(root.iterdir())
        if group.is_dir() and not group.name.startswith((".", "_")) and group.name not in FILE_GROUPS
    }


def compose_dict(overrides: list[str], *, config_dir: str | Path | None = None) -> dict[str, Any]:
    """The composed, interpolation-resolved config as a plain nested dict (not yet validated).

    ``config_dir`` (optional) is searched before the packaged tree, so it may hold a whole
    ``config.yaml`` or just extra options such as ``model/my_model.yaml``.
    """
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    overrides = [str(o) for o in overrides]
    primary = CONF_DIR
    if config_dir is not None:
        user_dir = Path(config_dir).expanduser().resolve()
        if not user_dir.is_dir():
            raise ConfigError(f"config dir {config_dir} does not exist")
        if (user_dir / f"{CONFIG_NAME}.yaml").is_file():
            primary = user_dir
            extra = CONF_DIR
        else:
            extra = user_dir
        # Hydra's own search-path option: the packaged (or user) tree as a second source of options.
        quoted = str(extra).replace("\\", "\\\\").replace("'", "\\'")
        overrides = [*overrides, f"hydra.searchpath=['file://{quoted}']"]
    try:
        with HYDRA_LOCK, initialize_config_dir(config_dir=str(primary), version_base=None):
            composed = compose(config_name=CONFIG_NAME, overrides=overrides)
            return OmegaConf.to_container(composed, resolve=True, throw_on_missing=True)
    except (HydraException, OmegaConfBaseException) as err:
        raise ConfigError(_hydra_message(err)) from None


def compose_run_config(overrides: list[str], *, config_dir: str | Path | None = None) -> RunConfig:
    """Compose the tree with ``overrides`` (Hydra syntax) and return the validated RunConfig.

    The one validation pass before anything runs: every key's declared type, range and
    choices and the cross-field rules (``RunConfig.from_dict``), then what is on disk
    (``preflight``). Nothing is imported from Ray, no data is decoded, no model is built.
    """
    cfg = RunConfig.from_dict(compose_dict(overrides, config_dir=config_dir))
    preflight(cfg)
    return cfg


def preflight(cfg: RunConfig) -> None:
    """The checks that read the disk: paths exist or can be created, the dataset has what the run needs.

    The dataset check is the index read only (directory listings, no decoding): a UniV that is
    not organised yet, a University-1652 missing a split, or an elevation/fps subset that is
    absent fails here in one line that says what to run.
    """
    cfg.check_paths()
    if cfg.data.root is not None:
        from geodistill.data import open_index

        open_index(cfg.data.root, elevation=cfg.data.elevation, fps=cfg.data.fps)


def _unknown_key(key: str) -> str:
    """One line naming ``key`` and the closest key RunConfig declares (``train.epoch`` -> ``train.epochs``)."""
    from geodistill.schema import declared_keys, unknown_key
    from geodistill.train import RunConfig

    keys = declared_keys(RunConfig)
    groups = {k.rsplit(".", 1)[0] for k in keys if "." in k}
    return unknown_key(key, [*keys, *groups])


def _hydra_message(err: Exception) -> str:
    """Hydra/OmegaConf messages span lines (options, search path, grammar); keep what a user needs."""
    lines = [line.strip() for line in str(err).strip().splitlines() if line.strip()]
    if not lines:
        return f"bad config: {type(err).__name__}"
    first = lines[0]
    full_key = next((line.split(":", 1)[1].strip() for line in lines if line.startswith("full_key:")), "")
    if m := re.match(r"Could not override '([^']+)'\.$", first):
        if len(lines) > 1 and lines[1].startswith("To append"):
            return _unknown_key(m.group(1))
        return f"cannot override {m.group(1)}: {lines[1] if len(lines) > 1 else 'refused by Hydra'}"
    if m := re.search(r"Could not find '([^'/]+)/([^']+)'", first):
        group, option = m.groups()
        heading = f"Available options in '{group}':"
        options = []
        if heading in lines:
            for line in lines[lines.index(heading) + 1 :]:
                if line.startswith("Config search path") or "=" in line:
                    break
                options.append(line)
        return f"unknown {group} option {option!r}; available: {', '.join(options) or 'none'}"
    if "Missing mandatory value" in first and full_key:
        return f"{full_key} is required (set it with {full_key}=...)"
    if first.startswith("Error parsing override"):
        reason = lines[1].split(" expecting ")[0] if len(lines) > 1 else ""
        return (
            f"bad override: {first.removeprefix('Error parsing override ')}{': ' + reason if reason else ''}"
        )
    message = first if not full_key or full_key in first else f"{first} (key {full_key})"
    return f"bad config: {message}"


def apply_overrides(base: Mapping[str, Any], values: Mapping[str, Any]) -> dict[str, Any]:
    """A deep copy of nested ``base`` with dotted ``values`` set (img_size kept equal in data/model).

    The one way run-config dicts are layered in code: a search's base + fixed + sampled
    values, the demo's common part + a stage's own. ``base`` may be partial (missing
    sections are created); ``RunConfig.from_dict`` fills in the rest.
    """
    out = copy.deepcopy(dict(base))
    for dotted, value in values.items():
        for key in (dotted, MIRRORED.get(dotted)):
            if key is None:
                continue
            *parents, last = key.split(".")
            node = out
            for part in parents:
                node = node.setdefault(part, {})
            node[last] = value
    return out
