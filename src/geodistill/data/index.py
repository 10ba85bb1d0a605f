"""One typed index over the two real layouts (UniV and University-1652).

UniV:   <root>/<30|45>/<2fps|5fps|10fps>/{train,test}/<subset>/<building>/*.jpeg
        (only 45/2fps holds satellite/street/google; other subsets borrow them from it).
        Drone videos may instead be one mp4 per building: <root>/<elev>/mp4/<split>/<subset>/<id>.mp4,
        or <subset>/<id>.mp4 / <subset>/<id>/<any>.mp4 inside the fps folder.
University-1652: <root>/train/{drone,satellite,street,google}/<id>/, <root>/test/{query_*,gallery_*}/<id>/.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from geodistill.data.media import IMAGE_SUFFIXES, VIDEO_SUFFIXES
from geodistill.errors import DataError

ELEVATIONS = (30, 45)
FPS_CHOICES = (2, 5, 10)
VIEWS = ("drone", "satellite", "street", "google")
DRONE_SUBSETS = {"train": ("drone",), "test": ("query_drone", "gallery_drone")}


@dataclass(frozen=True)
class ViewItem:
    """A building seen from one view: a drone video (frames or mp4) or a set of images."""

    building: str
    view: str
    subset: str
    split: str
    elevation: int | None
    fps: int | None
    frames: tuple[Path, ...]
    video: Path | None = None


class DatasetIndex:
    """All items of one dataset (one elevation/fps subset for UniV)."""

    def __init__(self, items: list[ViewItem], *, root: str | Path | None = None, kind: str = "univ") -> None:
        self.items = list(items)
        self.root = Path(root) if root is not None else None
        self.kind = kind  # "univ" | "university1652"

    def __len__(self) -> int:
        return len(self.items)

    def __repr__(self) -> str:
        return f"DatasetIndex(kind={self.kind!r}, root={str(self.root)!r}, items={len(self.items)})"

    def select(
        self, *, subset: str | None = None, view: str | None = None, split: str | None = None
    ) -> list[ViewItem]:
        return [
            it
            for it in self.items
            if (subset is None or it.subset == subset)
            and (view is None or it.view == view)
            and (split is None or it.split == split)
        ]

    def subsets(self) -> list[str]:
        return sorted({it.subset for it in self.items})

    def class_map(self) -> dict[str, int]:
        """Train buildings -> 0..K-1 in sorted id order (the classifier's labels)."""
        ids = sorted({it.building for it in self.items if it.split == "train"})
        return {b: i for i, b in enumerate(ids)}


def view_of(subset: str) -> str:
    """'gallery_satellite' -> 'satellite'; 'query_ground' -> 'street'."""
    name = subset.split("_", 1)[1] if subset.startswith(("query_", "gallery_")) else subset
    return "street" if name == "ground" else name


def _sorted_dirs(path: Path) -> list[Path]:
    return sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))


def _media_files(folder: Path, suffixes: tuple[str, ...]) -> tuple[Path, ...]:
    return tuple(
        sorted(p for p in folder.iterdir() if p.suffix.lower() in suffixes and not p.name.startswith("."))
    )


def _image_items(folder: Path, *, split: str, subset: str, elevation: int | None, fps: int | None):
    """One item per building folder of images; empty folders are a layout error."""
    items = []
    for bdir in _sorted_dirs(folder):
        frames = _media_files(bdir, IMAGE_SUFFIXES)
        video = None
        if not frames:
            videos = _media_files(bdir, VIDEO_SUFFIXES)
            if videos and view_of(subset) == "drone":
                video = videos[0]
            else:
                raise DataError(f"empty class folder {bdir}: no images")
        items.append(
            ViewItem(
                building=bdir.name,
                view=view_of(subset),
                subset=subset,
                split=split,
                elevation=elevation,
                fps=fps if view_of(subset) == "drone" else None,
                frames=frames,
                video=video,
            )
        )
    # Videos stored directly as <subset>/<id>.mp4.
    for vid in _media_files(folder, VIDEO_SUFFIXES):
        items.append(ViewItem(vid.stem, view_of(subset), subset, split, elevation, fps, (), vid))
    return items


def read_university1652(root: str | Path) -> DatasetIndex:
    root = _existing(root)
    problem = university1652_problem(root)
    if problem:
        raise DataError(problem)
    items: list[ViewItem] = []
    for split in ("train", "test"):
        if not (root / split).is_dir():
            continue
        for sub in _sorted_dirs(root / split):
            items += _image_items(sub, split=split, subset=sub.name, elevation=None, fps=None)
    if not items:
        raise DataError(f"{root}: no train/ or test/ building folders (not a University-1652 layout)")
    return DatasetIndex(items, root=root, kind="university1652")


def read_univ(root: str | Path, *, elevation: int = 45, fps: int = 2) -> DatasetIndex:
    root = _existing(root)
    if elevation not in ELEVATIONS:
        raise DataError(f"elevation must be one of {ELEVATIONS}, got {elevation}")
    if fps not in FPS_CHOICES:
        raise DataError(f"fps must be one of {FPS_CHOICES}, got {fps}")
    base = root / str(elevation) / f"{fps}fps"
    lender = root / "45" / "2fps"  # the only subset whose archive holds satellite/street/google
    video_mirror = root / str(elevation) / "mp4"
    missing = unorganized_univ(root, elevation=elevation, fps=fps)
    if missing:
        raise DataError(organize_hint(root, missing))
    items: list[ViewItem] = []
    found_drone = False
    for split, drone_subsets in DRONE_SUBSETS.items():
        for subset in drone_subsets:
            folder = base / split / subset
            mirror = video_mirror / split / subset
            if folder.is_dir():
                items += _image_items(folder, split=split, subset=subset, elevation=elevation, fps=fps)
                found_drone = True
            elif mirror.is_dir():
                items += _image_items(mirror, split=split, subset=subset, elevation=elevation, fps=fps)
                found_drone = True
        # Non-drone subsets: this subset's own folders, else those lent by 45/2fps.
        names: set[str] = set()
        for src in (base / split, lender / split):
            if src.is_dir():
                names |= {p.name for p in _sorted_dirs(src) if view_of(p.name) != "drone"}
        for subset in sorted(names):
            src = base / split / subset
            if not src.is_dir():
                src = lender / split / subset
            items += _image_items(src, split=split, subset=subset, elevation=elevation, fps=None)
    if not found_drone:
        raise DataError(
            f"{root}: no drone videos for elevation {elevation} at {fps} fps "
            f"(expected {base}/train/drone or {video_mirror}/train/drone)"
        )
    return DatasetIndex(items, root=root, kind="univ")


def unorganized_univ(root: Path, *, elevation: int | None = None, fps: int | None = None) -> list[Path]:
    """The query folders an organising step still has to create (empty when UniV is organised).

    The UniV archive ships only ``test/gallery_*``: ``organize_univ.py`` (or ``geodistill data
    organize``) copies the query buildings' folders to ``test/query_*``. Only the directory
    listing is read. ``elevation``/``fps`` limit the check to one subset (plus the lent views).
    """
    missing: list[Path] = []
    for elev in ELEVATIONS if elevation is None else (elevation,):
        for sub in [f"{f}fps" for f in (FPS_CHOICES if fps is None else (fps,))] + ["mp4"]:
            test = root / str(elev) / sub / "test"
            if (test / "gallery_drone").is_dir() and not (test / "query_drone").is_dir():
                missing.append(test / "query_drone")
    lent = root / "45" / "2fps" / "test"
    for view in ("satellite", "street"):
        if (lent / f"gallery_{view}").is_dir() and not (lent / f"query_{view}").is_dir():
            missing.append(lent / f"query_{view}")
    return missing


def organize_hint(root: Path, missing: list[Path]) -> str:
    """The one line every command prints for a not-yet-organised UniV."""
    shown = ", ".join(str(p.relative_to(root)) for p in missing[:3]) + (" ..." if len(missing) > 3 else "")
    return (
        f"{root}: UniV is not organised yet (no {shown}; the archive ships only test/gallery_*): "
        f"run `geodistill data organize {root}` first"
    )


U1652_TEST_SUBSETS = ("query_drone", "gallery_satellite", "query_satellite", "gallery_drone")


def university1652_problem(root: Path) -> str | None:
    """What a University-1652 root lacks (a whole split, or the test query/gallery pair), or None."""
    has_train, has_test = (root / "train").is_dir(), (root / "test").is_dir()
    if has_train and has_test:
        test = root / "test"
        pairs = (("query_drone", "gallery_satellite"), ("query_satellite", "gallery_drone"))
        if any((test / q).is_dir() and (test / g).is_dir() for q, g in pairs):
            return None
        return (
            f"{root}: University-1652 test/ has neither query_drone+gallery_satellite nor "
            f"query_satellite+gallery_drone: unpack the archive's test/ folder into {root}"
        )
    missing = "train/" if not has_train else "test/"
    return (
        f"{root}: University-1652 without its {missing} split (found only "
        f"{'test/' if has_test else 'train/'}): unpack the archive's {missing} folder into {root}"
    )


def require_complete(root: str | Path) -> str:
    """The layout of ``root`` ('univ' or 'university1652'), refusing one that is not ready to use.

    A listing only: a UniV not organised yet or a University-1652 missing a split raises the
    one-line DataError that says what to run. Commands call it before loading anything.
    """
    kind = detect_layout(root)
    root = Path(root)
    if kind == "univ":
        missing = unorganized_univ(root)
        if missing:
            raise DataError(organize_hint(root, missing))
    else:
        problem = university1652_problem(root)
        if problem:
            raise DataError(problem)
    return kind


def detect_layout(root: str | Path) -> str:
    """'univ' or 'university1652'; DataError on anything else."""
    root = _existing(root)
    if any((root / str(e)).is_dir() for e in ELEVATIONS):
        return "univ"
    if (root / "train").is_dir() or (root / "test").is_dir():
        return "university1652"
    raise DataError(
        f"{root}: not a UniV (<root>/30|45/...) or University-1652 (<root>/train, <root>/test) layout"
    )


def open_index(root: str | Path, *, elevation: int = 45, fps: int = 2) -> DatasetIndex:
    if detect_layout(root) == "univ":
        return read_univ(root, elevation=elevation, fps=fps)
    return read_university1652(root)


def _existing(root: str | Path) -> Path:
    root = Path(root)
    if not root.exists():
        raise DataError(f"dataset path does not exist: {root}")
    if not root.is_dir():
        raise DataError(f"dataset path is not a directory: {root}")
    return root
