"""The search space, all of it: YAML in ``search_spaces/`` -> a validated ``SearchSpace`` -> trials.

A space file (a Hydra config: ``defaults:`` may pull in another space of the same folder)::

    objectives: {metric: d2s_recall1, efficiency: gflops}
    flops_budget: 2.0                    # optional: GFLOPs per drone query, a hard constraint
    fixed: {stage: student, train.epochs: 2}          # RunConfig dotted keys, every trial
    params:                                            # RunConfig dotted keys, sampled in order
      distill.temperature: {type: loguniform, low: 1.0, high: 8.0}
      data.views: {type: choice, choices: [1, 2, 4]}
      model.refiner: {type: choice, choices: [mean, select]}
      model.refiner_k: {type: int, low: 1, high: 4, when: {model.refiner: select}}

Everything is checked when the space is loaded, before any trial starts: every parameter
name, every bound and every choice is composed into a ``RunConfig`` (so a choice the trial
would refuse is refused now), and each error is one line naming the key.
``suggest(trial, space)`` is the define-by-run function ``OptunaSearch`` calls; a trial's
RunConfig is composed by ``plan.SearchPlan.config`` (the one place).
"""

from __future__ import annotations

import copy
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from geodistill.errors import ConfigError, UnknownBackboneError, one_line
from geodistill.eval.names import OBJECTIVE_METRICS
from geodistill.platform.compose import apply_overrides
from geodistill.schema import dotted
from geodistill.train.config import RunConfig

PARAM_TYPES = ("loguniform", "uniform", "int", "choice")
EFFICIENCY = ("gflops",)
TOP_LEVEL_KEYS = {"name", "description", "objectives", "flops_budget", "fixed", "params"}
PARAM_KEYS = {"type", "low", "high", "log", "step", "choices", "when"}
SPACES_ENV = "GEODISTILL_SEARCH_SPACES"


@dataclass(frozen=True)
class ParamSpec:
    """One sampled parameter: a RunConfig dotted key and its distribution."""

    name: str
    type: str  # loguniform | uniform | int | choice
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: tuple = ()
    when: tuple[tuple[str, Any], ...] = ()  # (param, value) pairs that must all hold

    def active(self, sampled: Mapping[str, Any]) -> bool:
        """Whether this parameter is sampled, given the values sampled before it."""
        return all(name in sampled and sampled[name] == value for name, value in self.when)


@dataclass(frozen=True)
class SearchSpace:
    """A validated space: what to sample, what to fix, what to optimise."""

    name: str
    params: tuple[ParamSpec, ...]
    fixed: dict[str, Any] = field(default_factory=dict)
    metric: str = "d2s_recall1"
    efficiency: str = "gflops"
    flops_budget: float | None = None
    path: Path | None = None


# ---------------------------------------------------------------- locating and loading


def spaces_dir(start: str | Path | None = None) -> Path | None:
    """``$GEODISTILL_SEARCH_SPACES``, else the first ``search_spaces/`` in CWD or a parent."""
    env = os.environ.get(SPACES_ENV)
    if env:
        return Path(env)
    here = Path(start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "search_spaces").is_dir():
            return folder / "search_spaces"
    return None


def resolve_space(name_or_path: str | Path) -> Path:
    """A space file from a name in the spaces folder (``smoke``) or a path to a YAML file."""
    text = str(name_or_path)
    candidate = Path(text)
    if candidate.suffix in (".yaml", ".yml") or os.sep in text or "/" in text:
        if not candidate.is_file():
            raise ConfigError(f"search space file not found: {text}")
        return candidate.resolve()
    folder = spaces_dir()
    if folder is None:
        raise ConfigError(f"search space {text!r}: no search_spaces/ folder here or above (set {SPACES_ENV})")
    path = folder / f"{text}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in folder.glob("*.yaml"))
        raise ConfigError(f"unknown search space {text!r} in {folder}; known: {', '.join(known)}")
    return path.resolve()


def _compose_yaml(path: Path) -> dict[str, Any]:
    """Compose one file of the folder with Hydra (so ``defaults:`` lists work), as a plain dict."""
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException
    from yaml import YAMLError

    try:
        with initialize_config_dir(config_dir=str(path.parent), version_base="1.3"):
            cfg = compose(config_name=path.stem)
        data = OmegaConf.to_container(cfg, resolve=True)
    except (HydraException, OmegaConfBaseException, YAMLError) as err:
        raise ConfigError(f"search space {path.name}: {one_line(err)}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"search space {path.name}: must be a mapping")
    return data


def load_space(name_or_path: str | Path, *, base: Mapping[str, Any] | None = None) -> SearchSpace:
    """Locate, compose and validate a space; raise ConfigError (one line naming the key) if bad.

    ``base`` is the run config the trials start from (``RunConfig().to_dict()`` by default);
    every bound and choice is checked against it.
    """
    path = resolve_space(name_or_path)
    return parse_space(_compose_yaml(path), name=path.stem, path=path, base=base)


def parse_space(
    data: Mapping[str, Any],
    *,
    name: str = "space",
    path: Path | None = None,
    base: Mapping[str, Any] | None = None,
) -> SearchSpace:
    """Validate a space given as a mapping (see the module docstring for the format)."""
    where = f"search space {name}"
    unknown = sorted(set(data) - TOP_LEVEL_KEYS)
    if unknown:
        raise ConfigError(f"{where}: unknown key {unknown[0]!r} (known: {', '.join(sorted(TOP_LEVEL_KEYS))})")
    base = RunConfig().to_dict() if base is None else copy.deepcopy(dict(base))

    objectives = data.get("objectives") or {}
    if not isinstance(objectives, Mapping):
        raise ConfigError(f"{where}: objectives must be a mapping")
    bad = sorted(set(objectives) - {"metric", "efficiency"})
    if bad:
        raise ConfigError(f"{where}: unknown key objectives.{bad[0]}")
    metric = objectives.get("metric", "d2s_recall1")
    if metric not in OBJECTIVE_METRICS:
        raise ConfigError(
            f"{where}: objectives.metric must be one of {', '.join(OBJECTIVE_METRICS)}; got {metric!r}"
        )
    efficiency = objectives.get("efficiency", "gflops")
    if efficiency not in EFFICIENCY:
        raise ConfigError(f"{where}: objectives.efficiency must be gflops; got {efficiency!r}")

    budget = data.get("flops_budget")
    if budget is not None and (
        isinstance(budget, bool) or not isinstance(budget, int | float) or budget <= 0
    ):
        raise ConfigError(f"{where}: flops_budget must be a positive number of GFLOPs; got {budget!r}")

    fixed = data.get("fixed") or {}
    if not isinstance(fixed, Mapping):
        raise ConfigError(f"{where}: fixed must be a mapping of RunConfig dotted keys")
    fixed = dotted(fixed)
    for key in fixed:
        _check_key(where, f"fixed.{key}", key, base)
    fixed_base = apply_overrides(base, fixed)
    for key, value in fixed.items():
        _check_value(where, f"fixed.{key}", fixed_base, key, value)
    _compose(where, "fixed", fixed_base)

    raw_params = data.get("params") or {}
    if not isinstance(raw_params, Mapping) or not raw_params:
        raise ConfigError(f"{where}: params must be a non-empty mapping of RunConfig dotted keys")
    params: list[ParamSpec] = []
    for key, spec in raw_params.items():
        param = _parse_param(where, str(key), spec, params)
        _check_key(where, f"params.{key}", param.name, base)
        if param.name in fixed:
            raise ConfigError(f"{where}: params.{key} is also in fixed")
        for value in _probe_values(param):
            _check_value(where, f"params.{key}", fixed_base, param.name, value)
        params.append(param)
    return SearchSpace(
        name=name,
        params=tuple(params),
        fixed=fixed,
        metric=metric,
        efficiency=efficiency,
        flops_budget=None if budget is None else float(budget),
        path=path,
    )


def _parse_param(where: str, key: str, spec: Any, earlier: list[ParamSpec]) -> ParamSpec:
    label = f"{where}: params.{key}"
    if not isinstance(spec, Mapping):
        raise ConfigError(f"{label} must be a mapping with a type")
    unknown = sorted(set(spec) - PARAM_KEYS)
    if unknown:
        raise ConfigError(f"{label}: unknown field {unknown[0]!r} (known: {', '.join(sorted(PARAM_KEYS))})")
    kind = spec.get("type")
    if kind not in PARAM_TYPES:
        raise ConfigError(f"{label}: type must be one of {', '.join(PARAM_TYPES)}; got {kind!r}")
    when = _parse_when(label, spec.get("when"), earlier)
    if kind == "choice":
        choices = spec.get("choices")
        if not isinstance(choices, list | tuple) or not choices:
            raise ConfigError(f"{label}: choice needs a non-empty list of choices")
        for value in choices:
            if value is not None and not isinstance(value, bool | int | float | str):
                raise ConfigError(f"{label}: choices must be scalars; got {value!r}")
        if len(set(map(repr, choices))) != len(choices):
            raise ConfigError(f"{label}: choices repeat a value")
        for extra in ("low", "high", "log", "step"):
            if extra in spec:
                raise ConfigError(f"{label}: {extra} does not apply to a choice")
        return ParamSpec(name=key, type=kind, choices=tuple(choices), when=when)
    if "choices" in spec:
        raise ConfigError(f"{label}: choices only apply to type choice")
    low, high = spec.get("low"), spec.get("high")
    for bound, value in (("low", low), ("high", high)):
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise ConfigError(f"{label}: {bound} must be a finite number; got {value!r}")
        if kind == "int" and not isinstance(value, int):
            raise ConfigError(f"{label}: {bound} must be an integer for type int; got {value!r}")
    if low >= high:
        raise ConfigError(f"{label}: low ({low}) must be < high ({high})")
    log = kind == "loguniform" or bool(spec.get("log", False))
    if not isinstance(spec.get("log", False), bool):
        raise ConfigError(f"{label}: log must be true or false")
    if log and low <= 0:
        raise ConfigError(f"{label}: a log-scale bound must be > 0; got low={low}")
    step = spec.get("step")
    if step is not None:
        if isinstance(step, bool) or not isinstance(step, int | float) or step <= 0:
            raise ConfigError(f"{label}: step must be a positive number; got {step!r}")
        if log:
            raise ConfigError(f"{label}: step and a log scale cannot be combined")
        if kind == "int" and not isinstance(step, int):
            raise ConfigError(f"{label}: step must be an integer for type int")
    return ParamSpec(name=key, type=kind, low=low, high=high, log=log, step=step, when=when)


def _parse_when(label: str, when: Any, earlier: list[ParamSpec]) -> tuple[tuple[str, Any], ...]:
    if when is None:
        return ()
    if not isinstance(when, Mapping) or not when:
        raise ConfigError(f"{label}: when must be a mapping {{param: value}}")
    by_name = {p.name: p for p in earlier}
    pairs = []
    for name, value in when.items():
        if name not in by_name:
            raise ConfigError(f"{label}: when refers to {name!r}, which is not a parameter listed before it")
        parent = by_name[name]
        if parent.type == "choice" and value not in parent.choices:
            raise ConfigError(f"{label}: when {name}={value!r} is not one of its choices")
        pairs.append((str(name), value))
    return tuple(pairs)


def _probe_values(param: ParamSpec) -> list[Any]:
    """The values to compose at load time: every choice, or both bounds."""
    if param.type == "choice":
        return list(param.choices)
    if param.type == "int":
        return [int(param.low), int(param.high)]
    return [float(param.low), float(param.high)]


def _leaf(base: Mapping[str, Any], dotted: str) -> tuple[bool, Any]:
    node: Any = base
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return False, None
        node = node[part]
    return not isinstance(node, Mapping), node


def _check_key(where: str, label: str, dotted: str, base: Mapping[str, Any]) -> None:
    is_leaf, _ = _leaf(base, dotted)
    if not is_leaf:
        raise ConfigError(f"{where}: {label} is not a run config key")


def _check_value(where: str, label: str, base: Mapping[str, Any], dotted: str, value: Any) -> None:
    """Compose ``dotted=value`` into a RunConfig and check the names RunConfig leaves unchecked."""
    if dotted == "model.backbone":
        from geodistill.models import get_spec
        from geodistill.models.backbones import has_class_token

        try:
            get_spec(str(value))
        except UnknownBackboneError as err:
            raise ConfigError(f"{where}: {label}: {err}") from None
        pooling = base.get("model", {}).get("pooling")
        if pooling == "token" and not has_class_token(str(value)):
            raise ConfigError(
                f"{where}: {label}: {value} has no class token for model.pooling 'token' "
                "(fix model.pooling to avg, gem or lpn)"
            )
    if dotted == "model.refiner":
        from geodistill.models import REFINERS

        if value not in REFINERS:
            raise ConfigError(f"{where}: {label}: unknown refiner {value!r}; known: {', '.join(REFINERS)}")
    _compose(where, label, apply_overrides(base, {dotted: value}))


def _compose(where: str, label: str, d: Mapping[str, Any]) -> RunConfig:
    try:
        return RunConfig.from_dict(d)
    except ConfigError as err:
        raise ConfigError(f"{where}: {label}: {err}") from None


# ---------------------------------------------------------------- trials


def suggest(trial: Any, space: SearchSpace) -> dict[str, Any]:
    """Define-by-run sampling of ``space`` on an Optuna trial; returns {dotted key: value}.

    A parameter whose ``when`` conditions do not hold is not sampled (Optuna then sees a
    conditional space, which TPE and NSGA-II handle).
    """
    sampled: dict[str, Any] = {}
    for p in space.params:
        if not p.active(sampled):
            continue
        if p.type == "choice":
            sampled[p.name] = trial.suggest_categorical(p.name, list(p.choices))
        elif p.type == "int":
            sampled[p.name] = trial.suggest_int(
                p.name, int(p.low), int(p.high), step=int(p.step or 1), log=p.log
            )
        else:
            sampled[p.name] = trial.suggest_float(p.name, float(p.low), float(p.high), step=p.step, log=p.log)
    return sampled
