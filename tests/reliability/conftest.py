"""Fixtures for the reliability suite: broken copies of the synthetic dataset, a CLI runner."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from geodistill.platform.cli import main


@dataclass
class CliResult:
    code: int
    stdout: str
    stderr: str

    @property
    def error_lines(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if line.strip()]


@pytest.fixture
def cli(capsys) -> Callable[..., CliResult]:
    """Run ``geodistill ARGS...`` in this process (same code path as the console script)."""

    def run(*argv: str) -> CliResult:
        capsys.readouterr()
        try:
            code = main([str(a) for a in argv])
        except SystemExit as exc:  # argparse usage errors
            code = int(exc.code or 0)
        out = capsys.readouterr()
        return CliResult(code, out.out, out.err)

    return run


@pytest.fixture
def corrupt_jpeg_univ(synth_univ: Path, tmp_path: Path) -> tuple[Path, Path]:
    """A copy of the synthetic UniV with one gallery drone frame cut to 200 bytes."""
    root = tmp_path / "univ_bad_jpeg"
    shutil.copytree(synth_univ, root)
    bad = sorted((root / "45" / "2fps" / "test" / "gallery_drone").rglob("*.jpeg"))[3]
    bad.write_bytes(bad.read_bytes()[:200])
    return root, bad


@pytest.fixture
def truncated_mp4_univ(synth_univ_mp4: Path, tmp_path: Path) -> tuple[Path, Path]:
    """A copy of the mp4 synthetic UniV with one training video cut to its first 2000 bytes."""
    root = tmp_path / "univ_bad_mp4"
    shutil.copytree(synth_univ_mp4, root)
    bad = sorted((root / "45" / "mp4" / "train" / "drone").glob("*.mp4"))[0]
    bad.write_bytes(bad.read_bytes()[:2000])
    return root, bad
