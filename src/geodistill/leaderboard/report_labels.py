"""Point labels that never overlap: placed by a collision check on their rendered text extents.

Matplotlib draws an annotation where it is told, over whatever is there. The front plot labels
its teacher and published points; several sit close together on a log axis (a teacher at 1, 2,
4 and 8 views; two methods at the same GFLOPs). ``place_labels`` renders each candidate position
of a label, measures its box in display pixels, and keeps the first one that stays inside the
axes and clear of every marker, the front's staircase and every label already placed. A label
with no free position is left out of the plot and returned: the caller lists it in words (the
tables name every point anyway).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

# Where a label may go, nearest first: right, left, above, below its marker, in rings (points
# of gap beyond the marker's edge) ever farther out.
_SIDES = ((1, 1, "left", "bottom"), (1, -1, "left", "top"), (-1, 1, "right", "bottom"),
          (-1, -1, "right", "top"), (0, 1, "center", "bottom"), (0, -1, "center", "top"))  # fmt: skip
_RINGS = (2.0, 8.0, 15.0)


def _offsets(size: float):
    """(dx, dy, ha, va) in points around a marker of scatter size ``size`` (points squared)."""
    radius = size**0.5 / 2
    for gap in _RINGS:
        for sx, sy, ha, va in _SIDES:
            if sx:  # beside the marker, a little above or below its centre
                yield sx * (radius + gap), sy * (radius + gap) * 0.4, ha, va
            else:
                yield 0.0, sy * (radius + gap), ha, va


_PAD = 2.0  # px kept free around every box


@dataclass
class Label:
    x: float
    y: float
    text: str
    colour: str
    size: float = 44.0  # the labelled marker's scatter size (points squared)


Box = tuple[float, float, float, float]  # x0, y0, x1, y1 in display pixels


def _overlaps(a: Box, b: Box) -> bool:
    return a[0] < b[2] + _PAD and b[0] < a[2] + _PAD and a[1] < b[3] + _PAD and b[1] < a[3] + _PAD


def _marker_boxes(ax, markers: Sequence[tuple[float, float, float]]) -> list[Box]:
    """Each marker's box: (x, y, s) with s the scatter size in points squared."""
    boxes = []
    for x, y, size in markers:
        px, py = ax.transData.transform((x, y))
        radius = size**0.5 / 2 * ax.figure.dpi / 72
        boxes.append((px - radius, py - radius, px + radius, py + radius))
    return boxes


def _staircase_boxes(ax, xs: Sequence[float], ys: Sequence[float]) -> list[Box]:
    """Thin boxes along a ``where="post"`` staircase: every segment is horizontal or vertical."""
    boxes: list[Box] = []
    corners = []
    for i, (x, y) in enumerate(zip(xs, ys, strict=True)):
        corners.append((x, y))
        if i + 1 < len(xs):
            corners.append((xs[i + 1], y))
    pixels = [ax.transData.transform(c) for c in corners]
    for (x0, y0), (x1, y1) in zip(pixels, pixels[1:], strict=False):
        boxes.append((min(x0, x1) - 1, min(y0, y1) - 1, max(x0, x1) + 1, max(y0, y1) + 1))
    return boxes


def place_labels(
    ax,
    labels: Sequence[Label],
    *,
    markers: Sequence[tuple[float, float, float]] = (),
    staircase: tuple[Sequence[float], Sequence[float]] | None = None,
    fontsize: float = 7,
) -> list[Label]:
    """Annotate each label at its first free position; return the labels that found none.

    ``markers`` = (x, y, scatter size) of every marker drawn. Call after the axes' limits and
    scales are final (the check is in display pixels).
    """
    fig = ax.figure
    renderer = fig.canvas.get_renderer()
    inside = ax.get_window_extent(renderer)
    taken = _marker_boxes(ax, markers)
    if staircase is not None and len(staircase[0]):
        taken += _staircase_boxes(ax, *staircase)
    left_out = []
    for label in labels:
        placed = False
        for dx, dy, ha, va in _offsets(label.size):
            text = ax.annotate(
                label.text,
                (label.x, label.y),
                xytext=(dx, dy),
                textcoords="offset points",
                ha=ha,
                va=va,
                fontsize=fontsize,
                color=label.colour,
                zorder=6,
            )
            ext = text.get_window_extent(renderer)
            box = (ext.x0, ext.y0, ext.x1, ext.y1)
            clear = (
                inside.x0 <= box[0] and box[2] <= inside.x1 and inside.y0 <= box[1] and box[3] <= inside.y1
            )
            if clear and not any(_overlaps(box, t) for t in taken):
                taken.append(box)
                placed = True
                break
            text.remove()
        if not placed:
            left_out.append(label)
    return left_out
