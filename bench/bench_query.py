"""Query throughput: two-stage (FAISS recall + store rerank) vs exhaustive fine scoring.

Synthetic features with ViT-B/32 dimensions (D=512, T=12, P=49; ~613 KB of fp16 fine features per
video), random clustered coarse vectors, random normalised text features, τ = 100, W_g ≈ I.
  N = 10,000: store of 10,000 videos on disk (bench_out/query_store), Flat recall index.
  N = 100,000: the recall index holds 100,000 distinct coarse vectors (default factory: IVF); the
    fine store serves video i from stored row i mod 10,000 (keeps disk at ~6 GB); exhaustive time
    on a subset of the queries.
Reports queries/s of both modes and their ratio, peak RSS (and its anonymous / file-backed split),
fine-store bytes per video, store write and index build time, and recall@50 of the approximate
index against exact search. Usage: python -m bench query [--quick]
"""
from __future__ import annotations

import argparse
import logging
import os
import resource
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch

from eercf_core.config import RerankWeights, ScoreConfig
from eercf_core.index import IndexDirectory, exhaustive, recall, two_stage
from eercf_core.index.store import FineStore, FineStoreWriter, bytes_per_video
from eercf_core.scoring.scores import ScoreParams, recall_queries
from schemas import FeatureDims

T = TypeVar("T")

log = logging.getLogger(__name__)
OUT = Path("bench_out")


def _norm(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _clustered(rng: np.random.Generator, centers: np.ndarray, n: int) -> np.ndarray:
    d = centers.shape[1]
    z = rng.integers(0, len(centers), n)
    return _norm(centers[z] + rng.standard_normal((n, d), dtype=np.float32) / np.sqrt(d))


def _write_store(path: Path, n: int, dims: FeatureDims, centers: np.ndarray, seed: int,
                 codecs: dict | None = None) -> tuple[np.ndarray, float]:
    """Write a synthetic store in chunks (bounded memory), fine kinds as codes of `codecs` if
    given; returns (coarse [n, D], seconds)."""
    rng = np.random.default_rng(seed)
    t, p, d = dims.num_frames, dims.num_patches, dims.embed_dim
    shutil.rmtree(path, ignore_errors=True)
    start = time.perf_counter()
    writer = FineStoreWriter(path, n, dims, codecs)
    coarse_all = np.empty((n, d), dtype=np.float16)
    for begin in range(0, n, 200):
        b = min(200, n - begin)
        coarse = _clustered(rng, centers, b).astype(np.float16)
        frame = _norm(coarse[:, None, :].astype(np.float32)
                      + rng.standard_normal((b, t, d), dtype=np.float32) / np.sqrt(d))
        context = _norm(frame + rng.standard_normal((b, t, d), dtype=np.float32) / np.sqrt(d))
        patch = _norm(rng.standard_normal((b, t * p, d), dtype=np.float32))
        writer.append(coarse, frame.astype(np.float16), context.astype(np.float16),
                      patch.astype(np.float16), np.ones((b, t), dtype=bool))
        coarse_all[begin:begin + b] = coarse
        if begin % 2000 == 0:
            log.info("store: %d/%d videos written", begin + b, n)
    writer.close()
    return coarse_all, time.perf_counter() - start


class ModuloStore(FineStore):
    """A FineStore view of `num_videos` videos where video i is stored row i mod len(inner);
    coarse vectors come from a separate full array. FineStore's gather, features and codec
    work unchanged on top of the two readers below."""

    def __init__(self, inner: FineStore, num_videos: int, coarse: np.ndarray) -> None:
        # A view: no directory of its own, so FineStore.__init__ (which opens one) is not run.
        self.inner, self.num_videos, self.coarse = inner, num_videos, coarse
        self.dims, self.codecs, self.arrays = inner.dims, inner.codecs, inner.arrays

    def read(self, kind: str, rows: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        rows = np.asarray(rows, dtype=np.int64)
        if kind == "coarse":
            return np.take(self.coarse, rows, axis=0, out=out)
        return self.inner.read(kind, rows % len(self.inner), out)

    def read_float(self, kind: str, rows: np.ndarray) -> torch.Tensor:
        rows = np.asarray(rows, dtype=np.int64)
        if kind == "coarse":
            return torch.from_numpy(self.coarse[rows]).float()
        return self.inner.read_float(kind, rows % len(self.inner))


def _memory() -> dict:
    status = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines()
                  if ":" in line)
    mib = lambda key: round(int(status[key].split()[0]) / 1024, 1)  # noqa: E731
    return {"load_average_1min": round(os.getloadavg()[0], 2),
            "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "rss_now_mib": mib("VmRSS"), "rss_anon_now_mib": mib("RssAnon"),
            "rss_file_now_mib": mib("RssFile")}


def _timed(fn: Callable[..., T], *args: Any, **kwargs: Any) -> tuple[T, float]:
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    return result, time.perf_counter() - start


def _compare(index: IndexDirectory, text: torch.Tensor, params: ScoreParams, k: int,
             n_exhaustive: int, label: str, extra_methods: tuple[str, ...] = ()) -> dict:
    weights, config = RerankWeights(), ScoreConfig()
    ranking, seconds = _timed(two_stage, index, text, params, k, k, weights, config)
    out = {"queries": len(text), "two_stage_seconds": round(seconds, 3),
           "two_stage_qps": round(len(text) / seconds, 2)}
    log.info("%s two-stage: %.2f queries/s", label, out["two_stage_qps"])
    for method in extra_methods:
        sub = text[:200]
        _, s = _timed(two_stage, index, sub, params, k, k, weights, config, method)
        out[f"two_stage_{method}_qps"] = round(len(sub) / s, 2)
    sub = text[:n_exhaustive]
    full, seconds = _timed(exhaustive, index, sub, params, k, weights, config,
                           num_videos=len(index.store))
    out.update(exhaustive_queries=len(sub), exhaustive_seconds=round(seconds, 3),
               exhaustive_qps=round(len(sub) / seconds, 3))
    out["speedup"] = round(out["two_stage_qps"] / out["exhaustive_qps"], 1)
    # How much of the exhaustive top-10 the two-stage top-10 finds (random features: a sanity
    # check).
    hits = [len(set(a[:10].tolist()) & set(b[:10].tolist()))
            for a, b in zip(ranking.indices[:len(sub)], full.indices)]
    out["top10_overlap_with_exhaustive"] = round(float(np.mean(hits)) / 10, 3)
    log.info("%s exhaustive: %.3f queries/s -> two-stage is %.1fx", label, out["exhaustive_qps"],
             out["speedup"])
    return out


def main(flags: list[str]) -> dict:
    parser = argparse.ArgumentParser(prog="bench query")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--large-exhaustive-queries", type=int, default=50)
    parser.add_argument("--reuse-store", action="store_true", help="keep an existing store")
    args = parser.parse_args(flags)
    torch.manual_seed(0)
    dims = FeatureDims(12, 49, 512)
    n, n_large, n_queries, k = 10_000, 100_000, args.queries, 50
    n_exh_large = args.large_exhaustive_queries
    if args.quick:
        n, n_large, n_queries, n_exh_large = 300, 3_000, 40, 10
    rng = np.random.default_rng(0)
    centers = _norm(rng.standard_normal((256, dims.embed_dim), dtype=np.float32))
    store_path = OUT / ("query_store_quick" if args.quick else "query_store")
    result: dict = {"dims": {"T": 12, "P": 49, "D": 512}, "k": k,
                    "fine_store_bytes_per_video": bytes_per_video(dims),
                    "threads": torch.get_num_threads()}
    if args.reuse_store and (store_path / "store.json").exists():
        store = FineStore(store_path)
        coarse = np.asarray(store.arrays["coarse"])
        write_seconds = None
    else:
        coarse, write_seconds = _write_store(store_path, n, dims, centers, seed=1)
        store = FineStore(store_path)
    result["store_write_seconds"] = write_seconds and round(write_seconds, 1)
    result["store_bytes"] = sum(p.stat().st_size for p in store_path.iterdir())
    params = ScoreParams(torch.tensor(100.0), torch.eye(dims.embed_dim) +
                         0.01 * torch.randn(dims.embed_dim, dims.embed_dim), torch.eye(12))
    text = torch.from_numpy(_clustered(rng, centers, n_queries)).float()

    # N = 10,000: default (exact) index over the stored coarse vectors.
    index, seconds = _timed(recall.build, coarse)
    small = IndexDirectory(store_path, {}, index, [], store)
    result["n10k"] = {"index": recall.describe(index, recall.default_factory(n)),
                      "index_build_seconds": round(seconds, 2)}
    result["n10k"].update(_compare(small, text, params, k, n_queries, f"N={n}",
                                   extra_methods=("gather",)))
    result["n10k"]["memory"] = _memory()

    # N = 100,000: 100k distinct coarse vectors in the default (IVF) index; fine rows i mod 10k.
    big_coarse = np.concatenate([coarse, _clustered(rng, centers, n_large - n).astype(np.float16)])
    index, seconds = _timed(recall.build, big_coarse)
    queries = recall_queries(text, params).numpy()
    recall_text = recall.recall_vs_exact(index, big_coarse, queries, k)
    sample = big_coarse[rng.choice(n_large, min(1000, n_large), replace=False)].astype(np.float32)
    big = IndexDirectory(store_path, {}, index, [], ModuloStore(store, n_large, big_coarse))
    result["n100k"] = {"index": recall.describe(index, recall.default_factory(n_large)),
                       "index_build_seconds": round(seconds, 2),
                       "recall_at_50_vs_exact_text_queries": round(recall_text, 4),
                       "recall_at_50_vs_exact_corpus_queries": round(
                           recall.recall_vs_exact(index, big_coarse, sample, k), 4),
                       "fine_store_rows": n, "fine_row_of_video": f"i mod {n}"}
    result["n100k"].update(_compare(big, text, params, k, n_exh_large, f"N={n_large}"))
    result["n100k"]["memory"] = _memory()
    return result
