"""`geodistill data synth|check|organize`: what each prints, exit codes, one-line errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from geodistill.platform.cli import main


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src / "45" / "2fps", dst / "45" / "2fps")
    return dst


def test_cli_check_exit_codes(synth_univ: Path, tmp_path: Path, capsys):
    assert main(["data", "check", str(synth_univ)]) == 0
    out = capsys.readouterr().out
    assert "univ" in out and "gallery_satellite" in out and "missing views: none" in out
    root = _copy(synth_univ, tmp_path / "u")
    bad = sorted((root / "45" / "2fps" / "train" / "satellite").rglob("*.jpeg"))[:2]
    for path in bad:
        path.write_bytes(b"garbage")
    assert main(["data", "check", str(root)]) == 2
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert err.count("\n") == 0
    assert err == f"geodistill data: error: 2 corrupt file(s) in {root}: {bad[0]}; {bad[1]}"
    assert "corrupt files (2 of " in captured.out  # the report lists each with its reason
    assert sum(f"corrupt image {p}:" in captured.out for p in bad) == 2
    assert main(["data", "check", str(tmp_path / "nowhere")]) == 2
    assert "dataset path does not exist" in capsys.readouterr().err


def test_cli_synth(tmp_path: Path, capsys):
    out = tmp_path / "s"
    assert (
        main(["data", "synth", "--out", str(out), "--buildings", "4", "--seed", "2", "--img-size", "32"]) == 0
    )
    text = capsys.readouterr().out
    assert (
        f"wrote synthetic UniV to {out}" in text
        and "2 train + 2 test buildings + 1 gallery distractors" in text
    )
    assert (out / "dataset_split.json").is_file() and (out / "30" / "10fps" / "train" / "drone").is_dir()
    assert main(["data", "synth", "--out", str(out), "--buildings", "1"]) == 2
    assert "argument --buildings: must be >= 2" in capsys.readouterr().err


def test_cli_organize_prints_what_it_made_then_nothing_to_do(tmp_path: Path, capsys):
    root = tmp_path / "univ"
    for ident in ("0001", "0002"):
        frame = root / "45" / "2fps" / "test" / "gallery_drone" / ident / "f1.jpeg"
        frame.parent.mkdir(parents=True)
        frame.write_bytes(b"x")
    (root / "dataset_split.json").write_text(json.dumps({"test": [1]}))
    assert main(["data", "organize", str(root)]) == 0
    assert capsys.readouterr().out.splitlines() == [
        f"{root}: 1 query buildings; 1 folder(s) created, 1 file(s) linked",
        "  + 45/2fps/test/query_drone",
    ]
    assert main(["data", "organize", str(root)]) == 0
    assert capsys.readouterr().out.splitlines()[1] == "  already organised: nothing to do"
    assert main(["data", "organize", str(tmp_path / "nowhere")]) == 2
    assert (
        capsys.readouterr().err.strip()
        == f"geodistill data: error: dataset path does not exist: {tmp_path / 'nowhere'}"
    )
