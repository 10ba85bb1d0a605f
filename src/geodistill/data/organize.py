"""Organise a UniV as it is shipped into the layout every reader expects (``geodistill data organize``).

The archive holds, per elevation and frame rate, only ``train/drone`` and ``test/gallery_drone``;
``45/2fps`` alone also holds satellite/street/google views. As UniV's own organising step does,
this creates ``test/query_*`` for the query buildings (from ``dataset_split.json``: the first of
``query``, ``query_buildings`` or ``test`` holding a list of ids, or a file given explicitly) and
lends ``45/2fps``'s satellite/street/google views to every other subset, with hard links (a copy
where links are refused). Files already there are never touched: running it twice is a no-op.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from geodistill.data.index import ELEVATIONS, FPS_CHOICES, detect_layout
from geodistill.errors import DataError

SPLIT_KEYS = ("query", "query_buildings", "test")
LENT = {"train": ("satellite", "street", "google"), "test": ("gallery_satellite", "gallery_street")}


@dataclass
class OrganizeReport:
    root: Path
    query_buildings: int = 0
    created: list[str] = field(default_factory=list)  # folders made, relative to root
    files_linked: int = 0
    files_copied: int = 0


def query_buildings(root: Path, split_file: str | Path | None = None) -> list[str]:
    """The query building ids listed in ``split_file`` (default ``<root>/dataset_split.json``)."""
    path = Path(split_file) if split_file is not None else root / "dataset_split.json"
    if not path.is_file():
        raise DataError(
            f"{path} not found: it lists the query buildings (pass --split FILE with a JSON list of ids)"
        )
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DataError(f"{path}: not a readable JSON file ({err})") from None
    ids = (
        data
        if isinstance(data, list)
        else next(
            (data[k] for k in SPLIT_KEYS if isinstance(data, dict) and isinstance(data.get(k), list)), None
        )
    )
    if not ids or not all(isinstance(i, str | int) for i in ids):
        raise DataError(f"{path}: no list of query building ids (a list, or under {', '.join(SPLIT_KEYS)})")
    return sorted(f"{int(i):04d}" if isinstance(i, int) else i for i in ids)


def organize_univ(root: str | Path, *, split_file: str | Path | None = None) -> OrganizeReport:
    """Create the missing ``test/query_*`` folders and lend 45/2fps's views (see the module docstring)."""
    root = Path(root)
    if detect_layout(root) != "univ":
        raise DataError(f"{root}: not a UniV layout (University-1652 needs no organising)")
    report = OrganizeReport(root=root)
    queries = set(query_buildings(root, split_file))
    report.query_buildings = len(queries)
    lender = root / "45" / "2fps"
    try:
        if lender.is_dir():  # first, so its new query_satellite/street can be lent below
            for view in ("satellite", "street"):
                _queries_from_gallery(lender / "test", view, queries, report)
        for elev in ELEVATIONS:
            for sub in [f"{f}fps" for f in FPS_CHOICES] + ["mp4"]:
                base = root / str(elev) / sub
                if not base.is_dir():
                    continue
                _queries_from_gallery(base / "test", "drone", queries, report)
                if base == lender or sub == "mp4" or not lender.is_dir():
                    continue
                for split, subsets in LENT.items():
                    for subset in (*subsets, *(s.replace("gallery_", "query_") for s in subsets)):
                        src = lender / split / subset
                        if src.is_dir() and not (base / split / subset).exists():
                            _link_tree(src, base / split / subset, report)
    except OSError as err:
        raise DataError(f"cannot organise {root}: {err}") from None
    return report


def _queries_from_gallery(test: Path, view: str, queries: set[str], report: OrganizeReport) -> None:
    """test/gallery_<view>/<id>[/ or .mp4] -> test/query_<view>/ for each query id (only if absent)."""
    gallery, query = test / f"gallery_{view}", test / f"query_{view}"
    if not gallery.is_dir() or query.exists():
        return
    entries = [p for p in sorted(gallery.iterdir()) if not p.name.startswith(".")]
    chosen = [p for p in entries if (p.stem if p.is_file() else p.name) in queries]
    if not chosen:
        raise DataError(f"{gallery}: none of the query buildings is in the gallery (wrong split file?)")
    _link_tree(gallery, query, report, only=chosen)


def _link_tree(src: Path, dst: Path, report: OrganizeReport, *, only: list[Path] | None = None) -> None:
    """Link every file under ``src`` (or under its entries ``only``) into a new folder ``dst``.

    Built under a hidden temporary name and renamed: the folder appears whole or not at all, so
    an interrupted run is simply run again.
    """
    tmp = dst.with_name(f".{dst.name}.tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    for entry in only if only is not None else [src]:
        files = [entry] if entry.is_file() else sorted(p for p in entry.rglob("*") if p.is_file())
        for path in files:
            _link(path, tmp / path.relative_to(src), report)
    tmp.rename(dst)
    report.created.append(str(dst.relative_to(report.root)))


def _link(src: Path, dst: Path, report: OrganizeReport) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
        report.files_linked += 1
    except OSError:  # another filesystem, or one without hard links
        shutil.copy2(src, dst)
        report.files_copied += 1
