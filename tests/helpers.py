"""Paths and small helpers shared by tests (test modules import from here, never from conftest)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from eercf_core.files import shards
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


def shard_features(output: Path) -> dict[str, dict[str, np.ndarray]]:
    """video_id -> {column name: float32 array, flat} of the feature columns of every row under
    `output`, read with the shard reader that knows every schema version (fixed-size lists in
    v1-2, fixed-size binary in v3). Error rows hold zeros."""
    from schemas import COLUMN_OF_FEATURE

    out: dict[str, dict[str, np.ndarray]] = {}
    for path in shards.list_shards(str(output)):
        table = shards.read_shard(path)
        dims, _, _ = shards.shard_identity(path)
        arrays = shards.feature_arrays(table, dims)
        for i, video_id in enumerate(table.column("video_id").to_pylist()):
            out[video_id] = {COLUMN_OF_FEATURE[name]: np.asarray(values[i], np.float32).ravel()
                             for name, values in arrays.items() if name != "mask"}
    return out


def run_fresh_python(script: str, timeout: float = 300) -> str:
    """Run `script` in a fresh interpreter from the repository root; its stdout, stripped (the
    test fails with the tail of stderr when it exits non-zero)."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout)
    assert done.returncode == 0, (done.returncode, done.stderr[-2000:])
    return done.stdout.strip()
