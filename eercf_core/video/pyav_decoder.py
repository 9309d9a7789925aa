"""The default decoder backend: PyAV (FFmpeg), keyframe-aware.

For each target time (eercf_core.video.sampling) it seeks to the keyframe before the target
when the target is more than `seek_gap` seconds ahead, then decodes forward and takes the frame
nearest the target (`max_offset` > 0: the first frame within `max_offset` seconds of it;
`max_offset` = 0: the frame showing at the target, as the official `int(sec*fps)`).
Non-reference frames (nothing depends on them) more than `skip_window` before a wanted frame are
not decoded: about a third fewer frames, same picks and pixels. A seek that a
timestamp-searching demuxer (MPEG-PS) lands late is redone from further back. Only the chosen
frames are converted to RGB, scaled in the decoder's scaler (bicubic, or bilinear under the
"fast" quality preset), rotation metadata applied. Memory stays bounded (a few frames) whatever
the file's length or resolution. Measured levers and their numbers: bench/bench_decode.py.
"""
from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from eercf_core.video import error_causes
from eercf_core.video.decode_common import (
    QUALITY_EXACT,
    QUALITY_PRESETS,
    SKIP_MIN_FRAMES,
    DecodedVideo,
    DecodeError,
    DecodeOptions,
    opened_source,
)
from eercf_core.video.sampling import assemble_frames, center_crop, resize_size, sample_times

if TYPE_CHECKING:
    import av
    from av.container import InputContainer


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


def index_packets(container: InputContainer, stream: av.VideoStream, uri: str) -> _PacketIndex:
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


def decode_pyav(uri: str, options: DecodeOptions) -> DecodedVideo:
    """Decode and sample one video with PyAV; DecodeError naming the file on any failure."""
    import av
    from av.video.reformatter import VideoReformatter

    started = time.perf_counter()
    with opened_source(uri) as opened, av.open(opened.source, mode="r") as container:
        opened.opened = True
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
        index = index_packets(container, stream, uri)
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
        frames, mask = assemble_frames(images, options.num_frames, options.image_size)
        return DecodedVideo(
            frames=frames, mask=mask,
            frame_indices=np.searchsorted(index.pts, frame_pts).tolist(),
            frame_times=((frame_pts - index.start) * time_base).round(6).tolist(),
            frames_total=len(index.pts), frames_decoded=decoded, fps=fps,
            duration=(index.end - index.start) * time_base, width=width, height=height,
            decode_seconds=time.perf_counter() - started, decoder="pyav", rotation=rotation,
            quality=options.quality,
            container_duration=_declared_duration(container, stream))


def _declared_duration(container: Any, stream: Any) -> float | None:
    """Seconds the container header declares for the video (the stream's, else the file's)."""
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    if container.duration:
        return container.duration / 1_000_000  # AV_TIME_BASE
    return None
