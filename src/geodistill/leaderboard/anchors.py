"""Published reference points the Pareto report draws greyed, for context only.

An anchors file (``conf/anchors/<name>.yaml``, ``DIR/anchors/`` with ``--config-dir DIR``, or a
path) lists published methods with their cost and metrics, measured on another dataset and
protocol than the runs (University-1652 single images, not UniV videos), hence the label and
``comparable: false``. ``load_anchors`` reads one through the one config loader
(``geodistill.config_files``) into ``AnchorSet``; the report takes its ``as_report()`` form.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from geodistill import config_files
from geodistill.schema import setting

DEFAULT = "university1652"
GROUP = "anchors"


@dataclass
class Anchor:
    """One published point; a metric or a cost left out is not drawn on that plot."""

    method: str = setting(kind="text")
    backbone: str | None = setting(None, kind="text")
    gflops: float | None = setting(None, gt=0.0, le=1e6)  # per drone query, under GFLOPS_RULE
    gflops_approx: bool = setting(False)  # reported_gflops read off a published chart
    reported_gflops: float | None = setting(None, gt=0.0, le=1e6)  # as the source prints it
    convention: str = setting("unknown", choices=("2 x MACs", "MACs", "unknown"))  # of reported_gflops
    input_px: int | None = setting(None, gt=0)  # the input size the number is for
    views: int = setting(1, ge=1)  # images per query the number is for
    counted_as: str | None = setting(None, kind="text")  # timm backbone the convention was checked on
    tried_px: list[int] = setting(default_factory=list)  # sizes counted when no convention fits
    check: str | None = setting(None, kind="text")  # how the convention was established
    d2s_recall1: float | None = setting(None, ge=0.0, le=100.0)
    d2s_ap: float | None = setting(None, ge=0.0, le=100.0)
    s2d_recall1: float | None = setting(None, ge=0.0, le=100.0)
    s2d_ap: float | None = setting(None, ge=0.0, le=100.0)


@dataclass
class AnchorSet:
    """An anchors file, typed."""

    anchors: list[Anchor] = setting(default_factory=list)
    dataset: str | None = setting(None, kind="text")  # where the points were measured
    comparable: bool = setting(False)  # with the runs of this project (never so far)
    label: str | None = setting(None, kind="text")  # legend text; default "<dataset>, not comparable"

    def as_report(self) -> dict[str, Any]:
        """{"label": str, "anchors": [{method, backbone, gflops, d2s_*, ...}, ...]}, as the report reads it."""
        label = self.label or f"{self.dataset or 'published'}, not comparable"
        return {"label": label, "anchors": [dataclasses.asdict(a) for a in self.anchors]}


def load_anchors(
    name_or_path: str | Path | None = DEFAULT, *, config_dir: str | Path | None = None
) -> AnchorSet:
    """The anchors of a packaged name (``university1652``) or a YAML path; None: no anchors."""
    if name_or_path is None:
        return AnchorSet()
    anchors, _ = config_files.load(GROUP, name_or_path, AnchorSet, config_dir=config_dir)
    return anchors
