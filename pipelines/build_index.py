"""`eercf build-index`: feature shards -> FAISS recall index + fine-feature store + manifest.

Reads Parquet shards (fsspec URLs: directories, shard files or globs), skips and counts error rows,
refuses shards from different models, and writes an index directory (see eercf_core.index_dir).
The directory is built under a hidden temp name beside the output and renamed when complete, so
an interrupted build leaves no half-written index at the output path.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import time
from pathlib import Path

import fsspec
import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq

from eercf_core import recall_index
from eercf_core.fine_store import FineStoreWriter, bytes_per_video
from eercf_core.index_dir import (IDS_FILE, INDEX_SCHEMA_VERSION, MANIFEST, RECALL_FILE,
                                  STORE_DIR)
from eercf_core.errors import UserInputError
from eercf_core.io_formats import local_path
from eercf_core.output_check import check_writable_dir
from eercf_core.shards import SHARD_SUFFIX, list_shards, read_shard, shard_identity
from pipelines.extract_inputs import is_glob
from pipelines.flags import positive_int
from schemas import SCHEMA_VERSION, STATUS_OK

log = logging.getLogger(__name__)


def resolve_shards(inputs: list[str]) -> list[str]:
    """Shard URLs from directories (completed shards in them), shard files or glob patterns
    (an existing path with glob characters is that file or directory)."""
    shards: list[str] = []
    for item in inputs:
        fs, path = fsspec.core.url_to_fs(item)
        protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
        prefix = "" if protocol in ("file", "local") else f"{protocol}://"
        if is_glob(item):
            shards += [prefix + p for p in sorted(fs.glob(path)) if p.endswith(SHARD_SUFFIX)]
        elif fs.isdir(path):
            shards += list_shards(item)
        elif fs.isfile(path):
            shards.append(item)
        else:
            raise UserInputError(f"{item}: no such shard file or directory")
    if not shards:
        raise UserInputError(f"no feature shards found in {inputs}")
    return shards


def check_identity(shards: list[str]):
    """(dims, model_id, sha256) shared by every shard; ValueError naming two that differ."""
    first = shard_identity(shards[0])
    for shard in shards[1:]:
        other = shard_identity(shard)
        if other != first:
            raise UserInputError(
                f"shards from different models or dims: {shards[0]} has model {first[1]!r} "
                f"(sha256 {first[2][:12]}…, dims {first[0]}), {shard} has model {other[1]!r} "
                f"(sha256 {other[2][:12]}…, dims {other[0]}); index one model's shards at a time")
    return first


def _scan(shards: list[str]) -> tuple[list[str], int]:
    """Pass 1 (ids and status only): ok video ids in shard order, number of error rows."""
    ids: list[str] = []
    where: dict[str, str] = {}
    errors = 0
    for shard in shards:
        table = read_shard(shard, columns=["video_id", "status"])
        ok = pc.equal(table.column("status"), STATUS_OK).to_numpy(zero_copy_only=False)
        errors += int((~ok).sum())
        for video_id, is_ok in zip(table.column("video_id").to_pylist(), ok):
            if not is_ok:
                continue
            if video_id in where:
                raise UserInputError(f"duplicate video_id {video_id!r} in {where[video_id]} and {shard}")
            where[video_id] = shard
            ids.append(video_id)
    return ids, errors


def _fill_store(shards: list[str], writer: FineStoreWriter, batch_rows: int) -> None:
    """Pass 2: stream the ok rows' features into the store, `batch_rows` rows at a time."""
    t, p, d = writer.dims.num_frames, writer.dims.num_patches, writer.dims.embed_dim
    columns = ["status", "coarse_feature", "frame_features", "context_frame_features",
               "patch_features", "frame_mask"]
    shapes = {"coarse_feature": (d,), "frame_features": (t, d), "context_frame_features": (t, d),
              "patch_features": (t * p, d), "frame_mask": (t,)}
    start = time.perf_counter()
    for number, shard in enumerate(shards, start=1):
        with fsspec.open(shard, "rb") as handle:
            for batch in pq.ParquetFile(handle).iter_batches(batch_size=batch_rows, columns=columns):
                batch = batch.filter(pc.equal(batch.column("status"), STATUS_OK))
                if batch.num_rows == 0:
                    continue
                arrays = [batch.column(name).flatten().to_numpy(zero_copy_only=False)
                          .reshape(batch.num_rows, *shape) for name, shape in shapes.items()]
                writer.append(*arrays)
        elapsed = time.perf_counter() - start
        log.info("store: %d/%d shards, %d/%d videos, %.0f videos/s", number, len(shards),
                 writer.written, writer.num_videos, writer.written / max(elapsed, 1e-9))


def build(inputs: list[str], output: str, factory: str | None = None, nprobe: int | None = None,
          recall_sample: int = 1000, recall_check_k: int = 50, batch_rows: int = 256,
          overwrite: bool = False, seed: int = 0) -> dict:
    """Build an index directory at `output` from the shards in `inputs`; returns the manifest."""
    started = time.perf_counter()
    out = Path(local_path(output))
    if out.exists() and not overwrite:
        raise UserInputError(f"{out}: already exists (pass --overwrite to replace it)")
    check_writable_dir(str(out.parent), "--output's parent")  # the build happens beside it
    shards = resolve_shards(inputs)
    dims, model_id, sha = check_identity(shards)
    ids, error_rows = _scan(shards)
    if not ids:
        raise UserInputError(f"no ok rows in {len(shards)} shard(s) ({error_rows} error rows)")
    log.info("%d shards: %d ok videos, %d error rows skipped; model %s, dims %s",
             len(shards), len(ids), error_rows, model_id, dims)

    temp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    shutil.rmtree(temp, ignore_errors=True)
    temp.mkdir(parents=True)
    try:
        writer = FineStoreWriter(temp / STORE_DIR, len(ids), dims)
        _fill_store(shards, writer, batch_rows)
        writer.close()
        store_seconds = time.perf_counter() - started

        coarse = np.load(temp / STORE_DIR / "coarse.npy", mmap_mode="r")[:len(ids)]
        index_start = time.perf_counter()
        factory = factory or recall_index.default_factory(len(ids))
        index = recall_index.build(coarse, factory, nprobe, seed=seed)
        index_seconds = time.perf_counter() - index_start
        info = recall_index.describe(index, factory)
        if not info["exact"]:
            # Sampled corpus vectors stand in for queries (text queries are not known at build time).
            sample = np.random.default_rng(seed).choice(len(ids), min(recall_sample, len(ids)),
                                                        replace=False)
            queries = np.asarray(coarse[np.sort(sample)], dtype=np.float32)
            info["recall_vs_exact"] = {
                "k": recall_check_k, "sample_queries": int(sample.size),
                "queries": "sampled corpus coarse vectors",
                "recall": recall_index.recall_vs_exact(index, coarse, queries, recall_check_k)}
            log.info("recall@%d vs exact: %.4f", recall_check_k, info["recall_vs_exact"]["recall"])
        recall_index.save(index, temp / RECALL_FILE)
        (temp / IDS_FILE).write_text(json.dumps(ids))
        manifest = {
            "index_schema_version": INDEX_SCHEMA_VERSION,
            "feature_schema_version": SCHEMA_VERSION,
            "model_id": model_id,
            "checkpoint_sha256": sha,
            "dims": {"num_frames": dims.num_frames, "num_patches": dims.num_patches,
                     "embed_dim": dims.embed_dim},
            "num_videos": len(ids),
            "num_error_rows": error_rows,
            "shards": shards,
            "index": info,
            "fine_store": {"path": STORE_DIR, "dtype": "float16",
                           "bytes_per_video": bytes_per_video(dims)},
            "build_seconds": {"store": round(store_seconds, 3), "index": round(index_seconds, 3),
                              "total": round(time.perf_counter() - started, 3)},
        }
        (temp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        if out.exists():
            trash = out.with_name(f".{out.name}.old-{os.getpid()}")
            os.replace(out, trash)
            shutil.rmtree(trash)
        os.replace(temp, out)
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise
    return manifest


def run(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="eercf build-index", description=__doc__.split("\n")[0])
    parser.add_argument("--shards", nargs="+", required=True,
                        help="shard directories, shard files or globs (fsspec URLs)")
    parser.add_argument("--output", required=True, help="index directory to create (local)")
    parser.add_argument("--index-factory", default=None,
                        help="FAISS index_factory string (default: Flat below "
                             f"{recall_index.EXACT_MAX_VIDEOS} videos, IVF above)")
    parser.add_argument("--nprobe", type=positive_int, default=None,
                        help="IVF lists probed (default nlist/16)")
    parser.add_argument("--recall-sample", type=positive_int, default=1000,
                        help="queries sampled to measure an approximate index's recall vs exact")
    parser.add_argument("--recall-check-k", type=positive_int, default=50)
    parser.add_argument("--batch-rows", type=positive_int, default=256, help="rows read per batch")
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args(argv)
    manifest = build(args.shards, args.output, args.index_factory, args.nprobe, args.recall_sample,
                     args.recall_check_k, args.batch_rows, args.overwrite)
    print(f"indexed {manifest['num_videos']} videos ({manifest['num_error_rows']} error rows "
          f"skipped) with {manifest['index']['factory']} into {args.output}")
    return 0
