"""The HTML report as a reader sees it: rendered by headless Chromium at 1,280 x 800."""

from __future__ import annotations

import html
import json
import math
import re
from pathlib import Path

import pytest
from services import headless_chromium

from geodistill.leaderboard import Leaderboard, make_row
from geodistill.leaderboard.report import write_report

ANCHORS = "university1652"  # the packaged anchors, by name

# GFLOPs of one 48-px frame (FlopCounterMode, as the demo's backbones count) and a recall base.
DEMO_BACKBONES = {
    "mobilenetv3_small": (0.0126, 20.0),
    "convnext_atto": (0.0504, 28.0),
    "resnet18": (0.1674, 33.0),
}


def demo_rows() -> list[dict]:
    """A demo-sized distillation search: three student backbones over views, fps and temperature,
    a fourth backbone whose trials all failed or were stopped (no finished trial), a measured
    baseline close above the front, and the resnet18 teacher at 1, 2, 4 and 8 views."""
    rows = []
    n = 0
    for backbone, (per_frame, base) in DEMO_BACKBONES.items():
        for views in (1, 2, 4, 8):
            for fps, temperature in ((2, 1.5), (5, 4.0), (10, 7.0)):
                n += 1
                recall = base + 6 * math.log2(views) + fps / 5 + (temperature == 4.0)
                rows.append(
                    make_row(
                        experiment="demo",
                        trial_id=f"trial_{n:05d}",
                        stage="student",
                        backbone=backbone,
                        views=views,
                        dataset_fps=fps,
                        img_size=48,
                        temperature=temperature,
                        teacher="runs/demo/teacher",
                        w_logit=1.0,
                        d2s_recall1=round(recall, 2),
                        gflops=per_frame * views,
                        params_m=per_frame * 40,
                        status="stopped" if (n % 7 == 0) else "ok",
                    )
                )
    for status in ("failed", "stopped"):
        n += 1
        rows.append(
            make_row(
                experiment="demo",
                trial_id=f"trial_{n:05d}",
                stage="student",
                backbone="efficientnet_b0",
                views=2,
                dataset_fps=5,
                img_size=48,
                status=status,
                error="OOM" if status == "failed" else None,
            )
        )
    # a measured baseline just above the front's step at 0.2-0.4 GFLOPs: its label must find room
    rows.append(
        make_row(experiment="demo", trial_id="baseline", stage="baseline", backbone="resnet18", views=2,
                 img_size=48, d2s_recall1=43.0, gflops=0.3)
    )  # fmt: skip
    for views in (1, 2, 4, 8):
        rows.append(
            make_row(
                experiment="demo",
                trial_id=f"teacher_{views}views",
                stage="teacher",
                backbone="resnet18",
                views=views,
                img_size=48,
                d2s_recall1=60.0 + 7 * math.log2(views),
                gflops=DEMO_BACKBONES["resnet18"][0] * views,
                checkpoint_uri="runs/demo/teacher/checkpoints/e0012.safetensors",
            )
        )
    return rows


# After load, from the rendered page: each table's widths and headers, and per figure every
# text's box (with its string, from matplotlib's comment), every marker drawn for a backbone
# (gid ``...@backbone``: its path and colour), the legend's texts, the other markers' boxes and
# points along the front's staircase (every 2 px of its length, in page coordinates).
_PROBE = """<script>
window.addEventListener('load', () => {
  const box = e => { const r = e.getBoundingClientRect(); return [r.x, r.y, r.width, r.height]; };
  const comment = g => { for (const n of g.childNodes) if (n.nodeType === 8) return n.data.trim(); return ''; };
  const marker = e => {
    const ref = e.tagName === 'use' ? document.querySelector(e.getAttribute('xlink:href') || e.getAttribute('href')) : e;
    const s = getComputedStyle(e);
    return {d: ref ? ref.getAttribute('d') : null, fill: s.fill, stroke: s.stroke};
  };
  const tables = Array.from(document.querySelectorAll('table')).map(t => ({
    heading: (t.closest('.wide').previousElementSibling || {}).textContent,
    headers: Array.from(t.querySelectorAll('th')).map(th => th.textContent),
    scroll: t.closest('.wide').scrollWidth, client: t.closest('.wide').clientWidth, right: box(t)[0] + box(t)[2],
  }));
  const figures = Array.from(document.querySelectorAll('figure')).map(f => ({
    id: f.id,
    texts: Array.from(f.querySelectorAll('g[id^="text_"]')).map(g => ({text: comment(g), box: box(g),
      legend: !!g.closest('g[id^="legend_"]')})).filter(t => t.box[2] > 0 && t.box[3] > 0),
    series: Array.from(f.querySelectorAll('g[id*="@"]')).map(g => {
      const uses = g.querySelectorAll('use');
      const parts = uses.length ? Array.from(uses) : Array.from(g.querySelectorAll('path'));
      return {id: g.id, markers: parts.map(marker), boxes: parts.map(box)};
    }),
    others: Array.from(f.querySelectorAll('g[id="front-rings"], g[id^="ref-"], g[id^="published-"]'))
      .flatMap(g => Array.from(g.querySelectorAll('use, path')).map(box)),
    staircase: Array.from(f.querySelectorAll('g[id="front-line"] path')).flatMap(p => {
      const m = p.getScreenCTM(), n = p.getTotalLength(), pts = [];
      for (let l = 0; l <= n; l += 2) { const q = p.getPointAtLength(l);
        pts.push([m.a * q.x + m.c * q.y + m.e, m.b * q.x + m.d * q.y + m.f]); }
      return pts;
    }),
  }));
  const out = document.createElement('pre'); out.id = 'probe';
  out.textContent = JSON.stringify({tables, figures, page: [document.documentElement.scrollWidth, window.innerWidth]});
  document.body.appendChild(out);
});
</script></body>"""


def probe(report_html: Path, tmp_path: Path) -> dict:
    """The page rendered at 1,280 x 800, measured by ``_PROBE`` (a copy of the page with it)."""
    page = tmp_path / "probe.html"
    page.write_text(report_html.read_text().replace("</body>", _PROBE))
    proc = headless_chromium(page, tmp_path / "profile", "--virtual-time-budget=5000", "--dump-dom")
    assert proc.returncode == 0, proc.stderr[-2000:]
    found = re.search(r"<pre id=\"probe\">([^<]*)</pre>", proc.stdout)
    assert found, proc.stdout[-2000:]
    return json.loads(html.unescape(found.group(1)))


def shape(d: str) -> tuple[str, tuple]:
    """A marker's outline independent of its size and position: curved or not, and its
    vertices centred and scaled to a unit box (rounded), as a set."""
    numbers = [float(v) for v in re.findall(r"-?\d+(?:\.\d+)?(?:e-?\d+)?", d)]
    points = list(zip(numbers[0::2], numbers[1::2], strict=False))
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    cx, cy = (min(xs) + max(xs)) / 2, (min(ys) + max(ys)) / 2
    scale = max(max(xs) - min(xs), max(ys) - min(ys)) or 1.0
    unit = {(round((x - cx) / scale, 1) + 0.0, round((y - cy) / scale, 1) + 0.0) for x, y in points}
    return ("curved" if "C" in d else "straight"), tuple(sorted(unit))


def looks(figures: list[dict]) -> dict[str, set]:
    """{backbone: {(shape, colour)}} over every marker drawn for it, in every plot and legend."""
    seen: dict[str, set] = {}
    for figure in figures:
        for series in figure["series"]:
            backbone = series["id"].split("@", 1)[1]
            for m in series["markers"]:
                colour = m["fill"] if m["fill"] != "none" else m["stroke"]
                seen.setdefault(backbone, set()).add((shape(m["d"]), colour))
    return seen


def overlaps(a: list[float], b: list[float], slack: float = 0.5) -> bool:
    return (
        a[0] + slack < b[0] + b[2]
        and b[0] + slack < a[0] + a[2]
        and a[1] + slack < b[1] + b[3]
        and b[1] + slack < a[1] + a[3]
    )


def label_clashes(figure: dict) -> list[tuple[str, str]]:
    """Pairs of texts whose rendered boxes overlap, and texts over a marker or the front's line."""
    texts = figure["texts"]
    clashes = [
        (a["text"], b["text"])
        for i, a in enumerate(texts)
        for b in texts[i + 1 :]
        if overlaps(a["box"], b["box"])
    ]
    markers = [b for s in figure["series"] if not s["id"].startswith("legend-") for b in s["boxes"]]
    markers += figure["others"]  # the front's rings, teacher stars, published points
    for t in texts:
        if not t["legend"]:
            clashes += [(t["text"], "a marker") for m in markers if overlaps(t["box"], m)]
            clashes += [
                (t["text"], "the front") for x, y in figure["staircase"] if overlaps(t["box"], [x, y, 0, 0])
            ]
    return clashes


@pytest.fixture(scope="module")
def demo_report(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("demo")
    board = Leaderboard(root / "lb")
    board.write(demo_rows())
    return write_report(board, root / "report", experiment="demo", anchors=ANCHORS)


@pytest.fixture(scope="module")
def rendered(demo_report, tmp_path_factory) -> dict:
    return probe(demo_report["html"], tmp_path_factory.mktemp("chromium"))


def test_tables_fit_1280_px_with_the_objectives_first(rendered):
    tables = rendered["tables"]
    assert len(tables) == 4, [t["headers"] for t in tables]  # front, best, teacher, published
    for table in tables:
        assert table["scroll"] <= table["client"] and table["right"] <= 1280, table
        assert table["headers"][:2] == ["d2s_recall1", "gflops"], table["headers"]
    assert rendered["page"][0] <= rendered["page"][1]  # the page itself never scrolls sideways
    front = tables[0]["headers"]
    assert "img_size" not in front and "runs" not in front  # constant: said once above the table


def test_one_marker_and_colour_per_backbone_in_every_plot_and_legend(rendered):
    figures = {f["id"]: f for f in rendered["figures"]}
    assert set(figures) == {"pareto", "effect_views", "effect_fps", "effect_temperature"}
    seen = looks(rendered["figures"])
    backbones = {*DEMO_BACKBONES, "efficientnet_b0"}
    assert set(seen) == backbones
    for backbone, styles in seen.items():
        assert len(styles) == 1, (backbone, styles)
    assert len({next(iter(s))[0] for s in seen.values()}) == len(backbones)  # distinct markers
    assert len({next(iter(s))[1] for s in seen.values()}) == len(backbones)  # distinct colours
    for figure in figures.values():  # every series in every legend, finished trials or not
        legend = {s["id"].split("@", 1)[1] for s in figure["series"] if s["id"].startswith("legend-")}
        assert legend == backbones, (figure["id"], legend)
        texts = [t["text"] for t in figure["texts"] if t["legend"]]
        assert "efficientnet_b0 (no finished trial)" in texts, texts


def test_no_two_labels_overlap_and_no_label_covers_a_marker(rendered):
    for figure in rendered["figures"]:
        assert figure["texts"], figure["id"]
        assert label_clashes(figure) == [], figure["id"]
    pareto = next(f for f in rendered["figures"] if f["id"] == "pareto")
    texts = [t["text"] for t in pareto["texts"]]
    assert {"teacher 1 view", "teacher 8 views", "MEAN ≈", "LPN ≈ (unconverted)"} <= set(texts), texts
    assert len(pareto["others"]) > 12 and len(pareto["staircase"]) > 100  # rings, stars, published
    # log axes read as plain numbers
    assert {"0.01", "0.1", "1", "10", "100"} <= set(texts), texts
    assert not any("10^" in t or "×10" in t for t in texts)


def test_the_compute_section_fits_and_its_labels_stay_clear(tmp_path):
    """The demo's trials with their compute counted: the anytime plot and its table render at
    1,280 px without sideways scrolling or overlapping labels, the other plots unchanged."""
    rows = demo_rows()
    for i, row in enumerate(rows):
        if row["stage"] == "student":
            row.update(compute=3 * (row["gflops"] or 0.01), wall_seconds=30.0 + i, train_gflops=1e3 * i)
    board = Leaderboard(tmp_path / "lb")
    board.write(rows)
    paths = write_report(board, tmp_path / "report", experiment="demo", anchors=ANCHORS)
    rendered = probe(paths["html"], tmp_path)
    figures = {f["id"]: f for f in rendered["figures"]}
    assert set(figures) == {"pareto", "effect_views", "effect_fps", "effect_temperature", "anytime"}
    assert label_clashes(figures["anytime"]) == [] and figures["anytime"]["texts"]
    assert all(len(styles) == 1 for styles in looks(rendered["figures"]).values())
    assert len(rendered["tables"]) == 5, [t["headers"] for t in rendered["tables"]]
    for table in rendered["tables"]:
        assert table["scroll"] <= table["client"] and table["right"] <= 1280, table
    assert rendered["page"][0] <= rendered["page"][1]
    assert any(t["headers"][2:4] == ["trial_id", "status"] for t in rendered["tables"])  # the section's
