"""One plan per search: the space and the base run config, and the one composition of a trial's config.

``SearchPlan.build(space, base)`` is made once, in the driver, from the loaded space and the
base ``RunConfig``; it checks the teacher (``remote.resolve_teacher``) and reads what the space
implies for the whole search: the stage, whether trials run Ray Train (then no scheduler may
stop them, ray issue #54305), the most epochs a trial trains. ``plan.config(params)`` is the
only place a trial's ``RunConfig`` is composed (base, then the space's ``fixed``, then the
sampled parameters): the searcher, the trial, its placement, the leaderboard rows and the
trackers all call it, and the plan itself travels to them (no dicts cross those boundaries).
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Mapping
from typing import Any

from geodistill.errors import ConfigError
from geodistill.platform.compose import apply_overrides
from geodistill.platform.search.space import SearchSpace
from geodistill.train.config import RunConfig


def first_assignment(space: SearchSpace) -> dict[str, Any]:
    """A valid assignment (first choice / low bound) to learn what the fixed part implies."""
    values: dict[str, Any] = {}
    for p in space.params:
        if p.active(values):
            values[p.name] = (
                p.choices[0] if p.type == "choice" else (int(p.low) if p.type == "int" else p.low)
            )
    return values


@dataclasses.dataclass(frozen=True)
class SearchPlan:
    """What every trial of one search shares; build it with ``SearchPlan.build``."""

    space: SearchSpace
    base: RunConfig
    stage: str  # "teacher" | "student"
    ray_train: bool  # some trial may run a TorchTrainer (scaling.num_workers >= 1)
    max_epochs: int  # the most epochs any trial trains (ASHA's max_t)
    _base: dict[str, Any] = dataclasses.field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_base", self.base.to_dict())

    @classmethod
    def build(
        cls,
        space: SearchSpace,
        base: RunConfig,
        *,
        metric: str | None = None,
        teacher: str | None = None,
        check_teacher: bool = True,
    ) -> SearchPlan:
        """The plan of a search of ``space`` from ``base``; ``metric`` and ``teacher`` override both.

        A student space without a teacher, or a teacher that is not there: one line, before Ray
        starts (``check_teacher=False``: the plan ``--smoke-test`` trains the teacher for).
        """
        base = copy.deepcopy(base)
        if teacher is not None:
            base.distill.teacher_checkpoint = str(teacher)
        if metric is not None:
            space = dataclasses.replace(space, metric=metric)
        first = _compose(space, base.to_dict(), first_assignment(space))
        if check_teacher and first.stage == "student" and not first.distill.teacher_checkpoint:
            raise ConfigError(
                f"search space {space.name} trains students: give --teacher CHECKPOINT "
                "(or fixed: distill.teacher_checkpoint in the space)"
            )
        if check_teacher and first.distill.teacher_checkpoint:
            from geodistill.platform.runtime.remote import resolve_teacher

            path = resolve_teacher(first.distill.teacher_checkpoint)
            base.distill.teacher_checkpoint = path
            if "distill.teacher_checkpoint" in space.fixed:
                space = dataclasses.replace(space, fixed={**space.fixed, "distill.teacher_checkpoint": path})
        return cls(
            space=space,
            base=base,
            stage=first.stage,
            ray_train=_uses_ray_train(space, base),
            max_epochs=_max_epochs(space, base),
        )

    @property
    def metric(self) -> str:
        return self.space.metric

    def config(self, params: Mapping[str, Any]) -> RunConfig:
        """The RunConfig one trial trains: the base, the space's ``fixed``, the sampled ``params``."""
        return _compose(self.space, self._base, params)

    def first_config(self) -> RunConfig:
        """The config of the space's first assignment (what ``--smoke-test``'s teacher copies)."""
        return self.config(first_assignment(self.space))

    def with_output_dir(self, output_dir: str) -> SearchPlan:
        """The same plan with trials writing under ``output_dir`` (shared data and teacher cache)."""
        base = copy.deepcopy(self.base)
        base.output_dir = output_dir
        return dataclasses.replace(self, base=base)


def _compose(space: SearchSpace, base: Mapping[str, Any], params: Mapping[str, Any]) -> RunConfig:
    merged = apply_overrides(apply_overrides(base, space.fixed), params)
    try:
        return RunConfig.from_dict(merged)
    except ConfigError as err:
        raise ConfigError(f"search space {space.name}: trial: {err}") from None


def _uses_ray_train(space: SearchSpace, base: RunConfig) -> bool:
    """Whether any trial may run on Ray Train (``scaling.num_workers >= 1``, as for ``train``)."""
    for p in space.params:
        if p.name == "scaling.num_workers":
            values = p.choices if p.type == "choice" else (p.high,)
            return any(v >= 1 for v in values)
    return space.fixed.get("scaling.num_workers", base.scaling.num_workers) >= 1


def _max_epochs(space: SearchSpace, base: RunConfig) -> int:
    for p in space.params:
        if p.name == "train.epochs":
            return int(max(p.choices) if p.type == "choice" else p.high)
    return int(space.fixed.get("train.epochs", base.train.epochs))
