"""Synthetic data shared by the index/query/evaluate tests: normalised random features and
shards."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from eercf_core.features import VideoFeatures
from schemas import FeatureDims

DIMS = FeatureDims(num_frames=4, num_patches=3, embed_dim=16)


def _normalised(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    x = rng.standard_normal(shape).astype(np.float32)
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float16)


def random_features(num_videos: int, dims: FeatureDims = DIMS, seed: int = 0,
                    padded: bool = True) -> dict[str, np.ndarray]:
    """float16 features (bool mask) with the shard layout; some videos have padded frames."""
    rng = np.random.default_rng(seed)
    t, p, d = dims.num_frames, dims.num_patches, dims.embed_dim
    mask = np.ones((num_videos, t), dtype=bool)
    if padded:
        mask[::3, t - 1:] = False
    return {"coarse": _normalised(rng, (num_videos, d)),
            "frame": _normalised(rng, (num_videos, t, d)),
            "context": _normalised(rng, (num_videos, t, d)),
            "patch": _normalised(rng, (num_videos, t * p, d)),
            "mask": mask}


def as_video_features(features: dict[str, np.ndarray]) -> VideoFeatures:
    return VideoFeatures(**{k: torch.from_numpy(v).float() if k != "mask" else torch.from_numpy(v)
                            for k, v in features.items()})


def write_synthetic_shards(root: Path, num_videos: int, per_shard: int, dims: FeatureDims = DIMS,
                           seed: int = 0, model_id: str = "synthetic", sha: str = "0" * 64,
                           errors: tuple[int, ...] = (), id_prefix: str = "v",
                           decode_quality: str | None = None
                           ) -> tuple[list[str], dict[str, np.ndarray]]:
    """Shards of `num_videos` ok rows (ids v00000..) plus error rows after the given ok indices;
    `decode_quality` is recorded on the ok rows.

    Returns (ok video ids in shard order, their features).
    """
    from eercf_core.shards import write_shard

    features = random_features(num_videos, dims, seed)
    ids = [f"{id_prefix}{i:05d}" for i in range(num_videos)]
    rows = []
    for i, video_id in enumerate(ids):
        rows.append({"video_id": video_id, "uri": f"file:///{video_id}.mp4", "status": "ok",
                     "coarse_feature": features["coarse"][i].reshape(-1),
                     "frame_features": features["frame"][i].reshape(-1),
                     "context_frame_features": features["context"][i].reshape(-1),
                     "patch_features": features["patch"][i].reshape(-1),
                     "frame_mask": features["mask"][i], "decode_quality": decode_quality})
        if i in errors:
            rows.append({"video_id": f"bad{i}", "uri": f"file:///bad{i}.mp4", "status": "error",
                         "error": "decode failed"})
    root.mkdir(parents=True, exist_ok=True)
    for number, begin in enumerate(range(0, len(rows), per_shard)):
        write_shard(str(root / f"part-{number:05d}.parquet"), rows[begin:begin + per_shard], dims,
                    model_id, sha)
    return ids, features
