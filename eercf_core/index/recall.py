"""The FAISS recall index over the coarse vectors (method §5, §8.3 stage 1).

S_V(c, b) = τ · s_c W_g v_b is an inner product between the indexed, L2-normalised coarse vector
v_b and the query q_c = τ · s_c W_g (`ec.scores.recall_queries`): W_g is folded into the query
side, so the index itself is model-agnostic inner-product search over normalised vectors.

Index type by corpus size (or any FAISS `index_factory` string):
  N < EXACT_MAX_VIDEOS  -> "Flat" (exact)
  otherwise             -> "IVF{nlist},Flat", nlist ≈ 4·sqrt(N) (a power of two), nprobe = nlist/16
For approximate indices, `recall_vs_exact` measures recall@k against exact search.
"""
from __future__ import annotations

import logging
import math
import time
from pathlib import Path

import faiss
import numpy as np
from faiss.contrib.evaluation import knn_intersection_measure
from faiss.contrib.exhaustive_search import knn_ground_truth

from eercf_core.errors import UserInputError
from eercf_core.files.atomic import local_temp_path

log = logging.getLogger(__name__)

EXACT_MAX_VIDEOS = 50_000
ADD_BATCH = 65_536


def default_factory(num_videos: int) -> str:
    """The index_factory string chosen for a corpus of `num_videos` coarse vectors."""
    if num_videos < EXACT_MAX_VIDEOS:
        return "Flat"
    nlist = 2 ** round(math.log2(4 * math.sqrt(num_videos)))
    return f"IVF{nlist},Flat"


def default_nprobe(index: faiss.Index) -> int | None:
    """nprobe for an IVF index (nlist/16, at least 8), None for other types."""
    ivf = _ivf(index)
    return None if ivf is None else _ivf_default_nprobe(ivf)


def _ivf_default_nprobe(ivf: faiss.IndexIVF) -> int:
    return max(8, min(ivf.nlist, ivf.nlist // 16))


def _ivf(index: faiss.Index) -> faiss.IndexIVF | None:
    try:
        return faiss.extract_index_ivf(index)
    except RuntimeError:
        return None


def build(coarse: np.ndarray, factory: str | None = None, nprobe: int | None = None,
          train_size: int | None = None, seed: int = 0) -> faiss.Index:
    """An inner-product index over coarse [N, D] (float32-convertible), trained if needed.

    Training uses a random sample of up to `train_size` vectors (default 64 per IVF list); vectors
    are added in batches of ADD_BATCH.
    """
    n, d = coarse.shape
    factory = factory or default_factory(n)
    try:
        index = faiss.index_factory(d, factory, faiss.METRIC_INNER_PRODUCT)
    except RuntimeError as exc:
        raise UserInputError(f"bad FAISS index_factory string {factory!r}: {exc}") from None
    if not index.is_trained:
        ivf = _ivf(index)
        nlist = ivf.nlist if ivf is not None else 1
        wanted = train_size or (64 * nlist if ivf is not None else min(n, 100_000))
        if n < nlist:
            raise UserInputError(f"index {factory!r} needs at least {nlist} vectors to train, "
                                 f"the corpus has {n}")
        sample = np.random.default_rng(seed).choice(n, size=min(n, wanted), replace=False)
        start = time.perf_counter()
        index.train(np.ascontiguousarray(coarse[np.sort(sample)], dtype=np.float32))
        log.info("trained %s on %d vectors in %.1f s", factory, sample.size,
                 time.perf_counter() - start)
    for begin in range(0, n, ADD_BATCH):
        index.add(np.ascontiguousarray(coarse[begin:begin + ADD_BATCH], dtype=np.float32))
    set_nprobe(index, nprobe)
    return index


def set_nprobe(index: faiss.Index, nprobe: int | None) -> None:
    """Set nprobe on an IVF index (default: `default_nprobe`); no-op for other types."""
    ivf = _ivf(index)
    if ivf is not None:
        ivf.nprobe = nprobe or _ivf_default_nprobe(ivf)


def describe(index: faiss.Index, factory: str) -> dict:
    """Index type and parameters for the manifest."""
    info = {"factory": factory, "metric": "inner_product", "ntotal": int(index.ntotal),
            "exact": _ivf(index) is None and "PQ" not in factory and "HNSW" not in factory}
    ivf = _ivf(index)
    if ivf is not None:
        info.update(nlist=int(ivf.nlist), nprobe=int(ivf.nprobe))
    return info


def search(index: faiss.Index, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-k inner-product search: queries [Q, D] -> (scores [Q, k] float32, rows [Q, k] int64).

    k is capped at the index size. Queries for which an IVF probe found fewer than k vectors are
    searched again over every list, so every row holds k valid ids.
    """
    k = min(k, int(index.ntotal))
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    scores, rows = index.search(queries, k)
    short = np.flatnonzero((rows < 0).any(axis=1))
    ivf = _ivf(index)
    if short.size and ivf is not None:
        saved = ivf.nprobe
        ivf.nprobe = ivf.nlist
        try:
            scores[short], rows[short] = index.search(queries[short], k)
        finally:
            ivf.nprobe = saved
    if (rows < 0).any():
        raise RuntimeError(f"FAISS returned fewer than k={k} results for some queries")
    return scores, rows


def recall_vs_exact(index: faiss.Index, coarse: np.ndarray, queries: np.ndarray, k: int) -> float:
    """Mean |approximate top-k ∩ exact top-k| / k over `queries` [Q, D]; the exact top-k streams
    over coarse [N, D] in blocks of ADD_BATCH (faiss.contrib's ground truth, CPU only)."""
    k = min(k, int(index.ntotal))
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    _, approx = search(index, queries, k)
    blocks = (np.ascontiguousarray(coarse[begin:begin + ADD_BATCH], dtype=np.float32)
              for begin in range(0, coarse.shape[0], ADD_BATCH))
    _, exact = knn_ground_truth(queries, blocks, k, metric_type=faiss.METRIC_INNER_PRODUCT, ngpu=0)
    return float(knn_intersection_measure(approx, exact))


def save(index: faiss.Index, path: str | Path) -> None:
    """Write the index to `path` atomically (temp name, then rename)."""
    with local_temp_path(path) as temp:
        faiss.write_index(index, str(temp))


def load(path: str | Path, nprobe: int | None = None) -> faiss.Index:
    """Read an index written by `save`; nprobe overrides the stored one when given."""
    if not Path(path).is_file():
        raise UserInputError(f"{path}: recall index file missing")
    try:
        index = faiss.read_index(str(path))
    except RuntimeError as exc:
        raise UserInputError(f"{path}: unreadable FAISS index: {exc}") from None
    if nprobe is not None:
        set_nprobe(index, nprobe)
    return index
