"""A synthetic UniV: procedurally drawn satellite tiles and drone flights orbiting the target.

Each place is a "world" canvas: ground texture, roads, neighbouring footprints and a distinct
target building at the centre. The satellite tile is the canvas's centre seen from above,
north-up; a drone frame is the same canvas seen by a camera circling the target at 30 or 45
degrees (a perspective warp rotated with the orbit angle, plus lighting drift, blur and sensor
noise), so views of one place are related but never identical. The output is the real UniV
layout (``geodistill.data.index``), drone flights as jpeg frames or one 10 fps mp4 per building;
docs/design.md ("Synthetic UniV") lists the folders.
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from geodistill.data.index import ELEVATIONS, FPS_CHOICES

FLIGHT_FPS = 10
FLIGHT_FRAMES = 40  # one orbit at 10 fps; 5 fps -> 20 frames, 2 fps -> 8 frames
SHAPES = ("rect", "ell", "circle", "cross", "triangle", "hexagon", "tee")
LAYOUTS = ("organized", "archive")  # as our readers want it / as the UniV archive ships
ROOFS = ("solid", "stripes", "grid", "dots", "ring")


def generate_univ(
    out: str | Path,
    *,
    buildings: int,
    seed: int,
    video: str = "frames",
    img_size: int = 128,
    frame_size: int | None = None,
    distractors: int | None = None,
    jpeg_quality: int = 90,
    clouds: float = 0.0,
    layout: str = "organized",
    progress: Callable[[int, int, str], None] | None = None,
) -> Path:
    """Write a synthetic UniV of ``buildings`` places (half train, half test queries) under ``out``.

    ``distractors`` extra gallery-only places (default: a quarter of the test places, at least
    one) join gallery_satellite/gallery_drone/gallery_street, like University-1652's 951 vs 701.
    ``clouds`` is the chance that a drone frame has a cloud drifting over part of the view: one
    such frame alone can mislead, several frames of the flight together still see the place
    (what multi-view refinement is for). 0 keeps the frames exactly as without the option.
    ``layout="archive"`` writes the set as the UniV archive ships it: no ``test/query_*``
    folders (``geodistill data organize`` creates them from the galleries and
    ``dataset_split.json``'s ``test`` list), to test that step and what refuses to run before it.
    The bytes written depend only on the arguments. ``progress(done, total, label)`` is called
    after each place (the CLI draws a bar with it).
    """
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    if not 0.0 <= clouds <= 1.0:
        raise ValueError(f"clouds must be in [0, 1], got {clouds}")
    if video not in ("frames", "mp4"):
        raise ValueError(f"video must be 'frames' or 'mp4', got {video!r}")
    if buildings < 2:
        raise ValueError("need at least 2 buildings (one train, one test)")
    out = Path(out)
    frame_size = frame_size or max(16, (img_size * 3 // 4) // 2 * 2)  # even: mp4 needs it
    n_train = buildings // 2
    n_test = buildings - n_train
    n_distract = max(1, n_test // 4) if distractors is None else distractors
    total = buildings + n_distract
    ids = [f"{i:04d}" for i in range(1, total + 1)]
    order = np.random.default_rng([seed, 0]).permutation(total)
    train = sorted(ids[i] for i in order[:n_train])
    test = sorted(ids[i] for i in order[n_train:buildings])
    distract = sorted(ids[i] for i in order[buildings:])

    out.mkdir(parents=True, exist_ok=True)
    lender = out / "45" / "2fps"
    for done, bid in enumerate(ids):
        if progress is not None:
            progress(done, total, "places")
        rng = np.random.default_rng([seed, 1, int(bid)])
        world = draw_world(rng, canvas=4 * img_size)
        sat = satellite_tile(world, img_size)
        google = google_tile(world, img_size, rng)
        street = street_view(rng, world_info=world.info, size=img_size)
        sat_b, google_b, street_b = (_jpeg(im, jpeg_quality) for im in (sat, google, street))
        if bid in train:
            _write(lender / "train" / "satellite" / bid / f"{bid}.jpeg", sat_b)
            _write(lender / "train" / "google" / bid / f"{bid}_00.jpeg", google_b)
            _write(lender / "train" / "street" / bid / f"{bid}_00.jpeg", street_b)
            drone_subsets = [("train", "drone")]
        else:
            gallery_only = bid in distract
            for sub, data in (("satellite", sat_b), ("street", street_b)):
                _write(lender / "test" / f"gallery_{sub}" / bid / f"{bid}.jpeg", data)
                if not gallery_only and layout == "organized":
                    _write(lender / "test" / f"query_{sub}" / bid / f"{bid}.jpeg", data)
            queried = not gallery_only and layout == "organized"
            drone_subsets = [("test", "gallery_drone")] + ([("test", "query_drone")] if queried else [])
        for elevation in ELEVATIONS:
            frng = np.random.default_rng([seed, 2, int(bid), elevation])
            flight = render_flight(world, frng, elevation=elevation, size=frame_size, clouds=clouds)
            if video == "mp4":
                data = encode_mp4(flight, fps=FLIGHT_FPS)
                for split, subset in drone_subsets:
                    _write(out / str(elevation) / "mp4" / split / subset / f"{bid}.mp4", data)
                continue
            encoded = [_jpeg(f, jpeg_quality) for f in flight]
            for fps in FPS_CHOICES:
                step = FLIGHT_FPS // fps
                for split, subset in drone_subsets:
                    folder = out / str(elevation) / f"{fps}fps" / split / subset / bid
                    for k, data in enumerate(encoded[::step]):
                        _write(folder / f"frame_{k:03d}.jpeg", data)
    split_info = {
        "generator": "geodistill.data.synth",
        "seed": seed,
        "video": video,
        "img_size": img_size,
        "frame_size": frame_size,
        "clouds": clouds,
        "layout": layout,
        "train": train,
        "test": test,
        "distractors": distract,
    }
    (out / "dataset_split.json").write_text(json.dumps(split_info, indent=1, sort_keys=True) + "\n")
    if progress is not None:
        progress(total, total, "places")
    return out


# --------------------------------------------------------------------------- drawing the world


def _colour(rng: np.random.Generator, lo: int = 0, hi: int = 256) -> tuple[int, int, int]:
    return tuple(int(v) for v in rng.integers(lo, hi, size=3))


def _vivid(rng: np.random.Generator) -> tuple[int, int, int]:
    """A saturated colour: one channel high, one low, one anywhere (roofs that stand out)."""
    hi, lo, mid = rng.permutation(3)
    c = [0, 0, 0]
    c[hi] = int(rng.integers(190, 256))
    c[lo] = int(rng.integers(0, 70))
    c[mid] = int(rng.integers(0, 256))
    return tuple(c)


def _shape_points(shape: str, r: float) -> list[tuple[float, float]]:
    """Outline of the target footprint centred on 0, radius about r."""
    if shape == "rect":
        return [(-r, -0.6 * r), (r, -0.6 * r), (r, 0.6 * r), (-r, 0.6 * r)]
    if shape == "ell":
        return [(-r, -r), (0, -r), (0, 0), (r, 0), (r, r), (-r, r)]
    if shape == "cross":
        a = 0.35 * r
        return [
            (-a, -r),
            (a, -r),
            (a, -a),
            (r, -a),
            (r, a),
            (a, a),
            (a, r),
            (-a, r),
            (-a, a),
            (-r, a),
            (-r, -a),
            (-a, -a),
        ]
    if shape == "triangle":
        return [(0, -r), (r, 0.8 * r), (-r, 0.8 * r)]
    if shape == "tee":
        a = 0.35 * r
        return [
            (-r, -r),
            (r, -r),
            (r, -r + 2 * a),
            (a, -r + 2 * a),
            (a, r),
            (-a, r),
            (-a, -r + 2 * a),
            (-r, -r + 2 * a),
        ]
    n = 6 if shape == "hexagon" else 24
    return [(r * math.cos(2 * math.pi * i / n), r * math.sin(2 * math.pi * i / n)) for i in range(n)]


def _rotate(points, angle: float, cx: float, cy: float):
    c, s = math.cos(angle), math.sin(angle)
    return [(cx + x * c - y * s, cy + x * s + y * c) for x, y in points]


def draw_world(rng: np.random.Generator, *, canvas: int) -> Image.Image:
    """The place seen from above: canvas x canvas px, target building at the centre."""
    # Ground: a base colour modulated by low-frequency texture.
    ground = np.array(_colour(rng, 60, 170), dtype=np.float32)
    coarse = rng.normal(0, 1, size=(8, 8, 1)).astype(np.float32)
    tex = (
        np.asarray(
            Image.fromarray(((coarse[..., 0] + 3) * 40).clip(0, 255).astype(np.uint8)).resize(
                (canvas, canvas), Image.BILINEAR
            ),
            dtype=np.float32,
        )[..., None]
        / 120.0
        - 1.0
    )  # [C,C,1] ~[-1,1]
    img = Image.fromarray((ground * (1 + 0.25 * tex)).clip(0, 255).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(img)
    c = canvas / 2
    # Roads: straight lines across the world.
    road = _colour(rng, 90, 150)
    for _ in range(int(rng.integers(1, 4))):
        ang = rng.uniform(0, math.pi)
        off = rng.uniform(-0.35, 0.35) * canvas
        dx, dy = math.cos(ang), math.sin(ang)
        px, py = c - dy * off, c + dx * off
        L = canvas
        draw.line(
            [(px - dx * L, py - dy * L), (px + dx * L, py + dy * L)], fill=road, width=max(2, canvas // 28)
        )
    # Neighbouring footprints, kept off the target's centre.
    for _ in range(int(rng.integers(10, 22))):
        while True:
            x, y = rng.uniform(0, canvas, size=2)
            if max(abs(x - c), abs(y - c)) > 0.16 * canvas:
                break
        w, h = rng.uniform(0.03, 0.08, size=2) * canvas
        pts = _rotate([(-w, -h), (w, -h), (w, h), (-w, h)], rng.uniform(0, math.pi), x, y)
        draw.polygon(pts, fill=_colour(rng, 80, 230))
    # The target: shape, size, heading, colour and roof pattern are the place's identity.
    shape = SHAPES[int(rng.integers(len(SHAPES)))]
    roof = ROOFS[int(rng.integers(len(ROOFS)))]
    r = rng.uniform(0.09, 0.14) * canvas
    heading = rng.uniform(0, 2 * math.pi)
    body, accent = _vivid(rng), _vivid(rng)
    outline = _rotate(_shape_points(shape, r), heading, c, c)
    mask = Image.new("L", (canvas, canvas), 0)
    ImageDraw.Draw(mask).polygon(outline, fill=255)
    roof_img = Image.new("RGB", (canvas, canvas), body)
    rd = ImageDraw.Draw(roof_img)
    step = max(4, int(r / 3))
    if roof == "stripes":
        for k in range(-canvas, canvas, step):
            rd.line(_rotate([(k, -canvas), (k, canvas)], heading, c, c), fill=accent, width=max(2, step // 3))
    elif roof == "grid":
        for k in range(-canvas, canvas, step):
            rd.line(_rotate([(k, -canvas), (k, canvas)], heading, c, c), fill=accent, width=max(1, step // 4))
            rd.line(_rotate([(-canvas, k), (canvas, k)], heading, c, c), fill=accent, width=max(1, step // 4))
    elif roof == "dots":
        for gx in range(-int(r), int(r) + 1, step):
            for gy in range(-int(r), int(r) + 1, step):
                ((x, y),) = _rotate([(gx, gy)], heading, c, c)
                rd.ellipse([x - step / 4, y - step / 4, x + step / 4, y + step / 4], fill=accent)
    elif roof == "ring":
        rd.ellipse(
            [c - 0.55 * r, c - 0.55 * r, c + 0.55 * r, c + 0.55 * r], outline=accent, width=max(2, step // 2)
        )
    img.paste(roof_img, (0, 0), mask)
    draw.polygon(outline, outline=tuple(v // 2 for v in body), width=max(1, canvas // 128))
    img.info["target"] = {"shape": shape, "roof": roof, "body": body, "accent": accent}
    return img


def satellite_tile(world: Image.Image, size: int) -> Image.Image:
    """North-up top view: the centre half of the world canvas."""
    c = world.width // 4
    return world.crop((c, c, 3 * c, 3 * c)).resize((size, size), Image.LANCZOS)


def google_tile(world: Image.Image, size: int, rng: np.random.Generator) -> Image.Image:
    """Another top view (different zoom and colour balance), like UniV's Google images."""
    c = world.width / 4 * rng.uniform(0.85, 1.1)
    m = world.width / 2
    tile = world.crop((int(m - c), int(m - c), int(m + c), int(m + c))).resize((size, size), Image.LANCZOS)
    arr = np.asarray(tile, dtype=np.float32) * rng.uniform(0.85, 1.15, size=3)
    return Image.fromarray(arr.clip(0, 255).astype(np.uint8))


def street_view(rng: np.random.Generator, *, world_info: dict, size: int) -> Image.Image:
    """A crude ground-level facade of the target (its colours and pattern), sky above."""
    t = world_info["target"]
    img = Image.new("RGB", (size, size), (140, 180, 225))
    d = ImageDraw.Draw(img)
    d.rectangle([0, int(0.75 * size), size, size], fill=(110, 110, 105))
    x0, x1 = sorted(rng.uniform(0.05, 0.95, size=2) * size)
    x0, x1 = min(x0, 0.3 * size), max(x1, 0.7 * size)
    top = rng.uniform(0.15, 0.4) * size
    d.rectangle([x0, top, x1, 0.78 * size], fill=t["body"])
    win = max(3, size // 12)
    for y in np.arange(top + win, 0.7 * size, 2 * win):
        for x in np.arange(x0 + win, x1 - win, 2 * win):
            d.rectangle([x, y, x + win, y + win], fill=t["accent"])
    return img


# --------------------------------------------------------------------------- the drone flight


def _homography(dst: list[tuple[float, float]], src: list[tuple[float, float]]) -> tuple[float, ...]:
    """PIL PERSPECTIVE coefficients mapping output points ``dst`` onto input points ``src``."""
    rows, rhs = [], []
    for (x, y), (u, v) in zip(dst, src):
        rows.append([x, y, 1, 0, 0, 0, -u * x, -u * y])
        rows.append([0, 0, 0, x, y, 1, -v * x, -v * y])
        rhs += [u, v]
    return tuple(np.linalg.solve(np.array(rows, dtype=np.float64), np.array(rhs, dtype=np.float64)))


def render_flight(
    world: Image.Image,
    rng: np.random.Generator,
    *,
    elevation: int,
    size: int,
    n: int = FLIGHT_FRAMES,
    clouds: float = 0.0,
) -> list[Image.Image]:
    """``n`` frames (size x size) of one orbit around the target at ``elevation`` degrees.

    With ``clouds`` > 0 each frame has that chance of a cloud over part of it (see ``_cloud``).
    """
    canvas = world.width
    c = canvas / 2
    tilt = math.cos(math.radians(elevation))  # 0.87 at 30 deg, 0.71 at 45 deg
    spread = 1.0 + 1.1 * tilt  # far edge width / near edge width
    depth = 1.0 + 0.5 * tilt  # far edge distance / near edge distance
    half = canvas * rng.uniform(0.13, 0.16)  # zoom: half width of the near edge in world px
    start = rng.uniform(0, 2 * math.pi)
    gain = rng.uniform(0.8, 1.15)
    tint = rng.uniform(0.92, 1.08, size=3)
    phase = rng.uniform(0, 2 * math.pi)
    dst = [(0, 0), (size, 0), (size, size), (0, size)]
    local = [(-half * spread, -half * depth), (half * spread, -half * depth), (half, half), (-half, half)]
    frames = []
    for k in range(n):
        theta = start + 2 * math.pi * k / n
        coeffs = _homography(dst, _rotate(local, theta, c, c))
        frame = world.transform((size, size), Image.PERSPECTIVE, coeffs, Image.BILINEAR)
        frame = frame.filter(ImageFilter.GaussianBlur(float(rng.uniform(0.3, 0.9))))
        light = gain * (1 + 0.12 * math.sin(theta + phase)) * tint  # [3]
        arr = np.asarray(frame, dtype=np.float32) * light + rng.normal(0, 4.0, size=(size, size, 3))
        if clouds > 0 and rng.random() < clouds:  # no draw at all when off: same bytes as before
            arr = _cloud(arr, rng)
        frames.append(Image.fromarray(arr.clip(0, 255).astype(np.uint8)))
    return frames


def _cloud(arr: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Blend a soft white cloud over ``arr`` [H,W,3], centred near the target so it often hides it."""
    h, w = arr.shape[:2]
    cy, cx = rng.normal(h / 2, h / 5), rng.normal(w / 2, w / 5)
    ry, rx = rng.uniform(0.25, 0.45, size=2) * (h, w)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    d2 = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2
    alpha = np.clip(1.6 * np.exp(-d2), 0.0, 0.95)[..., None]  # [H,W,1]: opaque core, soft edge
    white = rng.uniform(215, 250) + rng.normal(0, 3.0, size=(h, w, 1))
    return arr * (1 - alpha) + white * alpha


# --------------------------------------------------------------------------- encoding


def _jpeg(img: Image.Image, quality: int) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def encode_mp4(frames: list[Image.Image], *, fps: int) -> bytes:
    """H.264 (or MPEG-4 part 2 where libx264 is missing), single-threaded so bytes are reproducible."""
    import av

    buf = io.BytesIO()
    codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
    with av.open(buf, mode="w", format="mp4") as container:
        # Reproducible bytes need threads=1 given when the encoder opens and x264's macroblock
        # tree off: with mbtree on, frames whose width is not a multiple of 32 came out different
        # from run to run (seen with libx264 in av 18.1).
        x264 = {"crf": "18", "preset": "veryfast", "x264-params": "no-mbtree=1"}
        options = x264 if codec == "libx264" else {"qscale": "3"}
        stream = container.add_stream(codec, rate=fps, options={**options, "threads": "1"})
        stream.width, stream.height = frames[0].size
        stream.pix_fmt = "yuv420p"
        stream.thread_count = 1
        for img in frames:
            for packet in stream.encode(av.VideoFrame.from_image(img)):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return buf.getvalue()


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
