"""`geodistill profile`: JSON and table output, the MI refiner's kept views, every backbone, flag errors."""

from __future__ import annotations

import json

import pytest

from geodistill.models import BACKBONES
from geodistill.models.cost import COUNTER, resnet_macs
from geodistill.platform.cli import main


def test_profile_cli_counts_the_mi_refiner_at_the_kept_views(capsys):
    def row(*extra: str) -> dict:
        common = ["--backbone", "vit_tiny", "--img-size", "32", "--embed-dim", "16", "--views", "4"]
        assert main(["profile", *common, "--no-latency", "--json", "--refiner", "mi", *extra]) == 0
        return json.loads(capsys.readouterr().out)

    # The default keeps 4 of 4 frames, i.e. the mean of all four: no refiner FLOP.
    kept_all, kept_two = row(), row("--refiner-k", "2")
    assert (kept_all["refiner_k"], kept_two["refiner_k"]) == (4, 2)
    # keep 2 of 4: the two scoring matmuls, 2 (4^2 + 4) * 16 FLOPs, over the mean of all four
    assert (kept_two["gflops"] - kept_all["gflops"]) * 1e9 == pytest.approx(2 * 20 * 16, abs=1e-3)
    assert main(["profile", "--refiner-k", "0", "--no-latency"]) == 2
    assert "argument --refiner-k: must be >= 1" in capsys.readouterr().err


def test_cli_smoke_json_table_and_errors(capsys):
    assert main(["profile", "--smoke-test", "--json"]) == 0
    row = json.loads(capsys.readouterr().out)
    assert (row["backbone"], row["img_size"], row["views"], row["counter"]) == ("vit_tiny", 32, 2, COUNTER)
    assert row["gflops"] == pytest.approx(2 * row["gmacs"]) and row["latency_ms"] > 0
    assert main(["profile", "--backbone", "vit_huge"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(
        "geodistill profile: error: argument --backbone: unknown backbone 'vit_huge': "
        "not in timm.list_models() nor an alias; known: vit_tiny"
    )
    assert "\n" not in err
    assert main(["profile", "--views", "0", "--no-latency"]) == 2
    assert capsys.readouterr().err.strip() == (
        "geodistill profile: error: argument --views: must be >= 1 and <= 1024; got 0 (see geodistill profile --help)"
    )


@pytest.mark.slow  # builds and counts every registered backbone (vit_base, convnext_small, resnet50 ...)
def test_cli_profile_all_lists_every_backbone_in_registry_order(capsys):
    assert main(["profile", "--all", "--img-size", "32", "--no-latency"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[1].split() == [
        "backbone",
        "params",
        "M",
        "GFLOPs",
        "GMACs",
        "analytic/frame",
        "ms/query",
        "q/s",
    ]
    names = [line.split()[0] for line in out[3:]]
    assert names == list(BACKBONES)
    r50 = next(line.split() for line in out[3:] if line.startswith("resnet50 "))
    assert r50[-2:] == ["-", "-"] and float(r50[4]) == pytest.approx(
        resnet_macs(img_size=32, layers=[3, 4, 6, 3], bottleneck=True) / 1e9, abs=1e-3
    )
