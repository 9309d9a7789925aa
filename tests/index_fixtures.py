"""Synthetic data shared by the index/query/evaluate tests: normalised random features, shards
and a small index of the tiny model."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from eercf_core.model.features import VideoFeatures
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
                           decode_quality: str | None = None, version: int | None = None
                           ) -> tuple[list[str], dict[str, np.ndarray]]:
    """Shards of `num_videos` ok rows (ids v00000..) plus error rows after the given ok indices;
    `decode_quality` is recorded on the ok rows. Shards of the latest schema are committed
    (shard + commit record, as extract writes them); `version` (e.g. 2) writes shards of that
    older schema without records, as extract wrote them before commit records.

    Returns (ok video ids in shard order, their features).
    """
    from eercf_core.files.commits import commit_shard
    from eercf_core.files.shards import write_shard

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
        path, chunk = str(root / f"part-{number:05d}.parquet"), rows[begin:begin + per_shard]
        if version is None:
            commit_shard(path, chunk, dims, model_id, sha)
        else:
            write_shard(path, chunk, dims, model_id, sha, version=version)
    return ids, features


CAPTIONS = ["a red car drives", "a dog runs on grass", "people dancing", "a cat sleeps",
            "waves at the beach", "a man cooks pasta", "kids play football"]


def tiny_index_corpus(root: Path) -> dict:
    """Under `root`: a tiny model checkpoint, shards of 30 videos (+1 error row) it encoded, the
    built index and a query file of CAPTIONS. Returns the paths, the model, the ok ids and
    their features."""
    import eercf_core as ec
    from eercf_core.files.shards import features_from_table, list_shards, read_shard, write_shard
    from pipelines.commands import build_index

    model = ec.create_model("eercf-tiny", seed=0)
    checkpoint = str(root / "model.pt")
    ec.save_model(model, checkpoint)
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, (30, model.num_frames, 64, 64, 3), dtype=np.uint8)
    mask = np.ones((30, model.num_frames), dtype=bool)
    mask[::4, -3:] = False
    video = model.encode_video(frames, mask)
    rows = [{"video_id": f"vid{i:02d}", "uri": f"mem://{i}", "status": "ok",
             "coarse_feature": video.coarse[i].numpy().astype(np.float16),
             "frame_features": video.frame[i].numpy().astype(np.float16).ravel(),
             "context_frame_features": video.context[i].numpy().astype(np.float16).ravel(),
             "patch_features": video.patch[i].numpy().astype(np.float16).ravel(),
             "frame_mask": mask[i]} for i in range(30)]
    rows.insert(5, {"video_id": "broken", "uri": "mem://x", "status": "error", "error": "bad"})
    ident = model.identity
    for n, begin in enumerate(range(0, len(rows), 12)):
        write_shard(str(root / "shards" / f"s{n}.parquet"), rows[begin:begin + 12], model.dims,
                    ident.model_id, ident.checkpoint_sha256)
    build_index.run(["--shards", str(root / "shards"), "--output", str(root / "index")])
    queries = root / "queries.tsv"
    queries.write_text("query_id\ttext\n" + "".join(f"q{i}\t{c}\n" for i, c in enumerate(CAPTIONS)))
    ids, feats = [], []
    for shard in list_shards(str(root / "shards")):
        i, f = features_from_table(read_shard(shard))
        ids += i
        feats.append(f)
    return {"root": root, "checkpoint": checkpoint, "queries": queries, "model": model,
            "ids": ids, "video": ec.VideoFeatures.cat(feats)}
