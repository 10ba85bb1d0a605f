"""The packaged config tree's whole files, and the one loader that reads them into typed objects.

Beside the run-config groups (``data/``, ``model/``, ...; composed by ``platform.compose``), the
tree at ``geodistill/platform/conf`` holds three groups of files read one at a time:
``search_space/`` (what a search samples), ``baseline/`` (what ``regress`` pins) and
``anchors/`` (published points the report draws). They ship inside the package, so a name works
from any directory after ``pip install``; a path to a user's YAML works wherever a name does,
and ``config_dir`` (``--config-dir DIR``) adds ``DIR/<group>/<name>.yaml`` before the packaged
files. Each file is composed by Hydra (``defaults:`` may extend another file of its group) under
the one Hydra lock, built into its dataclass by ``schema.build`` and checked by
``schema.check_fields``: a wrong key or value is one ConfigError line naming the file and key.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

from geodistill.errors import ConfigError, one_line
from geodistill.schema import build, check_fields

T = TypeVar("T")

CONF_DIR = Path(__file__).resolve().parent / "platform" / "conf"
# Group folder -> how an error line names one of its files.
FILE_GROUPS = {"search_space": "search space", "baseline": "baseline", "anchors": "anchors"}
# Hydra keeps one global instance; composing from two threads at once would clash.
HYDRA_LOCK = threading.Lock()


def names(group: str, *, config_dir: str | Path | None = None) -> list[str]:
    """The file names of ``group``: the user's ``config_dir/<group>/`` and the packaged ones."""
    folders = [CONF_DIR / group] + ([Path(config_dir).expanduser() / group] if config_dir else [])
    return sorted({p.stem for folder in folders for p in folder.glob("*.yaml")})


def resolve(group: str, name_or_path: str | Path, *, config_dir: str | Path | None = None) -> Path:
    """A file of ``group`` from its name (``smoke``) or a path to a YAML file (``my/space.yaml``)."""
    label = FILE_GROUPS[group]
    text = str(name_or_path)
    if text.endswith((".yaml", ".yml")) or os.sep in text or "/" in text:
        path = Path(text).expanduser()
        if not path.is_file():  # a path from before the files were packaged (search_spaces/smoke.yaml)?
            packaged = (CONF_DIR / group / f"{path.stem}.yaml").is_file()
            hint = f" (the packaged {label} is named without a path: {path.stem})" if packaged else ""
            raise ConfigError(f"{label} file not found: {text}{hint}")
        return path.resolve()
    if config_dir is not None:
        user = Path(config_dir).expanduser()
        if not user.is_dir():
            raise ConfigError(f"config dir {config_dir} does not exist")
        if (user / group / f"{text}.yaml").is_file():
            return (user / group / f"{text}.yaml").resolve()
    path = CONF_DIR / group / f"{text}.yaml"
    if not path.is_file():
        known = ", ".join(names(group, config_dir=config_dir))
        raise ConfigError(f"unknown {label} {text!r}; known: {known} (or give a path to a YAML file)")
    return path


def compose_file(group: str, path: Path) -> dict[str, Any]:
    """One file composed by Hydra (its ``defaults:`` list may name files of its folder or the
    packaged group), interpolations resolved, as a plain dict."""
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException
    from yaml import YAMLError

    overrides = []
    if path.parent != CONF_DIR / group:
        quoted = str(CONF_DIR / group).replace("\\", "\\\\").replace("'", "\\'")
        overrides.append(f"hydra.searchpath=['file://{quoted}']")
    try:
        with HYDRA_LOCK, initialize_config_dir(config_dir=str(path.parent), version_base="1.3"):
            cfg = compose(config_name=path.stem, overrides=overrides)
            data = OmegaConf.to_container(cfg, resolve=True)
    except (HydraException, OmegaConfBaseException, YAMLError) as err:
        why = "must be a mapping" if "must be a DictConfig" in str(err) else one_line(err)
        raise ConfigError(f"{FILE_GROUPS[group]} {path.name}: {why}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{FILE_GROUPS[group]} {path.name}: must be a mapping")
    return data


def typed(cls: type[T], data: Mapping[str, Any] | Any, where: str) -> T:
    """``data`` built into dataclass ``cls`` and checked against its declared rules; errors
    are one line starting with ``where`` (``search space smoke``) and naming the dotted key."""
    try:
        obj = build(cls, data)
        check_fields(obj)
    except ConfigError as err:
        raise type(err)(f"{where}: {err}") from None
    return obj


def load(
    group: str, name_or_path: str | Path, cls: type[T], *, config_dir: str | Path | None = None
) -> tuple[T, Path]:
    """(the typed object, the file it came from) for a name or path of ``group``."""
    path = resolve(group, name_or_path, config_dir=config_dir)
    return typed(cls, compose_file(group, path), f"{FILE_GROUPS[group]} {path.stem}"), path
