"""Write uint8 RGB frames to a real encoded video file with PyAV (no system ffmpeg needed).

Used by the synthetic corpus generator and by tests that need videos of known content.
"""
from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np

CODECS = {".mp4": "libx264", ".mkv": "libx264", ".webm": "libvpx-vp9", ".avi": "mpeg4"}


def write_video(
    path: str | Path,
    frames: np.ndarray,
    fps: float = 8.0,
    codec: str | None = None,
    crf: int = 18,
) -> Path:
    """Encode `frames` (uint8 [N,H,W,3] RGB, H and W even) to `path` at `fps` frames/s.

    The codec defaults from the file suffix (.mp4/.mkv: H.264, .webm: VP9, .avi: MPEG-4 part 2).
    Returns the path. Raises ValueError on a bad frame array or an unknown suffix.
    """
    import av  # imported here: only writers need PyAV

    path = Path(path)
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"{path}: frames must be uint8 [N,H,W,3], got {frames.dtype} "
                         f"{frames.shape}")
    n, height, width, _ = frames.shape
    if n == 0 or height % 2 or width % 2:
        raise ValueError(f"{path}: need >= 1 frame with even height and width, got {frames.shape}")
    codec = codec or CODECS.get(path.suffix.lower())
    if codec is None:
        raise ValueError(f"{path}: unknown video suffix {path.suffix!r}; known: {sorted(CODECS)}")
    path.parent.mkdir(parents=True, exist_ok=True)
    rate = Fraction(fps).limit_denominator(1000)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(codec, rate=rate)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        if codec in ("libx264", "libvpx-vp9"):
            stream.options = ({"crf": str(crf)} if codec == "libx264"
                              else {"crf": str(crf), "b:v": "0"})
        for image in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path
