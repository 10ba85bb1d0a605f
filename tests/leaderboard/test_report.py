"""Reports: the front table, the plots, and the HTML page rendered by headless Chromium."""

from __future__ import annotations

import html
import json
import re
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow.parquet as pq
import pytest
from services import headless_chromium

from geodistill.errors import ConfigError
from geodistill.leaderboard import Leaderboard, LeaderboardError, make_row
from geodistill.leaderboard.anchors import load_anchors
from geodistill.leaderboard.columns import GFLOPS_RULE
from geodistill.leaderboard.pareto import pareto_rows
from geodistill.leaderboard.report import write_report

ANCHORS = "university1652"  # the packaged anchors, by name
GFLOPS_PER_FRAME = {"resnet18": 1.0, "vit_tiny": 2.0, "convnext_atto": 0.5}
RECALL_BASE = {"resnet18": 40.0, "vit_tiny": 55.0, "convnext_atto": 30.0}


def _rows() -> list[dict]:
    rows = []
    for backbone, per_frame in GFLOPS_PER_FRAME.items():
        for views in (1, 2, 4):
            for fps in (2, 5):
                rows.append(
                    make_row(
                        experiment="sweep",
                        trial_id=f"{backbone}-v{views}-f{fps}",
                        stage="student",
                        backbone=backbone,
                        views=views,
                        dataset_fps=fps,
                        img_size=64,
                        d2s_recall1=RECALL_BASE[backbone] + 5 * views + fps,
                        d2s_ap=RECALL_BASE[backbone] + 4 * views,
                        gflops=per_frame * views,
                        params_m=per_frame * 3,
                    )
                )
    rows.append(
        make_row(experiment="sweep", trial_id="broken", stage="student", status="failed", error="OOM")
    )
    # Stopped early at a cheap, good-looking point: drawn hollow, never on the front.
    rows.append(
        make_row(
            experiment="sweep",
            trial_id="asha",
            stage="student",
            status="stopped",
            backbone="vit_tiny",
            epochs=1,
            d2s_recall1=30.0,  # at its stopping epoch: dominated by convnext_atto v1 (40 at 0.5)
            gflops=0.6,
        )
    )
    return rows


@pytest.fixture(scope="module")
def board(tmp_path_factory) -> Leaderboard:
    lb = Leaderboard(tmp_path_factory.mktemp("board") / "lb")
    lb.write(_rows())
    lb.write(
        [
            make_row(
                experiment="other",
                trial_id="x",
                stage="student",
                backbone="resnet18",
                d2s_recall1=99.0,
                gflops=0.1,
            )
        ]
    )
    return lb


@pytest.fixture(scope="module")
def report(board, tmp_path_factory) -> dict[str, Path]:
    """One report of experiment "sweep" with the published anchors (plots take seconds)."""
    return write_report(board, tmp_path_factory.mktemp("report"), experiment="sweep", anchors=ANCHORS)


def test_front_is_the_hand_computed_staircase(board):
    rows = board.read("sweep")
    assert "asha" in rows["trial_id"].to_list()  # a stopped row takes part at its values then
    front = pareto_rows(rows, "d2s_recall1")
    assert "asha" not in front["trial_id"].to_list()  # ... and is dominated there
    cheaper = rows.with_columns(
        pl.when(pl.col("trial_id") == "asha").then(0.1).otherwise(pl.col("gflops")).alias("gflops")
    )
    assert pareto_rows(cheaper, "d2s_recall1")["trial_id"][0] == "asha"  # the cheapest: on the front
    # recall = base + 5 views + fps, cost = per_frame * views (fps is free), so fps 5 beats fps 2.
    # At 0.5 GFLOPs only atto (40); at 1 resnet18 v1 (50) beats atto v2 (45); at 2 vit_tiny v1
    # (65) beats atto v4 and resnet18 v2 (55); at 4 vit_tiny v2 (70) beats resnet18 v4 (65); 8: 80.
    got = list(
        zip(front["backbone"], front["views"], front["dataset_fps"], front["gflops"], front["d2s_recall1"])
    )
    assert got == [
        ("convnext_atto", 1, 5, 0.5, 40.0),
        ("resnet18", 1, 5, 1.0, 50.0),
        ("vit_tiny", 1, 5, 2.0, 65.0),
        ("vit_tiny", 2, 5, 4.0, 70.0),
        ("vit_tiny", 4, 5, 8.0, 80.0),
    ]


def test_report_files_tables_and_anchors(report):
    paths = report
    for key in ("html", "md", "pareto_png", "pareto_svg", "effect_views_png", "effect_fps_svg"):
        assert paths[key].is_file() and paths[key].stat().st_size > 500, key
    assert paths["pareto_png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = paths["md"].read_text()
    assert "20 runs (failed: 1, ok: 18, stopped: 1); 18 finished with d2s_recall1 and GFLOPs" in md
    assert "; 5 on the Pareto front; hypervolume" in md
    front_md = md.split("## Pareto front")[1].split("##")[0]
    assert front_md.count("| convnext_atto |") == 1 and front_md.count("| vit_tiny |") == 3
    best_md = md.split("## Best run per backbone")[1].split("##")[0]
    # Objectives first; columns never set (refiner, teacher, the distillation knobs) are left
    # out, and columns equal in every row are said once above the table.
    assert "In every row: views = 4, dataset_fps = 5, img_size = 64, runs = 1." in best_md
    assert "| d2s_recall1 | gflops | backbone | params_m | trial_id |" in best_md
    assert "| 80.00 | 8 | vit_tiny | 6 | vit_tiny-v4-f5 |" in best_md
    assert "| 65.00 | 4 | resnet18 | 3 | resnet18-v4-f5 |" in best_md
    assert "Counting rule: GFLOPs per drone query: 1e9 floating-point operations counted by" in front_md
    assert "other" not in md.split("## Published")[0]  # the experiment filter held
    assert "University-1652, not comparable" in md
    # The published points under the counting rule: PFED's printed 4.45 are MACs at 224 px.
    assert "| 97.15 | 8.9 | PFED / MobileGeo | ConvNeXt-T student | 4.45 | MACs | 224 |" in md
    assert "| 93.55 | 26.00 | MEAN | ConvNeXt-T @384 | ≈26.00 | 2 x MACs | 384 |" in md
    assert "| 75.93 | – | LPN | ResNet-50 | ≈65.00 | unknown | – |" in md
    svg = paths["pareto_svg"].read_text()
    assert "University-1652, not comparable" in svg and "Pareto front" in svg and "stopped early" in svg
    assert not any(k.startswith("effect_temperature") for k in paths)  # not searched: no plot
    page = paths["html"].read_text()
    # Nothing to fetch: every plot is inline SVG (xmlns names are not loads), no script.
    assert not re.search(r"(?:src|href)=['\"]https?:", page) and "<script" not in page
    assert "<img" not in page and page.count("<figure id=") == 3  # pareto, views, fps
    assert "<svg" in page.split("<figure id='effect_views'")[1].split("</figure>")[0]
    inline = page.split("<figure id='pareto'")[1].split("</figure>")[0]
    assert inline.count("<title>") == 19  # 18 finished points + the stopped one, each with its tooltip


def test_gflops_column_states_the_one_counting_rule(board):
    """The rule travels with the data: every Parquet file's gflops field carries it."""
    files = sorted(Path(board.root).rglob("*.parquet"))
    assert files
    for file in files:
        described = pq.read_schema(file).field("gflops").metadata[b"description"].decode()
        assert described == GFLOPS_RULE
    assert (
        "FlopCounterMode" in GFLOPS_RULE and "GFLOPs = 2 x GMACs" in GFLOPS_RULE and "V views" in GFLOPS_RULE
    )


def test_report_user_errors(board, tmp_path):
    with pytest.raises(
        LeaderboardError, match=r"no rows in experiment 'nope' of leaderboard .*/lb: nothing to report"
    ):
        write_report(board, tmp_path / "o", experiment="nope")
    with pytest.raises(ConfigError, match="unknown metric 'recall@1'"):
        write_report(board, tmp_path / "o", metric="recall@1")
    bad = tmp_path / "mine.yaml"
    bad.write_text("anchors: {x: 1}\n")
    with pytest.raises(ConfigError, match=r"^anchors mine: anchors must be a list, got \{'x': 1\}$"):
        load_anchors(bad)
    bad.write_text("anchors: [{method: LPN, gflops: -65}]\n")
    with pytest.raises(ConfigError, match=r"^anchors mine: anchors\[0\]\.gflops must be > 0"):
        load_anchors(bad)
    with pytest.raises(ConfigError, match="unknown anchors 'nope'; known: university1652"):
        write_report(board, tmp_path / "o", anchors="nope")
    packaged = load_anchors()
    assert packaged.dataset == "University-1652" and not packaged.comparable and len(packaged.anchors) >= 8
    assert packaged.as_report()["label"] == "University-1652, not comparable"


# ---- a distillation search: knobs, repeats merged, the teacher drawn, no machine paths --------


def _kd_rows(root: Path) -> list[dict]:
    """Four students of one teacher (two of them the same configuration, seeds 0 and 1), the
    teacher's own row in another experiment, and an unrelated teacher that must not be drawn."""
    teacher_dir = root / "runs" / "teacher"

    def student(trial, *, views, temperature, w_logit, w_feature, w_relation, teacher_views, seed, recall):
        config = {
            "run_name": trial,
            "experiment": "kd",
            "output_dir": str(root / "runs"),
            "data": {"root": "/srv/shared/univ", "views": views, "fps": 2},
            "distill": {
                "teacher_checkpoint": str(teacher_dir),
                "temperature": temperature,
                "teacher_views": teacher_views,
                "w_logit": w_logit,
            },
            "train": {"seed": seed, "lr": 1e-3},
        }
        return make_row(
            experiment="kd",
            trial_id=trial,
            stage="student",
            backbone="resnet18",
            views=views,
            dataset_fps=2,
            img_size=64,
            teacher=str(teacher_dir),
            temperature=temperature,
            w_logit=w_logit,
            w_feature=w_feature,
            w_relation=w_relation,
            d2s_recall1=recall,
            gflops=float(views),
            config_json=config,
            checkpoint_uri=str(root / "runs" / trial / "checkpoints" / "e0002.safetensors"),
        )

    knobs = {"temperature": 2.0, "w_logit": 1.0, "w_feature": 0.5, "w_relation": 0.0, "teacher_views": 4}
    return [
        student("kd-a", views=2, **knobs, seed=0, recall=60.0),
        student("kd-b", views=2, **knobs, seed=1, recall=64.0),  # a repeat of kd-a: merged
        student(
            "kd-c",
            views=1,
            temperature=4.0,
            w_logit=0.5,
            w_feature=1.0,
            w_relation=0.25,
            teacher_views=None,
            seed=0,
            recall=50.0,
        ),  # fmt: skip
        student(
            "kd-d",
            views=4,
            temperature=1.0,
            w_logit=2.0,
            w_feature=0.0,
            w_relation=1.0,
            teacher_views=8,
            seed=0,
            recall=58.0,
        ),  # fmt: skip
        make_row(
            experiment="teachers",
            trial_id="teacher",
            stage="teacher",
            backbone="vit_tiny",
            views=4,
            temperature=4.0,  # a stage-1 row carries the config default it never used: not shown
            d2s_recall1=90.0,
            gflops=20.0,
            checkpoint_uri=str(teacher_dir / "checkpoints" / "e0003.safetensors"),
            config_json={"run_name": "teacher", "output_dir": str(root / "runs")},
        ),
        make_row(
            experiment="teachers",
            trial_id="other-teacher",
            stage="teacher",
            backbone="vit_small",
            views=8,
            d2s_recall1=95.0,
            gflops=30.0,
            checkpoint_uri=str(root / "runs" / "other" / "checkpoints" / "e0003.safetensors"),
        ),
    ]


@pytest.fixture(scope="module")
def kd_report(tmp_path_factory) -> tuple[Path, dict[str, Path]]:
    root = tmp_path_factory.mktemp("kd")
    board = Leaderboard(root / "lb")
    board.write(_kd_rows(root))
    return root, write_report(board, root / "report", experiment="kd", anchors=None)


def _section(md: str, heading: str) -> str:
    return md.split(f"## {heading}")[1].split("\n## ")[0]


def test_distillation_knobs_merged_repeats_and_teacher(kd_report):
    _, paths = kd_report
    md = paths["md"].read_text()
    assert (
        "4 runs (ok: 4); 3 finished with d2s_recall1 and GFLOPs "
        "(identical configurations counted once: 1 repeat(s) merged)"
    ) in md
    assert "; 2 on the Pareto front;" in md and "1 teacher/baseline reference point(s)" in md
    front = _section(md, "Pareto front")
    assert (
        "In every row: backbone = resnet18, dataset_fps = 2, img_size = 64, teacher = teachers/teacher."
        in front
    )
    header = (
        "| d2s_recall1 | gflops | views | teacher_views | temperature | w_logit | w_feature | w_relation "
        "| runs | trial_id |"
    )
    assert header in front
    rows = [line for line in front.splitlines() if line.startswith(("| 5", "| 6"))]
    # kd-a and kd-b (seeds 0 and 1, recall 60 and 64) are one configuration: mean 62, sd sqrt(8).
    # kd-c's teacher saw its own single frame (teacher_views null = views); kd-d (58 at 4) is dominated.
    # The teacher is named by its run, never by its path.
    assert rows == [
        "| 50.00 | 1 | 1 | 1 | 4 | 0.5 | 1 | 0.25 | 1 | kd-c |",
        "| 62.00 ± 2.83 | 2 | 2 | 4 | 2 | 1 | 0.5 | 0 | 2 | kd-a, kd-b |",
    ]
    reference = _section(md, "Teacher and baseline reference points")
    # one row: its empty columns (the distillation knobs a stage-1 row never used) are left out
    assert "| d2s_recall1 | gflops | backbone | views | runs | trial_id |" in reference
    assert "| 90.00 | 20.00 | vit_tiny | 4 | 1 | teacher |" in reference
    assert "other-teacher" not in md and "vit_small" not in md  # not the students' teacher
    for knob in ("views", "temperature", "w_logit", "w_feature", "w_relation", "teacher_views"):
        assert paths[f"effect_{knob}_png"].stat().st_size > 500, knob
    assert "effect_fps_png" not in paths  # one fps value: nothing to show
    assert "## Effect of KD temperature" in md and "## Effect of teacher views" in md


def test_report_has_no_machine_paths_and_tooltips_hold_configs(kd_report):
    root, paths = kd_report
    page, md, svg = paths["html"].read_text(), paths["md"].read_text(), paths["pareto_svg"].read_text()
    for text in (page, md, svg):
        assert str(root) not in text and "/srv/shared" not in text
    visible = re.sub(r"<svg.*?</svg>", "", page, flags=re.S)  # plots: their text is checked in svg
    visible = html.unescape(re.sub(r"<[^>]*>", " ", visible))
    assert not re.findall(r"(?<![\w.…:/])/[\w.-]+/", visible)  # no /-rooted path in any text
    titles = [html.unescape(t) for t in re.findall(r"<title>([^<]*)</title>", svg)]
    merged = [t for t in titles if t.startswith("2 runs: kd-a, kd-b (kd)")]
    assert len(merged) == 1, titles
    assert "62.00 ± 2.83; 2 GFLOPs" in merged[0]
    assert "teacher=teachers/teacher" in merged[0] and "teacher_views=4" in merged[0]
    assert "temperature=2" in merged[0] and "w_logit=1" in merged[0] and "w_relation=0" in merged[0]
    assert any(t.startswith("teacher teacher (teachers)") for t in titles)
    assert len(titles) == 4  # 3 student configurations + the teacher


# After load: each plot's size, the inline plot's size, and for every point of the front plot its
# tooltip and which point the browser finds under its centre (what a hover there would show).
_PROBE = """<script>
window.addEventListener('load', () => {
  const svg = document.querySelector('#pareto svg');
  const box = svg ? svg.getBoundingClientRect() : {width: 0, height: 0};
  const points = Array.from(document.querySelectorAll('#pareto g[id^="pt-"], #pareto g[id^="ref-"]')).map(g => {
    const r = g.getBoundingClientRect();
    const hit = document.elementFromPoint(r.x + r.width / 2, r.y + r.height / 2);
    const owner = hit && hit.closest('g[id^="pt-"], g[id^="ref-"]');
    return {id: g.id, title: g.querySelector('title').textContent, hit: owner ? owner.id : null};
  });
  const images = Array.from(document.querySelectorAll('figure svg')).map(s => {
    const r = s.getBoundingClientRect(); return [s.closest('figure').id, r.width, r.height]; });
  const out = document.createElement('pre'); out.id = 'probe';
  out.textContent = JSON.stringify({svg: [box.width, box.height], points, images});
  document.body.appendChild(out);
});
</script></body>"""


def test_report_renders_in_headless_chromium_with_hover_text(kd_report, tmp_path):
    """Screenshot (tmp_path/report.png) not blank, with the teacher's crimson star; the DOM after
    load holds each point's tooltip, and the point under each centre is that point."""
    from PIL import Image

    _, paths = kd_report
    shot = tmp_path / "report.png"
    proc = headless_chromium(paths["html"], tmp_path / "profile", f"--screenshot={shot}", window=(1280, 2600))
    assert proc.returncode == 0 and shot.is_file(), proc.stderr[-2000:]
    image = Image.open(shot).convert("RGB")
    assert image.size == (1280, 2600)
    pixels = np.asarray(image, dtype=np.int16)  # [H,W,3]
    assert (pixels != 255).any(axis=-1).mean() > 0.02  # not blank: > 2% of the page is not white
    crimson = int((np.abs(pixels - np.array([220, 20, 60])) < 25).all(axis=-1).sum())
    assert crimson > 50, crimson  # the teacher's star (and its label) are drawn

    probe = tmp_path / "probe.html"
    probe.write_text(paths["html"].read_text().replace("</body>", _PROBE))
    proc = headless_chromium(
        probe, tmp_path / "profile", "--virtual-time-budget=5000", "--dump-dom", window=(1280, 2600)
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    found = re.search(r"<pre id=\"probe\">([^<]*)</pre>", proc.stdout)
    assert found, proc.stdout[-2000:]
    data = json.loads(html.unescape(found.group(1)))
    assert data["svg"][0] > 500 and data["svg"][1] > 300
    titles = {p["id"]: p["title"] for p in data["points"]}
    assert len(titles) == 4 and any(t.startswith("2 runs: kd-a, kd-b (kd)") for t in titles.values())
    assert all(p["hit"] == p["id"] for p in data["points"]), data["points"]
    images = {name: (w, h) for name, w, h in data["images"]}
    assert set(images) == {"pareto"} | {
        f"effect_{k}" for k in ("views", "temperature", "w_logit", "w_feature", "w_relation", "teacher_views")
    }
    assert all(w > 300 and h > 200 for w, h in images.values()), images


def test_compute_spent_and_the_anytime_front_in_finishing_order(tmp_path):
    """Four trials end in the order t1, t2, t3 (failed), t4 (dominated). Reference: the lowest
    recall (30) and 1.1 x the largest GFLOPs (1.1). The log10-GFLOPs hypervolume is
    20 x log10(1.1) = 0.8279 after t1, + 10 x (log10 1 - log10 0.1) = 10.83 after t2, unchanged after t4."""
    from datetime import UTC, datetime, timedelta

    start = datetime(2026, 1, 1, tzinfo=UTC)
    trials = [  # trial, status, recall, gflops, epochs, wall seconds, training GFLOPs
        ("t1", "ok", 50.0, 1.0, 2, 10.0, 600.0),
        ("t2", "ok", 40.0, 0.1, 3, 20.0, 90.0),
        ("t3", "failed", None, 0.25, 2, 5.0, None),
        ("t4", "stopped", 30.0, 0.5, 2, 7.0, 300.0),
    ]
    board = Leaderboard(tmp_path / "lb")
    board.write(
        [
            make_row(experiment="spent", trial_id=t, stage="student", backbone="resnet18", status=status,
                     d2s_recall1=recall, gflops=gflops, epochs=epochs, compute=epochs * gflops,
                     wall_seconds=wall, train_gflops=train, created_at=start + timedelta(minutes=i))
            for i, (t, status, recall, gflops, epochs, wall, train) in enumerate(trials)
        ]
    )  # fmt: skip
    paths = write_report(board, tmp_path / "report", experiment="spent", anchors=None)
    assert paths["anytime_svg"].is_file() and paths["anytime_png"].is_file()
    md = paths["md"].read_text()
    section = _section(md, "Compute spent and the anytime front")
    # compute: 2 x 1 + 3 x 0.1 + 2 x 0.25 + 2 x 0.5 = 3.8; wall 42 s; training 990 GFLOPs
    assert "Compute spent: 3.8 GFLOPs x epochs over 4 trial(s), 42.00 trial-seconds" in section
    assert "training spent 990.00 GFLOPs" in section
    table = [
        line.split(" | ") for line in section.splitlines() if line.startswith("| ") and "---" not in line
    ]
    body = [[c.strip(" |") for c in line] for line in table[1:]]
    assert [(r[2], r[5], r[6]) for r in body] == [("t1", "2", "0.828"), ("t2", "2.3", "10.83")]
    assert "id='anytime'" in paths["html"].read_text()
