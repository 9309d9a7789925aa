"""Frame sampling and early resizing, the decoder-independent part of decoding (method §2.1, §2.2).

Sampling (method §2.1 and §11.10): candidate frames at 1 fps (t = 0, 1, 2, ... s from the
stream start, while t < duration), then `np.linspace(0, n-1, T, dtype=int)` of them when n > T;
when n <= T all n are kept and the remaining slots are zero frames with mask False.

Early resize (method §2.2 steps 1-2): each sampled frame is scaled so its shortest side is the
model's image size S, then centre-cropped to S x S, so the output is small and fixed: uint8
[T, S, S, 3] plus a bool mask [T]. Every backend (pyav_decoder, decord_decoder) samples and
crops through these functions, so they agree on which frames and which pixels.
"""
from __future__ import annotations

import math

import numpy as np

from eercf_core.config import NUM_FRAMES, SAMPLE_FPS


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


def assemble_frames(images: list[np.ndarray], num_frames: int, image_size: int
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Up to T sampled [S, S, 3] images -> frames uint8 [T, S, S, 3] (zero frames after the
    last image) and mask bool [T] (True where a frame was sampled)."""
    t, s = num_frames, image_size
    frames = np.zeros((t, s, s, 3), dtype=np.uint8)
    mask = np.zeros(t, dtype=bool)
    for i, image in enumerate(images[:t]):
        frames[i] = image
        mask[i] = True
    return frames, mask
