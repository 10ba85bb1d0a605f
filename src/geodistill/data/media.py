"""Reading images and drone videos, and choosing which frames of a flight a model sees.

Every decode failure becomes a ``CorruptMediaError`` naming the file, so that a user sees one
line and the datasets can skip a bad frame instead of crashing a training run.
"""

from __future__ import annotations

import random
from fractions import Fraction
from pathlib import Path

from PIL import Image

from geodistill.errors import CorruptMediaError

IMAGE_SUFFIXES = (".jpeg", ".jpg", ".png", ".webp")
VIDEO_SUFFIXES = (".mp4",)


def load_image(path: str | Path) -> Image.Image:
    """Decode an image fully into RGB; a truncated or garbage file names itself in the error."""
    path = Path(path)
    try:
        with Image.open(path) as img:
            img.load()
            return img.convert("RGB")
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        raise CorruptMediaError(f"corrupt image {path}: {err}") from None


def sample_view_indices(
    n_frames: int, views: int, *, train: bool, rng: random.Random | None = None
) -> list[int]:
    """Pick ``views`` frame indices spread uniformly over a flight of ``n_frames`` frames.

    The flight is cut into ``views`` equal segments. Evaluation takes each segment's centre
    (deterministic); training takes a random frame inside each segment. With more views
    than frames the frames are repeated evenly (each frame ``views // n_frames`` times or one
    more), still in flight order.
    """
    if n_frames <= 0:
        raise ValueError("a video needs at least one frame")
    if views <= 0:
        raise ValueError("views must be positive")
    if views >= n_frames:
        # Repeat evenly: index k of `views` maps onto frame floor(k * n / views).
        return [k * n_frames // views for k in range(views)]
    rng = rng or random.Random()
    indices = []
    for k in range(views):
        start = k * n_frames // views
        stop = (k + 1) * n_frames // views  # exclusive, > start because views < n_frames
        if train:
            indices.append(rng.randrange(start, stop))
        else:
            indices.append((start + stop - 1) // 2)
    return indices


def _reason(err: Exception) -> str:
    """FFmpeg errors repeat the file name; keep only the reason."""
    return getattr(err, "strerror", None) or str(err)


def _open_video(path: Path):
    import av

    try:
        return av.open(str(path))
    except (av.error.FFmpegError, OSError) as err:
        raise CorruptMediaError(f"corrupt video {path}: {_reason(err)}") from None


def video_rate(container) -> Fraction:
    """Native frame rate of the first video stream (frames per second)."""
    stream = container.streams.video[0]
    rate = stream.average_rate or stream.base_rate or stream.guessed_rate
    return Fraction(rate) if rate else Fraction(10)


def decode_all_frames(path: str | Path) -> tuple[list[Image.Image], Fraction]:
    """Every frame of a video, in order, with the native rate. Raises CorruptMediaError."""
    import av

    path = Path(path)
    container = _open_video(path)
    frames: list[Image.Image] = []
    try:
        if not container.streams.video:
            raise CorruptMediaError(f"corrupt video {path}: no video stream")
        rate = video_rate(container)
        for frame in container.decode(video=0):
            frames.append(frame.to_image().convert("RGB"))
    except av.error.FFmpegError as err:
        raise CorruptMediaError(f"corrupt video {path}: {_reason(err)}") from None
    finally:
        container.close()
    if not frames:
        raise CorruptMediaError(f"corrupt video {path}: no decodable frames")
    return frames, rate


def resample_indices(n_native: int, native_fps: Fraction | float, fps: int) -> list[int]:
    """Indices of the native frames kept when the flight is read at ``fps`` (fps <= native).

    Frame k at the target rate is the native frame at time k / fps, so 40 frames at 10 fps
    read at 2 fps keep frames 0, 5, 10, ... (8 frames), at 5 fps 0, 2, 4, ... (20 frames).
    """
    native = Fraction(native_fps).limit_denominator(1001)
    if fps <= 0:
        raise ValueError("fps must be positive")
    step = native / fps
    if step <= 1:
        return list(range(n_native))
    duration = Fraction(n_native) / native
    count = max(1, int(duration * fps))
    return [min(n_native - 1, int(k * step)) for k in range(count)]


def read_video_frames(path: str | Path, *, fps: int, indices: list[int] | None = None) -> list[Image.Image]:
    """Decode a drone video and return its frames as sampled at ``fps``.

    ``indices`` index the resampled flight (0 .. count_video_frames(path, fps) - 1); None
    returns all of them.
    """
    frames, native = decode_all_frames(path)
    keep = resample_indices(len(frames), native, fps)
    flight = [frames[i] for i in keep]
    if indices is None:
        return flight
    return [flight[i] for i in indices]


def count_video_frames(path: str | Path, *, fps: int | None = None) -> int:
    """Frames in the video at ``fps`` (native rate when None), by demuxing packets only."""
    import av

    path = Path(path)
    container = _open_video(path)
    try:
        if not container.streams.video:
            raise CorruptMediaError(f"corrupt video {path}: no video stream")
        native = video_rate(container)
        n = sum(1 for p in container.demux(video=0) if p.size)
    except av.error.FFmpegError as err:
        raise CorruptMediaError(f"corrupt video {path}: {_reason(err)}") from None
    finally:
        container.close()
    if n == 0:
        raise CorruptMediaError(f"corrupt video {path}: no frames")
    return n if fps is None else len(resample_indices(n, native, fps))
