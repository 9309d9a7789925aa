"""The decord decoder backend (`--decoder decord`, or `auto`'s fallback).

`VideoReader.get_batch` on the official frame indices `int(t*fps)` of the sampled times
(eercf_core.video.sampling), then the same resize and centre crop (PIL bicubic). decord needs a
known duration/frame count and fails on several codecs and tiny frame sizes (see
../shared/videos/robustness/MANIFEST.tsv). It has no quality knobs: its frames are recorded as
"exact" whatever was asked.

Import decord through `import_decord()`, never `import decord`: see its docstring.
"""
from __future__ import annotations

import sys
import time
import types
from typing import Any

import numpy as np

from eercf_core.video import error_causes
from eercf_core.video.decode_common import (
    QUALITY_EXACT,
    DecodedVideo,
    DecodeError,
    DecodeOptions,
    opened_source,
)
from eercf_core.video.sampling import assemble_frames, center_crop, resize_size, sample_times


def import_decord() -> Any:
    """The `decord` module, imported without its CUDA preload.

    On import, decord2 dlopens every shared library under `site-packages/nvidia/*/lib` with
    RTLD_GLOBAL (for its CUDA builds), and that includes NVBLAS, which then takes over the BLAS
    symbols of everything loaded later: a process that imports decord before torch segfaults in
    torch's first CPU matrix multiply (measured: `import decord; import torch` then one
    MultiheadAttention forward, exit 139, wherever a CUDA build of torch brought the nvidia-*
    packages). eercf only decodes on the CPU with decord (`decord.cpu(0)`), so the preload is
    skipped: while decord loads, `nvidia` is a package without a spec, which decord's loader
    treats as "no CUDA runtime installed".
    """
    if "decord" in sys.modules:
        return sys.modules["decord"]
    missing = object()
    saved = sys.modules.get("nvidia", missing)
    stub = types.ModuleType("nvidia")
    stub.__spec__ = None
    sys.modules["nvidia"] = stub
    try:
        import decord
    finally:
        if saved is missing:
            del sys.modules["nvidia"]
        else:
            sys.modules["nvidia"] = saved  # type: ignore[assignment]
    return decord


def decode_decord(uri: str, options: DecodeOptions) -> DecodedVideo:
    """Decode and sample one video with decord; DecodeError naming the file on any failure."""
    decord = import_decord()
    from PIL import Image

    started = time.perf_counter()
    with opened_source(uri) as opened:
        reader = decord.VideoReader(opened.source, ctx=decord.cpu(0), num_threads=1)
        opened.opened = True
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
        frames, mask = assemble_frames(images, options.num_frames, options.image_size)
        return DecodedVideo(
            frames=frames, mask=mask, frame_indices=indices.tolist(),
            frame_times=(indices / fps).round(6).tolist(), frames_total=total,
            frames_decoded=len(indices), fps=fps, duration=duration, width=width, height=height,
            decode_seconds=time.perf_counter() - started, decoder="decord",
            quality=QUALITY_EXACT)  # decord has no quality knobs: full decode whatever was asked
