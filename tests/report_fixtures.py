"""A small indexed corpus for the report/search tests: tiny-model features of coloured videos,
shards with previews (schema v2, or v1 without), an index, queries, a ranked TSV, ground truth."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

import eercf_core as ec
from eercf_core.files.shards import write_shard
from eercf_core.video.previews import encode_previews
from pipelines.commands import build_index, query

CAPTIONS = ["a red car drives", "a dog runs on grass", "people dancing", "a cat sleeps",
            "waves at the beach", "a man cooks pasta", "kids play football"]
NUM_VIDEOS = 16


@dataclass
class Corpus:
    root: Path
    checkpoint: str
    index: Path
    queries: Path
    ranked: Path
    truth: Path
    truth_of: dict[str, str]  # query_id -> its ground-truth video
    frames: np.ndarray  # uint8 [N, T, S, S, 3]
    mask: np.ndarray  # bool [N, T]


def video_frames(model, num_videos: int = NUM_VIDEOS, seed: int = 0
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Frames [N, T, S, S, 3] (each frame a flat colour plus noise) and masks [N, T]."""
    rng = np.random.default_rng(seed)
    t, s = model.num_frames, model.image_size
    colours = rng.integers(0, 255, (num_videos, t, 1, 1, 3))
    noise = rng.integers(-20, 20, (num_videos, t, s, s, 3))
    frames = np.clip(colours + noise, 0, 255).astype(np.uint8)
    mask = np.ones((num_videos, t), dtype=bool)
    mask[::5, -4:] = False  # some videos are short: padded slots
    frames[~mask] = 0
    return frames, mask


def shard_rows(model, frames: np.ndarray, mask: np.ndarray, previews: bool = True) -> list[dict]:
    video = model.encode_video(frames, mask)
    rows = []
    for i in range(len(frames)):
        row = {"video_id": f"vid{i:02d}", "uri": f"mem://{i}", "status": "ok",
               "coarse_feature": video.coarse[i].numpy().astype(np.float16),
               "frame_features": video.frame[i].numpy().astype(np.float16).ravel(),
               "context_frame_features": video.context[i].numpy().astype(np.float16).ravel(),
               "patch_features": video.patch[i].numpy().astype(np.float16).ravel(),
               "frame_mask": mask[i]}
        if previews:
            row.update(encode_previews(frames[i], mask[i]))
        rows.append(row)
    rows.insert(3, {"video_id": "broken", "uri": "mem://x", "status": "error", "error": "bad"})
    return rows


def make_corpus(root: Path, version: int = 2) -> Corpus:
    """Build everything under `root`; `version` 1 writes old shards (no preview columns)."""
    model = ec.create_model("eercf-tiny", seed=0)
    checkpoint = str(root / "model.pt")
    root.mkdir(parents=True, exist_ok=True)
    ec.save_model(model, checkpoint)
    frames, mask = video_frames(model)
    rows = shard_rows(model, frames, mask, previews=version >= 2)
    for n, begin in enumerate(range(0, len(rows), 6)):
        write_shard(str(root / "shards" / f"s{n}.parquet"), rows[begin:begin + 6], model.dims,
                    model.identity.model_id, model.identity.checkpoint_sha256, version=version)
    build_index.run(["--shards", str(root / "shards"), "--output", str(root / "index")])
    queries = root / "queries.tsv"
    queries.write_text("query_id\ttext\n" + "".join(f"q{i}\t{c}\n" for i, c in enumerate(CAPTIONS)))
    ranked = root / "ranked.tsv"
    query.run(["--index", str(root / "index"), "--queries", str(queries), "--output", str(ranked),
               "--model", checkpoint, "--recall-k", "5", "--top-n", "0"])
    truth_of = {f"q{i}": f"vid{(3 * i) % NUM_VIDEOS:02d}" for i in range(len(CAPTIONS))}
    truth = root / "gt.tsv"
    truth.write_text("".join(f"{q}\t{v}\n" for q, v in truth_of.items()))
    return Corpus(root, checkpoint, root / "index", queries, ranked, truth, truth_of, frames, mask)
