"""Build an index directory: feature shards -> FAISS recall index + fine-feature store + manifest.

Reads Parquet shards (fsspec URLs: directories, shard files or globs), skips and counts error rows,
refuses shards from different models, and writes an index directory (see
`eercf_core.index.directory`).
The directory is built under a hidden temp name beside the output and renamed when complete, so
an interrupted build leaves no half-written index at the output path.
"""
from __future__ import annotations

import collections
import logging
import time
from pathlib import Path

import fsspec
import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq

from eercf_core.atomic import atomic_directory, write_json
from eercf_core.config import RECALL_K
from eercf_core.index import recall
from eercf_core.index.directory import (
    IDS_FILE,
    MANIFEST,
    RECALL_FILE,
    STORE_DIR,
    make_manifest,
)
from eercf_core.index.store import FineStoreWriter
from eercf_core.io_formats import local_path
from eercf_core.previews import STORE_DIR as PREVIEW_DIR
from eercf_core.previews import write_preview_store
from eercf_core.shards import (
    SHARD_SUFFIX,
    decode_qualities,
    feature_arrays,
    list_shards,
    read_shard,
    shard_identity,
)
from schemas import COLUMN_OF_FEATURE, STATUS_OK, FeatureDims

log = logging.getLogger(__name__)


def resolve_shards(inputs: list[str]) -> list[str]:
    """Shard URLs from directories (completed shards in them), shard files or glob patterns."""
    shards: list[str] = []
    for item in inputs:
        fs, path = fsspec.core.url_to_fs(item)
        protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
        prefix = "" if protocol in ("file", "local") else f"{protocol}://"
        if any(ch in item for ch in "*?["):
            shards += [prefix + p for p in sorted(fs.glob(path)) if p.endswith(SHARD_SUFFIX)]
        elif fs.isdir(path):
            shards += list_shards(item)
        elif fs.isfile(path):
            shards.append(item)
        else:
            raise ValueError(f"{item}: no such shard file or directory")
    if not shards:
        raise ValueError(f"no feature shards found in {inputs}")
    return shards


def check_identity(shards: list[str]) -> tuple[FeatureDims, str, str]:
    """(dims, model_id, sha256) shared by every shard; ValueError naming two that differ."""
    first = shard_identity(shards[0])
    for shard in shards[1:]:
        other = shard_identity(shard)
        if other != first:
            raise ValueError(
                f"shards from different models or dims: {shards[0]} has model {first[1]!r} "
                f"(sha256 {first[2][:12]}…, dims {first[0]}), {shard} has model {other[1]!r} "
                f"(sha256 {other[2][:12]}…, dims {other[0]}); index one model's shards at a time")
    return first


def _scan(shards: list[str]) -> tuple[list[str], int, dict[str, int]]:
    """Pass 1 (ids, status, decode quality): ok video ids in shard order, number of error rows,
    ok videos per decode quality (an index built from mixed settings says so)."""
    ids: list[str] = []
    where: dict[str, str] = {}
    errors = 0
    qualities: collections.Counter = collections.Counter()
    for shard in shards:
        table = read_shard(shard, columns=["video_id", "status", "decode_quality"])
        ok = pc.equal(table.column("status"), STATUS_OK).to_numpy(zero_copy_only=False)
        errors += int((~ok).sum())
        for video_id, is_ok, quality in zip(table.column("video_id").to_pylist(), ok,
                                            decode_qualities(table)):
            if not is_ok:
                continue
            qualities[str(quality)] += 1
            if video_id in where:
                raise ValueError(f"duplicate video_id {video_id!r} in {where[video_id]} and "
                                 f"{shard}")
            where[video_id] = shard
            ids.append(video_id)
    return ids, errors, dict(sorted(qualities.items()))


def _fill_store(shards: list[str], writer: FineStoreWriter, batch_rows: int) -> None:
    """Pass 2: stream the ok rows' features into the store, `batch_rows` rows at a time."""
    columns = ["status", *COLUMN_OF_FEATURE.values()]
    start = time.perf_counter()
    for number, shard in enumerate(shards, start=1):
        with fsspec.open(shard, "rb") as handle:
            batches = pq.ParquetFile(handle).iter_batches(batch_size=batch_rows, columns=columns)
            for batch in batches:
                batch = batch.filter(pc.equal(batch.column("status"), STATUS_OK))
                if batch.num_rows == 0:
                    continue
                writer.append(**feature_arrays(batch, writer.dims))
        elapsed = time.perf_counter() - start
        log.info("store: %d/%d shards, %d/%d videos, %.0f videos/s", number, len(shards),
                 writer.written, writer.num_videos, writer.written / max(elapsed, 1e-9))


def build_index(inputs: list[str], output: str, factory: str | None = None,
                nprobe: int | None = None, recall_sample: int = 1000,
                recall_check_k: int = RECALL_K, batch_rows: int = 256, overwrite: bool = False,
                seed: int = 0) -> dict:
    """Build an index directory at `output` from the shards in `inputs`; returns the manifest."""
    started = time.perf_counter()
    out = Path(local_path(output))
    if out.exists() and not overwrite:  # checked again on rename; fail before the slow part
        raise ValueError(f"{out}: already exists (pass --overwrite to replace it)")
    shards = resolve_shards(inputs)
    dims, model_id, sha = check_identity(shards)
    ids, error_rows, qualities = _scan(shards)
    if not ids:
        raise ValueError(f"no ok rows in {len(shards)} shard(s) ({error_rows} error rows)")
    log.info("%d shards: %d ok videos, %d error rows skipped; model %s, dims %s",
             len(shards), len(ids), error_rows, model_id, dims)
    if len(qualities) > 1:
        log.warning("shards mix decode qualities (videos per quality: %s)", qualities)

    with atomic_directory(out, overwrite) as temp:
        writer = FineStoreWriter(temp / STORE_DIR, len(ids), dims)
        _fill_store(shards, writer, batch_rows)
        writer.close()
        previews = write_preview_store(shards, ids, temp / PREVIEW_DIR)
        store_seconds = time.perf_counter() - started

        coarse = np.load(temp / STORE_DIR / "coarse.npy", mmap_mode="r")[:len(ids)]
        index_start = time.perf_counter()
        factory = factory or recall.default_factory(len(ids))
        index = recall.build(coarse, factory, nprobe, seed=seed)
        index_seconds = time.perf_counter() - index_start
        info = recall.describe(index, factory)
        if not info["exact"]:
            # Sampled corpus vectors stand in for queries (text queries are not known at build
            # time).
            sample = np.random.default_rng(seed).choice(len(ids), min(recall_sample, len(ids)),
                                                        replace=False)
            queries = np.asarray(coarse[np.sort(sample)], dtype=np.float32)
            info["recall_vs_exact"] = {
                "k": recall_check_k, "sample_queries": int(sample.size),
                "queries": "sampled corpus coarse vectors",
                "recall": recall.recall_vs_exact(index, coarse, queries, recall_check_k)}
            log.info("recall@%d vs exact: %.4f", recall_check_k, info["recall_vs_exact"]["recall"])
        recall.save(index, temp / RECALL_FILE)
        write_json(temp / IDS_FILE, ids, indent=None)
        manifest = make_manifest(
            model_id=model_id, checkpoint_sha256=sha, dims=dims, num_videos=len(ids),
            num_error_rows=error_rows, decode_quality=qualities, shards=shards, index_info=info,
            build_seconds={"store": round(store_seconds, 3), "index": round(index_seconds, 3),
                           "total": round(time.perf_counter() - started, 3)})
        manifest["feature_schema_versions_read"] = previews.pop("feature_schema_versions")
        manifest["previews"] = previews
        write_json(temp / MANIFEST, manifest)  # last: its presence marks the directory complete
    return manifest
