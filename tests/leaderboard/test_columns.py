"""The leaderboard's columns: make_row fills every column with its declared type, scrubs secrets, maps metrics."""

from __future__ import annotations

import json
from datetime import datetime

import pytest

from geodistill.leaderboard import COLUMNS, SCHEMA, SCHEMA_VERSION, make_row, metrics_to_columns
from geodistill.redact import scrub_secrets


def row(trial: str, stage: str = "student", **fields) -> dict:
    return make_row(experiment="exp", trial_id=trial, stage=stage, **fields)


def test_make_row_fills_defaults_and_names_unknown_fields():
    r = row("t1", d2s_recall1=50, views=4.0)
    assert list(r) == list(COLUMNS) and len(COLUMNS) == len(SCHEMA)
    assert r["row_key"] == "exp/t1/student" and r["status"] == "ok"
    assert r["schema_version"] == SCHEMA_VERSION and r["host"]
    assert isinstance(r["created_at"], datetime) and r["created_at"].tzinfo is not None
    assert r["d2s_recall1"] == 50.0 and isinstance(r["d2s_recall1"], float) and r["views"] == 4
    assert r["gflops"] is None and r["error"] is None
    with pytest.raises(ValueError, match=r"unknown leaderboard field\(s\): recall_at_1, zzz"):
        row("t1", recall_at_1=1.0, zzz=2)
    with pytest.raises(ValueError, match="'views' takes an integer"):
        row("t1", views=2.5)
    with pytest.raises(ValueError, match="stage must be one of"):
        row("t1", stage="final")
    with pytest.raises(ValueError, match="needs 'trial_id'"):
        make_row(experiment="exp", stage="student")


def test_config_json_never_keeps_secrets():
    cfg = {
        "model": {"backbone": "vit_tiny", "api_key": "abc"},
        "storage": {"aws_access_key_id": "AKIAABCDEFGHIJKLMNOP", "AWS_SECRET_ACCESS_KEY": "s", "bucket": "b"},
        "hf_token": "hf_abcdefghijklmnopqrstuvwxyz",
        "password": "pw",
        "note": "AKIAABCDEFGHIJKLMNOP",
        "lr": 0.1,
    }
    stored = json.loads(row("t", config_json=cfg)["config_json"])
    assert stored == {"model": {"backbone": "vit_tiny"}, "storage": {"bucket": "b"}, "lr": 0.1}
    assert json.loads(row("t", config_json=json.dumps(cfg))["config_json"]) == stored
    assert scrub_secrets([{"db_credentials": 1, "x": 2}]) == [{"x": 2}]


def test_metrics_to_columns_maps_both_directions():
    result = {
        "drone->satellite": {"recall@1": 50.0, "recall@5": 60, "recall@10": 70, "recall@top1": 80, "ap": 55},
        "satellite->drone": {"recall@1": 40.0, "recall@5": 41, "recall@10": 42, "recall@top1": 43, "ap": 44},
    }
    cols = metrics_to_columns(result)
    assert cols["d2s_recall1"] == 50.0 and cols["d2s_recall_top1"] == 80.0 and cols["s2d_ap"] == 44.0
    assert len(cols) == 10
    assert metrics_to_columns({"d2s_recall1": 1.0, "loss": 3.0}) == {"d2s_recall1": 1.0}
