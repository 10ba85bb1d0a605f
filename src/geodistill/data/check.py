"""Dataset health check: find every subset, decode every image and video, report or fail in one line."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from geodistill.data.index import (
    ELEVATIONS,
    FPS_CHOICES,
    DatasetIndex,
    read_univ,
    read_university1652,
    require_complete,
)
from geodistill.data.media import count_video_frames
from geodistill.errors import CorruptMediaError, DataError


@dataclass
class SubsetRow:
    """One folder of one subset: how many buildings, frames (or images) per building."""

    elevation: int | None
    fps: int | None
    split: str
    subset: str
    buildings: int
    min_frames: int
    max_frames: int
    videos: int  # buildings stored as mp4


@dataclass
class CheckReport:
    root: Path
    kind: str  # "univ" | "university1652"
    rows: list[SubsetRow] = field(default_factory=list)
    files_checked: int = 0
    missing_views: list[str] = field(default_factory=list)  # e.g. "train building 0007: no satellite"
    corrupt: list[str] = field(default_factory=list)  # one "corrupt image PATH: reason" per bad file
    corrupt_files: list[Path] = field(default_factory=list)

    @property
    def buildings(self) -> int:
        return max((r.buildings for r in self.rows if r.split == "train"), default=0)

    def table(self) -> str:
        """A compact text table, one line per subset."""
        head = f"{'elev':>4} {'fps':>3} {'split':<5} {'subset':<18} {'bldgs':>5} {'frames':>7} {'mp4':>4}"
        lines = [head]
        for r in self.rows:
            frames = str(r.min_frames) if r.min_frames == r.max_frames else f"{r.min_frames}-{r.max_frames}"
            lines.append(
                f"{r.elevation if r.elevation is not None else '-':>4} {r.fps if r.fps is not None else '-':>3} "
                f"{r.split:<5} {r.subset:<18} {r.buildings:>5} {frames:>7} {r.videos:>4}"
            )
        return "\n".join(lines)


def _verify_image(path: Path) -> None:
    """Decode the image (JPEGs at 1/8 scale via draft, which still reads the whole stream)."""
    try:
        with Image.open(path) as img:
            img.draft("RGB", (max(1, img.width // 8), max(1, img.height // 8)))
            img.load()
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        raise CorruptMediaError(f"corrupt image {path}: {err}") from None


def _check_index(
    index: DatasetIndex, report: CheckReport, seen: set[Path], *, drone_only: bool = False
) -> None:
    groups: dict[tuple, list] = {}
    for it in index.items:
        if drone_only and it.view != "drone":
            continue
        groups.setdefault((it.elevation, it.fps, it.split, it.subset), []).append(it)
    for (elev, fps, split, subset), items in groups.items():
        counts, videos = [], 0
        for it in items:
            if it.video is not None:
                videos += 1
                if it.video not in seen:
                    seen.add(it.video)
                    report.files_checked += 1
                    try:
                        _decode_video(it.video)
                    except CorruptMediaError as err:  # keep going: the report lists every bad file
                        report.corrupt.append(str(err))
                        report.corrupt_files.append(it.video)
                bad = it.video in report.corrupt_files
                counts.append(0 if bad else count_video_frames(it.video, fps=fps))
            else:
                counts.append(len(it.frames))
                for f in it.frames:
                    if f not in seen:
                        seen.add(f)
                        report.files_checked += 1
                        try:
                            _verify_image(f)
                        except CorruptMediaError as err:
                            report.corrupt.append(str(err))
                            report.corrupt_files.append(f)
        report.rows.append(SubsetRow(elev, fps, split, subset, len(items), min(counts), max(counts), videos))
    drones = {it.building for it in index.select(split="train", view="drone")}
    sats = {it.building for it in index.select(split="train", view="satellite")}
    tag = "" if index.kind != "univ" else f"{index.items[0].elevation}/{index.items[0].fps}fps "
    for b in sorted(drones - sats):
        report.missing_views.append(f"{tag}train building {b}: no satellite")
    for b in sorted(sats - drones):
        report.missing_views.append(f"{tag}train building {b}: no drone")
    for q in ("query_drone", "query_satellite"):
        gal = "gallery_satellite" if q == "query_drone" else "gallery_drone"
        gallery = {it.building for it in index.select(subset=gal)}
        for it in index.select(subset=q):
            if gallery and it.building not in gallery:
                report.missing_views.append(f"{tag}{q} {it.building}: not in {gal}")


def _decode_video(path: Path) -> None:
    from geodistill.data.media import decode_all_frames

    decode_all_frames(path)


def check_dataset(root: str | Path) -> CheckReport:
    """Walk every subset and decode every file once; corrupt files are collected in ``report.corrupt``.

    A layout problem (not a dataset, an empty class folder, a UniV not organised yet, a
    University-1652 missing a split) raises DataError at once, in one line saying what to do;
    nothing is decoded then.
    """
    root = Path(root)
    kind = require_complete(root)
    report = CheckReport(root=root, kind=kind)
    seen: set[Path] = set()
    if kind == "university1652":
        _check_index(read_university1652(root), report, seen)
        return report
    found = False
    for elev in ELEVATIONS:
        for fps in FPS_CHOICES:
            has_frames = (root / str(elev) / f"{fps}fps").is_dir()
            has_mp4 = (root / str(elev) / "mp4").is_dir()
            if not (has_frames or has_mp4):
                continue
            index = read_univ(root, elevation=elev, fps=fps)
            found = True
            # Lent subsets (satellite, street, google) are listed once, under 45/2fps.
            _check_index(index, report, seen, drone_only=(elev, fps) != (45, 2))
    if not found:
        raise DataError(f"{root}: no <30|45>/<2|5|10>fps or <30|45>/mp4 subsets (not a UniV layout)")
    return report
