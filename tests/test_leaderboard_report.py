"""Reports: the front table, the plots, and the HTML page rendered by headless Chromium."""

from __future__ import annotations

import base64
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from geodistill.errors import ConfigError
from geodistill.leaderboard import Leaderboard, LeaderboardError, make_row
from geodistill.leaderboard.pareto import pareto_rows
from geodistill.leaderboard.report import default_anchors_path, load_anchors, write_report

ANCHORS = Path(__file__).resolve().parents[1] / "baselines" / "anchors.yaml"
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
            d2s_recall1=99.0,
            gflops=0.1,
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
    assert "asha" in rows["trial_id"].to_list()  # a stopped row, never on the front
    front = pareto_rows(rows, "d2s_recall1")
    assert "asha" not in front["trial_id"].to_list()
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
    assert "| vit_tiny | 4 | 5 | 64 | – | – | 80.00 | 8 |" in best_md
    assert "| resnet18 | 4 | 5 | 64 | – | – | 65.00 | 4 |" in best_md
    assert "other" not in md.split("## Published")[0]  # the experiment filter held
    assert "University-1652, not comparable" in md and "| PFED / MobileGeo |" in md
    svg = paths["pareto_svg"].read_text()
    assert "University-1652, not comparable" in svg and "Pareto front" in svg and "stopped early" in svg
    page = paths["html"].read_text()
    assert "src='data:image/png;base64," in page and "http" not in page.split("<body>")[1]
    embedded = re.search(r"id='pareto' alt='[^']*' src='data:image/png;base64,([^']+)'", page).group(1)
    assert base64.b64decode(embedded) == paths["pareto_png"].read_bytes()


def test_report_user_errors(board, tmp_path):
    with pytest.raises(
        LeaderboardError, match=r"no rows in experiment 'nope' of leaderboard .*/lb: nothing to report"
    ):
        write_report(board, tmp_path / "o", experiment="nope")
    with pytest.raises(ConfigError, match="unknown metric 'recall@1'"):
        write_report(board, tmp_path / "o", metric="recall@1")
    bad = tmp_path / "anchors.yaml"
    bad.write_text("anchors: {x: 1}\n")
    with pytest.raises(ConfigError, match="needs a list under 'anchors'"):
        load_anchors(bad)
    assert default_anchors_path() is not None and load_anchors(default_anchors_path())["anchors"]


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    if shutil.which("apt-get"):  # the test set-up installs Debian's chromium where it can
        subprocess.run(
            ["apt-get", "install", "-y", "--no-install-recommends", "chromium"],
            capture_output=True,
            timeout=600,
            check=False,
            env={"DEBIAN_FRONTEND": "noninteractive", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
        )
    return shutil.which("chromium")


_PROBE = """<script>
window.addEventListener('load', () => {
  const out = document.createElement('pre'); out.id = 'probe';
  out.textContent = Array.from(document.images).map(i => i.id + '=' + i.naturalWidth + 'x' + i.naturalHeight).join(';');
  document.body.appendChild(out);
});
</script></body>"""


def test_html_page_renders_in_headless_chromium_with_its_plots(report, tmp_path):
    chromium = _chromium()
    if chromium is None:
        pytest.skip(
            "Debian chromium is not installed and could not be installed (apt-get needs root/network)"
        )
    probe = tmp_path / "probe.html"
    probe.write_text(report["html"].read_text().replace("</body>", _PROBE))
    profile = tmp_path / "chromium-profile"
    proc = subprocess.run(
        [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            f"--user-data-dir={profile}",
            "--virtual-time-budget=5000",
            "--dump-dom",
            probe.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    found = re.search(r"<pre id=\"probe\">([^<]*)</pre>", proc.stdout)
    assert found, proc.stdout[-2000:]
    sizes = dict(item.split("=") for item in found.group(1).split(";"))
    assert set(sizes) == {"pareto", "effect_views", "effect_fps"}
    for name, size in sizes.items():
        width, height = map(int, size.split("x"))
        assert width > 300 and height > 200, (name, size)
    assert "geodistill report" in proc.stdout and "<table>" in proc.stdout
