"""Video decoding and frame sampling for extraction (method §2.1, §2.2).

Sampling (method §2.1 and §11.10): candidate frames at 1 fps (t = 0, 1, 2, ... s from the
stream start, while t < duration), then `np.linspace(0, n-1, T, dtype=int)` of them when n > T;
when n <= T all n are kept and the remaining slots are zero frames with mask False.

Early resize (method §2.2 steps 1-2): each sampled frame is scaled so its shortest side is the
model's image size S (bicubic, in the decoder's scaler), then centre-cropped to S x S, so the
output is small and fixed: uint8 [T, S, S, 3] plus a bool mask [T]. Display rotation metadata is
applied (phone videos).

Two decoders:
- "pyav" (default): keyframe-aware. For each target time it seeks to the keyframe before the
  target when the target is more than `seek_gap` seconds ahead, then decodes forward and takes
  the frame nearest the target (`max_offset` > 0: the first frame within `max_offset` seconds
  of it; `max_offset` = 0: the frame showing at the target, as the official `int(sec*fps)`).
  Non-reference frames (nothing depends on them) more than `skip_window` before a wanted
  frame are not decoded: about a third fewer frames, same picks and pixels. A seek that a
  timestamp-searching demuxer (MPEG-PS) lands late is redone from further back.
  Only the chosen frames are converted to RGB. Memory stays bounded (a few frames) whatever
  the file's length or resolution. Measured levers and their numbers: bench/bench_decode.py.
- "decord": `VideoReader.get_batch` on the official frame indices `int(t*fps)`, then the same
  resize and crop (PIL bicubic). decord needs a known duration/frame count and fails on several
  codecs and tiny frame sizes (see ../shared/videos/robustness/MANIFEST.tsv).
"auto" tries pyav, then decord if pyav fails.

Decode quality (`DecodeOptions.quality`, recorded in every shard row):
- "exact": the frames as the codec defines them, scaled bicubic: the same bits as before the
  setting existed (tests/test_decode.py compares them with an independent decode).
- "fast" (default): for sources whose shortest side is at least 2x the model's image size S,
  the pyav decoder skips the in-loop deblocking filter (`skip_loop_filter=all`: every frame,
  references included, so small block-edge errors propagate until the next keyframe) and scales
  bilinear instead of bicubic; smaller sources are decoded exactly as "exact". Same sampled
  frames and times, pixels drift by about one grey level on the large sources, which cost the
  most to decode; `python -m bench decode` measures the speed and whether features and
  rankings move (fidelity table). decord has no such knobs: its frames are recorded as "exact".

Measured and left out (numbers in the README, "Decode numbers"): NVDEC through FFmpeg's CUDA
hwaccel. Its frames are the software frames bit for bit (H.264, HEVC, VP9; MPEG-4 Part 2
differs, its IDCT rounding is the decoder's choice), but on an H200 host it decoded the shared
files 4x slower than this software path and used more CPU per video: FFmpeg waits for each
frame, and every file sets up a hardware decoder.

Decoders are created here, inside whichever process calls `decode_video`: call it in a worker
(see eercf_core.video.isolation), never create a decoder before a fork.
"""
from __future__ import annotations

import itertools
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from eercf_core.config import NUM_FRAMES, SAMPLE_FPS
from eercf_core.video import error_causes

if TYPE_CHECKING:
    import av
    from av.container import InputContainer

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


def sample_times(duration: float, num_frames: int = NUM_FRAMES,
                 sample_fps: float = SAMPLE_FPS) -> np.ndarray:
    """Target times (seconds from the stream start) of the sampled frames, at most T of them.

    Candidates are k / sample_fps for k = 0, 1, ... while < duration (at least one: t = 0);
    when there are more than T, `linspace(0, n-1, T, dtype=int)` of them (method §2.1).
    """
    n = max(1, math.ceil(duration * sample_fps - 1e-6)) if duration > 0 else 1
    picks = np.linspace(0, n - 1, num_frames, dtype=int) if n > num_frames else np.arange(n)
    return picks.astype(np.float64) / sample_fps


def resize_size(width: int, height: int, size: int) -> tuple[int, int]:
    """(width, height) with the shortest side = size, aspect kept (torchvision Resize rounding)."""
    if width <= height:
        return size, max(1, int(size * height / width))
    return max(1, int(size * width / height)), size


def center_crop(image: np.ndarray, size: int) -> np.ndarray:
    """Centre crop [H, W, C] to [size, size, C] (torchvision CenterCrop offsets)."""
    h, w = image.shape[:2]
    top, left = round((h - size) / 2.0), round((w - size) / 2.0)
    return image[top:top + size, left:left + size]


def _open_source(uri: str) -> tuple[Any, Any]:
    """A path or an open binary file object for `uri` (fsspec for non-local URLs)."""
    from eercf_core.files import paths

    local = paths.local_path(uri)
    if local is not None:
        return local, None
    handle = paths.open_file(uri, "rb").open()
    return handle, handle


def _assemble(images: list[np.ndarray], options: DecodeOptions) -> tuple[np.ndarray, np.ndarray]:
    t, s = options.num_frames, options.image_size
    frames = np.zeros((t, s, s, 3), dtype=np.uint8)
    mask = np.zeros(t, dtype=bool)
    for i, image in enumerate(images[:t]):
        frames[i] = image
        mask[i] = True
    return frames, mask


# ---------------------------------------------------------------------------------------- PyAV
def _pyav_rgb(frame: av.VideoFrame, size: int, reformatter: av.video.reformatter.VideoReformatter,
              interpolation: str) -> np.ndarray:
    """Chosen av.VideoFrame -> uint8 [S, S, 3]: scale shortest side to S, rotate, centre crop.

    One reformatter per video keeps the swscale context between frames, and one scaling thread
    (the worker processes are the parallelism): same pixels as a fresh context per frame."""
    nw, nh = resize_size(frame.width, frame.height, size)
    image = reformatter.reformat(frame, width=nw, height=nh, format="rgb24",
                                 interpolation=interpolation, threads=1).to_ndarray()
    quarter_turns = round((getattr(frame, "rotation", 0) or 0) / 90) % 4
    if quarter_turns:
        image = np.rot90(image, quarter_turns)
    return np.ascontiguousarray(center_crop(image, size))


@dataclass
class _PacketIndex:
    """Presentation timestamps of a stream's packets (stream time base), from demuxing only."""

    pts: np.ndarray  # sorted, int64
    keyframes: np.ndarray  # sorted pts of keyframe packets
    end: int  # pts just after the last frame

    @property
    def start(self) -> int:
        return int(self.pts[0])


def _index_packets(container: InputContainer, stream: av.VideoStream, uri: str) -> _PacketIndex:
    """Demux (no decoding) the video stream to learn every frame's pts and the keyframes.

    This reads the file once but costs little next to decoding; it makes the plan exact on files
    whose header lies about (or lacks) the duration, and tells where seeking pays off.
    """
    pts, keys, durations = [], [], []
    for packet in container.demux(stream):
        if packet.pts is None or packet.size == 0:
            continue
        pts.append(packet.pts)
        durations.append(packet.duration or 0)
        if packet.is_keyframe:
            keys.append(packet.pts)
    if not pts:
        raise DecodeError(f"{uri}: no video packets with timestamps (empty or corrupt stream)")
    order = np.argsort(pts, kind="stable")
    sorted_pts = np.asarray(pts, dtype=np.int64)[order]
    last_duration = int(np.asarray(durations)[order][-1])
    if last_duration <= 0 and len(sorted_pts) > 1:
        last_duration = int(np.median(np.diff(sorted_pts))) or 1
    keyframes = np.unique(np.asarray(keys or [sorted_pts[0]], dtype=np.int64))
    return _PacketIndex(sorted_pts, keyframes, int(sorted_pts[-1]) + max(last_duration, 1))


def _plan_pts(index: _PacketIndex, time_base: float, options: DecodeOptions) -> list[int]:
    """The pts of the frame to take for each sampled target time (method §2.1).

    The frame showing at the target (largest pts <= target, as the official int(sec*fps)), or
    the keyframe before it when that is within `max_offset` seconds (no decoding past it).
    """
    duration = (index.end - index.start) * time_base
    targets = index.start + np.round(
        sample_times(duration, options.num_frames, options.sample_fps) / time_base).astype(np.int64)
    wanted = []
    for target in targets:
        exact = index.pts[max(0, np.searchsorted(index.pts, target, side="right") - 1)]
        key = index.keyframes[max(0, np.searchsorted(index.keyframes, exact, side="right") - 1)]
        take_key = options.max_offset > 0 and (target - key) * time_base <= options.max_offset
        wanted.append(int(key if take_key else exact))
    return wanted


def _skipping_decode(container: InputContainer, stream: av.VideoStream, state: dict) -> Iterator:
    """Decode the stream from the current position, telling the decoder to skip non-reference
    frames (which nothing else depends on) in packets more than `state["window"]` before
    `state["target"]`: frames near the target are all decoded, so picks stay exact."""
    ctx = stream.codec_context
    skipping = False
    for packet in container.demux(stream):
        far = packet.pts is not None and packet.pts < state["target"] - state["window"]
        if far != skipping:
            ctx.skip_frame = "NONREF" if far else "DEFAULT"
            skipping = far
        yield from packet.decode()
    if skipping:
        ctx.skip_frame = "DEFAULT"


SEEK_RETRIES = 4


def _seconds_per_tick(stream: av.VideoStream) -> float:
    """The stream's time base in seconds (checked present when the video is opened)."""
    if not stream.time_base:
        raise DecodeError("video stream has no time base")
    return float(stream.time_base)


def _seek(container: InputContainer, stream: av.VideoStream, index: _PacketIndex, key: int,
          state: dict) -> Iterator:
    """Seek so that decoding starts at keyframe `key` or before it; returns the frame iterator.

    Demuxers without an index (MPEG-PS, some AVI/MKV) seek by searching timestamps and can land
    on the keyframe after the one asked for (MPEG-PS here: 0.48 s, a whole GOP, late). When the
    first frame comes out later than `key`, seek again from further back (1 s, 2 s, 4 s ...)."""
    back = 0
    one_second = max(1, int(1 / _seconds_per_tick(stream)))
    for attempt in range(SEEK_RETRIES + 1):
        container.seek(key - back, stream=stream, backward=True, any_frame=False)
        frames = _skipping_decode(container, stream, state)
        first = next(frames, None)
        if first is None:
            return iter(())
        if first.pts is None or first.pts <= key or key - back < index.start:
            return itertools.chain([first], frames)
        back = one_second << attempt
    return itertools.chain([first], frames)  # still late: the caller takes the nearest frame


def _decode_planned(container: InputContainer, stream: av.VideoStream, index: _PacketIndex,
                    wanted: list[int], uri: str,
                    skip_window: int | None = None) -> tuple[list[av.VideoFrame], int]:
    """Decode the frames whose pts are in `wanted` (increasing; repeats allowed), seeking to
    the keyframe before a wanted frame when that keyframe lies ahead of the decoder.
    Returns (frames in `wanted` order, frames decoded)."""
    chosen: dict[int, Any] = {}
    decoded = 0
    position = None  # pts of the last decoded frame
    frames: Iterator | None = None
    state = {"target": 0, "window": skip_window or 0}
    for target in sorted(set(wanted)):
        state["target"] = target if skip_window is not None else -2**62
        key = int(index.keyframes[max(0, np.searchsorted(index.keyframes, target, "right") - 1)])
        if frames is None or position is None or key > position:
            frames = _seek(container, stream, index, key, state)
        best = None
        for frame in frames:
            decoded += 1
            pts = frame.pts if frame.pts is not None else position
            position = pts
            if pts is None:
                continue
            if pts <= target:
                best = frame
            if pts >= target:
                if best is None:
                    best = frame  # the seek landed after the target (inexact index)
                break
        if best is None:
            raise DecodeError(f"{uri}: stream ended before the frame at pts {target} "
                              f"({target * _seconds_per_tick(stream):.3f} s)")
        chosen[target] = best
    return [chosen[t] for t in wanted], decoded


def _decode_pyav(uri: str, options: DecodeOptions) -> DecodedVideo:
    import av
    from av.video.reformatter import VideoReformatter

    started = time.perf_counter()
    _check_file(uri)
    source, handle = _open_source(uri)
    opened = False
    try:
        with av.open(source, mode="r") as container:
            opened = True
            if not container.streams.video:
                raise DecodeError(f"{uri}: no video stream (streams: "
                                  f"{[s.type for s in container.streams]})",
                                  error_causes.NOT_A_VIDEO)
            stream = container.streams.best("video") or container.streams.video[0]
            ctx = stream.codec_context
            if ctx.width * ctx.height > options.max_pixels:
                raise DecodeError(f"{uri}: frame size {ctx.width}x{ctx.height} exceeds the "
                                  f"limit of {options.max_pixels} pixels (corrupt header?)")
            if not stream.time_base:
                raise DecodeError(f"{uri}: video stream has no time base")
            time_base = float(stream.time_base)
            index = _index_packets(container, stream, uri)
            # FFmpeg's default (0 = one slice thread per core) would run a thread per core in
            # every decoder process: on 16 cores, 16 processes x 16 threads
            stream.thread_count = options.threads
            if options.threads > 1:
                stream.thread_type = "AUTO"
            preset = QUALITY_PRESETS[options.quality]
            if not preset.applies(ctx.width, ctx.height, options.image_size):
                preset = QUALITY_PRESETS[QUALITY_EXACT]
            codec_options = dict(preset.codec_options + options.codec_options)
            if codec_options:
                ctx.options = codec_options
            wanted = _plan_pts(index, time_base, options)
            window = None
            if options.skip_window >= 0:
                step = int(np.median(np.diff(index.pts))) if len(index.pts) > 1 else 0
                window = max(int(options.skip_window / time_base), SKIP_MIN_FRAMES * step)
            chosen, decoded = _decode_planned(container, stream, index, wanted, uri, window)
            reformatter = VideoReformatter()
            images = [_pyav_rgb(frame, options.image_size, reformatter, preset.interpolation)
                      for frame in chosen]
            rotation = round((getattr(chosen[0], "rotation", 0) or 0) / 90) % 4 * 90
            width, height = chosen[0].width, chosen[0].height
            if rotation in (90, 270):
                width, height = height, width
            rate = stream.average_rate or stream.guessed_rate
            fps = float(rate) if rate else None
            frame_pts = np.asarray([f.pts if f.pts is not None else t
                                    for f, t in zip(chosen, wanted)], dtype=np.int64)
            frames, mask = _assemble(images, options)
            return DecodedVideo(
                frames=frames, mask=mask,
                frame_indices=np.searchsorted(index.pts, frame_pts).tolist(),
                frame_times=((frame_pts - index.start) * time_base).round(6).tolist(),
                frames_total=len(index.pts), frames_decoded=decoded, fps=fps,
                duration=(index.end - index.start) * time_base, width=width, height=height,
                decode_seconds=time.perf_counter() - started, decoder="pyav", rotation=rotation,
                quality=options.quality,
                container_duration=_declared_duration(container, stream))
    except DecodeError:
        raise
    except Exception as exc:  # av.error.* and friends: name the file and the reason
        raise DecodeError(f"{uri}: {_describe(exc)}",
                          error_causes.exception_cause(exc, opened, uri)) from exc
    finally:
        if handle is not None:
            handle.close()


# -------------------------------------------------------------------------------------- decord
def _decode_decord(uri: str, options: DecodeOptions) -> DecodedVideo:
    import decord
    from PIL import Image

    started = time.perf_counter()
    _check_file(uri)
    source, handle = _open_source(uri)
    reader = None
    try:
        reader = decord.VideoReader(source, ctx=decord.cpu(0), num_threads=1)
        total, fps = len(reader), float(reader.get_avg_fps())
        if total <= 0 or fps <= 0:
            raise DecodeError(f"{uri}: decord reports {total} frames at {fps} fps",
                              error_causes.DECODE_ERROR)
        duration = total / fps
        targets = sample_times(duration, options.num_frames, options.sample_fps)
        indices = np.minimum((targets * fps).astype(np.int64), total - 1)
        batch = reader.get_batch(indices.tolist()).asnumpy()
        if batch.ndim != 4 or batch.shape[-1] != 3:
            raise DecodeError(f"{uri}: decord returned frames of shape {batch.shape[1:]}, "
                              "not [H, W, 3] (decord bug on tiny or odd frame sizes)",
                              error_causes.DECODE_ERROR)
        height, width = batch.shape[1:3]
        size = options.image_size
        images = []
        for image in batch:
            nw, nh = resize_size(width, height, size)
            resized = np.asarray(Image.fromarray(image).resize((nw, nh), Image.Resampling.BICUBIC))
            images.append(center_crop(resized, size))
        frames, mask = _assemble(images, options)
        return DecodedVideo(
            frames=frames, mask=mask, frame_indices=indices.tolist(),
            frame_times=(indices / fps).round(6).tolist(), frames_total=total,
            frames_decoded=len(indices), fps=fps, duration=duration, width=width, height=height,
            decode_seconds=time.perf_counter() - started, decoder="decord",
            quality=QUALITY_EXACT)  # decord has no quality knobs: full decode whatever was asked
    except DecodeError:
        raise
    except Exception as exc:  # decord.DECORDError and friends
        raise DecodeError(f"{uri}: {_describe(exc)}",
                          error_causes.exception_cause(exc, reader is not None, uri)) from exc
    finally:
        if handle is not None:
            handle.close()


def _check_file(uri: str) -> None:
    """DecodeError before opening a local path that cannot be a video (FIFO, empty, missing)."""
    problem = error_causes.check_local_file(uri)
    if problem is not None:
        cause, detail = problem
        raise DecodeError(f"{uri}: {cause} ({detail})", cause)


def _declared_duration(container: Any, stream: Any) -> float | None:
    """Seconds the container header declares for the video (the stream's, else the file's)."""
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    if container.duration:
        return container.duration / 1_000_000  # AV_TIME_BASE
    return None


def _describe(exc: BaseException) -> str:
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


def decode_video(uri: str, options: DecodeOptions | None = None) -> DecodedVideo:
    """Decode and sample one video (local path or fsspec URL) to uint8 [T, S, S, 3] + mask.

    Raises DecodeError naming the file and the reason on any failure.
    """
    options = options or DecodeOptions()
    if options.backend == "pyav":
        return _decode_pyav(uri, options)
    if options.backend == "decord":
        return _decode_decord(uri, options)
    try:
        return _decode_pyav(uri, options)
    except DecodeError as first:
        try:
            return _decode_decord(uri, options)
        except DecodeError:
            raise first from None


def decode_job(job: tuple[str, DecodeOptions]) -> DecodedVideo:
    """`decode_video(uri, options)` for a `(uri, options)` pair: the unit of work that
    eercf_core.video.isolation.IsolatedPool runs in a worker process."""
    uri, options = job
    return decode_video(uri, options)
