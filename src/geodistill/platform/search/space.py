"""The search space: a file of the ``search_space`` config group -> a validated ``SearchSpace``.

A space (``conf/search_space/<name>.yaml``, ``DIR/search_space/`` with ``--config-dir``, or a
path) names its objectives, an optional ``flops_budget``, the ``fixed`` settings of every trial
and the sampled ``params`` (RunConfig dotted keys: ``choice``, ``int``, ``uniform``,
``loguniform``, optional ``when:`` conditions; docs/INTERFACES.md has an example). Every bound
and choice is composed into a ``RunConfig`` against the base config when the space is loaded, so
a value a trial would refuse is refused before any trial starts. ``suggest`` is what
``OptunaSearch`` calls; a trial's config is composed by ``plan.SearchPlan.config`` alone.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from geodistill import config_files
from geodistill.errors import ConfigError, UnknownBackboneError
from geodistill.eval.names import OBJECTIVE_METRICS
from geodistill.platform.compose import apply_overrides
from geodistill.schema import dotted, setting
from geodistill.train.config import RunConfig

PARAM_TYPES = ("loguniform", "uniform", "int", "choice")
EFFICIENCY = ("gflops",)
GROUP = "search_space"


@dataclass
class Objectives:
    """The ``objectives:`` block: the precision metric (maximised) and the cost (minimised)."""

    metric: str = setting("d2s_recall1", choices=OBJECTIVE_METRICS)
    efficiency: str = setting("gflops", choices=EFFICIENCY)


@dataclass
class ParamFile:
    """One entry of ``params:`` as written; ``_parse_param`` checks how its fields combine."""

    type: str = setting(choices=PARAM_TYPES)
    low: int | float | None = None
    high: int | float | None = None
    log: bool = False
    step: int | float | None = None
    choices: list[Any] | None = None
    when: dict[str, Any] | None = None


@dataclass
class SpaceFile:
    """A space file as written (see the module docstring)."""

    name: str | None = setting(None, kind="text")
    description: str | None = setting(None, kind="text")
    objectives: Objectives = field(default_factory=Objectives)
    flops_budget: float | None = setting(None, gt=0.0, le=1e6)  # GFLOPs per drone query
    fixed: dict[str, Any] = field(default_factory=dict)
    params: dict[str, ParamFile] = field(default_factory=dict)


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


def resolve_space(name_or_path: str | Path, *, config_dir: str | Path | None = None) -> Path:
    """A space file from a name in the ``search_space`` group (``smoke``) or a path to a YAML file."""
    return config_files.resolve(GROUP, name_or_path, config_dir=config_dir)


def load_space(
    name_or_path: str | Path,
    *,
    base: Mapping[str, Any] | None = None,
    config_dir: str | Path | None = None,
) -> SearchSpace:
    """Locate, compose and validate a space; raise ConfigError (one line naming the key) if bad.

    ``base`` is the run config the trials start from (``RunConfig().to_dict()`` by default);
    every bound and choice is checked against it.
    """
    path = resolve_space(name_or_path, config_dir=config_dir)
    return parse_space(config_files.compose_file(GROUP, path), name=path.stem, path=path, base=base)


def parse_space(
    data: Mapping[str, Any],
    *,
    name: str = "space",
    path: Path | None = None,
    base: Mapping[str, Any] | None = None,
) -> SearchSpace:
    """Validate a space given as a mapping (see the module docstring for the format)."""
    where = f"search space {name}"
    written = config_files.typed(SpaceFile, data, where)
    base = RunConfig().to_dict() if base is None else copy.deepcopy(dict(base))

    fixed = dotted(written.fixed)
    for key in fixed:
        _check_key(where, f"fixed.{key}", key, base)
    fixed_base = apply_overrides(base, fixed)
    for key, value in fixed.items():
        _check_value(where, f"fixed.{key}", fixed_base, key, value)
    _compose(where, "fixed", fixed_base)

    if not written.params:
        raise ConfigError(f"{where}: params must be a non-empty mapping of RunConfig dotted keys")
    params: list[ParamSpec] = []
    for key, spec in written.params.items():
        param = _parse_param(where, key, spec, params)
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
        metric=written.objectives.metric,
        efficiency=written.objectives.efficiency,
        flops_budget=written.flops_budget,
        path=path,
    )


def _parse_param(where: str, key: str, spec: ParamFile, earlier: list[ParamSpec]) -> ParamSpec:
    """How a parameter's fields combine: the bounds of its type, its choices, its conditions."""
    label = f"{where}: params.{key}"
    kind = spec.type
    when = _parse_when(label, spec.when, earlier)
    if kind == "choice":
        choices = spec.choices
        if not choices:
            raise ConfigError(f"{label}: choice needs a non-empty list of choices")
        for value in choices:
            if value is not None and not isinstance(value, bool | int | float | str):
                raise ConfigError(f"{label}: choices must be scalars; got {value!r}")
        if len(set(map(repr, choices))) != len(choices):
            raise ConfigError(f"{label}: choices repeat a value")
        for extra in ("low", "high", "step"):
            if getattr(spec, extra) is not None:
                raise ConfigError(f"{label}: {extra} does not apply to a choice")
        if spec.log:
            raise ConfigError(f"{label}: log does not apply to a choice")
        return ParamSpec(name=key, type=kind, choices=tuple(choices), when=when)
    if spec.choices is not None:
        raise ConfigError(f"{label}: choices only apply to type choice")
    low, high = spec.low, spec.high
    for bound, value in (("low", low), ("high", high)):
        if value is None or not math.isfinite(value):
            raise ConfigError(f"{label}: {bound} must be a finite number; got {value!r}")
        if kind == "int" and not isinstance(value, int):
            raise ConfigError(f"{label}: {bound} must be an integer for type int; got {value!r}")
    if low >= high:
        raise ConfigError(f"{label}: low ({low}) must be < high ({high})")
    log = kind == "loguniform" or spec.log
    if log and low <= 0:
        raise ConfigError(f"{label}: a log-scale bound must be > 0; got low={low}")
    step = spec.step
    if step is not None:
        if step <= 0:
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


def shared_distributions(space: SearchSpace) -> dict[str, Any]:
    """{name: Optuna distribution} of the parameters every trial samples (no ``when``), as
    ``suggest`` samples them: what a sampler may draw before any trial has told it the space."""
    import optuna.distributions as od

    shared: dict[str, Any] = {}
    for p in space.params:
        if p.when:
            continue
        if p.type == "choice":
            shared[p.name] = od.CategoricalDistribution(list(p.choices))
        elif p.type == "int":
            shared[p.name] = od.IntDistribution(int(p.low), int(p.high), step=int(p.step or 1), log=p.log)
        else:
            shared[p.name] = od.FloatDistribution(float(p.low), float(p.high), step=p.step, log=p.log)
    return shared


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
