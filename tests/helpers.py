"""Paths and small helpers shared by tests (test modules import from here, never from conftest)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from eercf_core.video.writer import write_video

ROOT = Path(__file__).resolve().parents[1]
SHARED_VIDEOS = ROOT.parent / "shared" / "videos"


def make_videos(folder: Path, count: int, seconds: float = 3.0, fps: int = 8) -> list[Path]:
    """`count` small synthetic videos (48x64, brightening ramp) in sub0/, sub1/, cycling
    .mp4/.webm/.avi; returns their paths."""
    rng = np.random.default_rng(0)
    paths = []
    for i in range(count):
        n = int(seconds * fps)
        base = rng.integers(0, 255, size=(1, 48, 64, 3))
        frames = np.clip(base + np.arange(n)[:, None, None, None] * 3, 0, 255).astype(np.uint8)
        suffix = (".mp4", ".webm", ".avi")[i % 3]
        paths.append(write_video(folder / f"sub{i % 2}" / f"clip{i}{suffix}", frames, fps=fps))
    return paths
