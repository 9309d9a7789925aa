"""What every decoder backend shares: `DecodeOptions`, the `DecodedVideo` it returns, the
`DecodeError` it raises, the decode-quality presets, and opening a source (local path or fsspec
URL) with the checks and error wording common to both backends."""
from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from eercf_core.config import NUM_FRAMES, SAMPLE_FPS
from eercf_core.files import paths
from eercf_core.video import error_causes

DEFAULT_MAX_OFFSET = 0.5  # seconds; half the 1 fps sampling interval
DEFAULT_SEEK_GAP = 1.0  # seconds: decode forward when the next target is this close
SKIP_MIN_FRAMES = 2  # non-reference frames this close to a wanted frame are always decoded
MAX_PIXELS = 8192 * 8192  # refuse absurd frame sizes (fuzzed headers) before allocating
BACKENDS = ("pyav", "decord", "auto")
QUALITY_EXACT, QUALITY_FAST = "exact", "fast"
QUALITIES = (QUALITY_EXACT, QUALITY_FAST)
DEFAULT_QUALITY = QUALITY_FAST
# "fast" only touches sources at least this many times the model's input (448 px and up for
# 224): scaling down 2x or more averages the deblocking filter's few-pixel block edges away.
# Measured on the 42 shared files (bench_decode): at 2x the features hold (frame cosine p1
# 0.9993), at 1.5x they do not (0.9988), and without a limit the worst files are small ones.
FAST_MIN_DOWNSCALE = 2.0


@dataclass(frozen=True)
class QualityPreset:
    """What a decode quality changes: FFmpeg decoder options and the swscale interpolation,
    for sources whose shortest side is at least `min_downscale` x the model's image size S
    (smaller sources are decoded as "exact")."""

    codec_options: tuple[tuple[str, str], ...]
    interpolation: str
    min_downscale: float = 0.0

    def applies(self, width: int, height: int, image_size: int) -> bool:
        """Whether this preset changes the decode of a width x height source scaled to S."""
        return min(width, height) >= self.min_downscale * image_size


QUALITY_PRESETS = {
    QUALITY_EXACT: QualityPreset((), "BICUBIC"),
    QUALITY_FAST: QualityPreset((("skip_loop_filter", "all"),), "BILINEAR", FAST_MIN_DOWNSCALE),
}


class DecodeError(Exception):
    """A video could not be decoded; the message names the file and says why, `cause` is one of
    eercf_core.video.error_causes.CAUSES."""

    def __init__(self, message: str, cause: str = error_causes.CORRUPT_BITSTREAM):
        super().__init__(message)
        self.cause = cause


@dataclass
class DecodedVideo:
    """Sampled, resized frames of one video and the decode facts the shard records.

    frames: uint8 [T, S, S, 3] RGB (zero frames in masked slots); mask: bool [T].
    frame_indices / frame_times: the sampled source frames (valid slots only), times in seconds
    from the stream start. With seeking (pyav), indices are estimated as round(time * fps).
    """

    frames: np.ndarray
    mask: np.ndarray
    frame_indices: list[int]
    frame_times: list[float]
    frames_total: int | None  # frames the container reports (None when it does not say)
    frames_decoded: int  # frames the decoder produced to get the samples
    fps: float | None
    duration: float | None  # seconds
    width: int  # source display size (after rotation)
    height: int
    decode_seconds: float
    decoder: str
    rotation: int = 0
    container_duration: float | None = None  # seconds the container declares (None: unknown)
    quality: str = DEFAULT_QUALITY  # the DecodeOptions.quality that produced the frames

    def facts(self) -> dict[str, Any]:
        """The decode-fact columns of a shard row (schemas/video_features.py)."""
        return {
            "frames_total": self.frames_total, "frames_decoded": self.frames_decoded,
            "frame_indices": list(self.frame_indices), "frame_times": list(self.frame_times),
            "fps": self.fps, "duration": self.duration, "width": self.width,
            "height": self.height, "decode_seconds": self.decode_seconds,
            "container_duration": self.container_duration, "warning": self.warning,
            "decode_quality": self.quality,
        }

    @property
    def warning(self) -> str | None:
        """"partly decoded: ..." when much less than the declared duration could be read."""
        return error_causes.partial_decode_warning(self.duration, self.container_duration)


@dataclass(frozen=True)
class DecodeOptions:
    """How to decode. num_frames = T, image_size = S (the model's input size)."""

    num_frames: int = NUM_FRAMES
    image_size: int = 224
    backend: str = "pyav"
    quality: str = DEFAULT_QUALITY  # "exact" | "fast" (module docstring)
    sample_fps: float = SAMPLE_FPS
    max_offset: float = DEFAULT_MAX_OFFSET
    seek_gap: float = DEFAULT_SEEK_GAP
    # decoder threads per video: processes give the parallelism; measured (bench/bench_decode.py)
    # extra threads cost ~15 % more CPU per video on a busy 2-core machine
    threads: int = 1
    # skip non-reference frames more than this many seconds (and at least SKIP_MIN_FRAMES frame
    # intervals) before a wanted frame; < 0: never. The margin guards containers whose packet
    # timestamps are not presentation times (AVI with packed B-frames is off by one frame).
    skip_window: float = 0.1
    # extra FFmpeg decoder options for every frame, on top of the quality preset's; they may
    # change the decoded pixels, so only the bench uses them to measure speed against drift
    codec_options: tuple[tuple[str, str], ...] = ()
    max_pixels: int = MAX_PIXELS
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ValueError(f"unknown decoder backend {self.backend!r}; choose from {BACKENDS}")
        if self.quality not in QUALITIES:
            raise ValueError(f"unknown decode quality {self.quality!r}; choose from {QUALITIES}")
        if self.num_frames < 1 or self.image_size < 1 or self.sample_fps <= 0:
            raise ValueError(f"bad decode options {self}")


def open_source(uri: str) -> tuple[Any, Any]:
    """A path or an open binary file object for `uri` (fsspec for non-local URLs)."""
    local = paths.local_path(uri)
    if local is not None:
        return local, None
    handle = paths.open_file(uri, "rb").open()
    return handle, handle


def check_file(uri: str) -> None:
    """DecodeError before opening a local path that cannot be a video (FIFO, empty, missing)."""
    problem = error_causes.check_local_file(uri)
    if problem is not None:
        cause, detail = problem
        raise DecodeError(f"{uri}: {cause} ({detail})", cause)


@dataclass
class OpenedSource:
    """What a decoder reads (`source`: a local path or an open binary file); the decoder sets
    `opened` once its library has opened the container (a later failure is a decode error, an
    earlier one may be a not-a-video; see error_causes.exception_cause)."""

    source: Any
    opened: bool = False


@contextlib.contextmanager
def opened_source(uri: str) -> Iterator[OpenedSource]:
    """The decoders' common frame: refuse a local file that cannot be a video (`check_file`),
    open the source, turn any library exception into a DecodeError naming the file and its
    cause, and close what was opened."""
    check_file(uri)
    source, handle = open_source(uri)
    state = OpenedSource(source)
    try:
        yield state
    except DecodeError:
        raise
    except Exception as exc:  # av.error.*, decord.DECORDError and friends
        raise DecodeError(f"{uri}: {describe_exception(exc)}",
                          error_causes.exception_cause(exc, state.opened, uri)) from exc
    finally:
        if handle is not None:
            handle.close()


def describe_exception(exc: BaseException) -> str:
    """A one-line, human-readable reason from a decoder exception."""
    text = " ".join(str(exc).split())
    if len(text) > 300:
        text = text[:300] + "..."
    name = type(exc).__name__
    hints = {
        "InvalidDataError": "invalid or corrupt video data (truncated file or broken bitstream?)",
        "FileNotFoundError": "file not found",
        "PermissionError": "permission denied",
    }
    if name == "MemoryError" and type(exc).__module__.startswith("av"):
        hints[name] = "FFmpeg could not allocate the buffers the data asks for (corrupt sizes?)"
    hint = hints.get(name)
    return f"{hint}: {name}: {text}" if hint else f"{name}: {text}"
