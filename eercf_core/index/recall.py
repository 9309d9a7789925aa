"""The FAISS recall index over the coarse vectors (method §5, §8.3 stage 1).

S_V(c, b) = τ · s_c W_g v_b is an inner product between the indexed, L2-normalised coarse vector
v_b and the query q_c = τ · s_c W_g (`ec.scores.recall_queries`): W_g is folded into the query
side, so the index itself is model-agnostic inner-product search over normalised vectors.

Index type by corpus size (or any FAISS `index_factory` string):
  N < EXACT_MAX_VIDEOS          -> "Flat" (exact)
  N < COMPRESSED_MIN_VIDEOS     -> "IVF{nlist},Flat", nlist ≈ 4·sqrt(N) (a power of two)
  otherwise                     -> "IVF{nlist},SQ8" (1 byte per dimension: 5.1 GB at 10M x 512)
An IVF index of at least ONDISK_MIN_VIDEOS vectors is filled group by group (ADD_GROUP vectors,
each group's lists written to a file) and the groups merged into on-disk inverted lists
(`recall.ivfdata` beside `recall.faiss`, FAISS's `merge_ondisk`), so no step holds the corpus's
codes in RAM (5.1 GB at 10M x 512 SQ8); readers map the lists read-only.
Search parameters of an approximate index (IVF nprobe, HNSW efSearch) are tuned at build time by
`tune`: the smallest value whose recall@k against exact search reaches a target (default 0.95 at
k = 50) on held-out queries (`held_out_queries`: mixtures of corpus vectors plus noise, never
corpus members, which would find themselves). The chosen value is stored in the index file (FAISS
serialises nprobe / efSearch) and the whole curve in the manifest.
"""
from __future__ import annotations

import contextlib
import ctypes
import logging
import math
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import faiss
import numpy as np
from faiss.contrib.evaluation import knn_intersection_measure
from faiss.contrib.exhaustive_search import knn_ground_truth
from faiss.contrib.ondisk import merge_ondisk

from eercf_core.errors import UserInputError
from eercf_core.files.atomic import local_temp_path
from eercf_core.index import list_search

log = logging.getLogger(__name__)

EXACT_MAX_VIDEOS = 50_000
COMPRESSED_MIN_VIDEOS = 1_000_000
DEFAULT_RECALL_TARGET = 0.95
ADD_BATCH = 65_536
ONDISK_MIN_VIDEOS = COMPRESSED_MIN_VIDEOS
ADD_GROUP = 1 << 20
IVFDATA_FILE = "recall.ivfdata"


def default_factory(num_videos: int) -> str:
    """The index_factory string chosen for a corpus of `num_videos` coarse vectors."""
    if num_videos < EXACT_MAX_VIDEOS:
        return "Flat"
    nlist = 2 ** round(math.log2(4 * math.sqrt(num_videos)))
    codes = "SQ8" if num_videos >= COMPRESSED_MIN_VIDEOS else "Flat"
    return f"IVF{nlist},{codes}"


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
          train_size: int | None = None, seed: int = 0,
          ondisk_dir: Path | None = None) -> faiss.Index:
    """An inner-product index over coarse [N, D] (float32-convertible), trained if needed.

    Training uses a random sample of up to `train_size` vectors (default 64 per IVF list); vectors
    are added in batches of ADD_BATCH. With `ondisk_dir` (the directory `save` will write the
    index to) an IVF index gets on-disk inverted lists there (`_add_on_disk`).
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
    if ondisk_dir is not None and _ivf(index) is not None:
        _add_on_disk(index, coarse, Path(ondisk_dir))
    else:
        for begin in range(0, n, ADD_BATCH):
            index.add(np.ascontiguousarray(coarse[begin:begin + ADD_BATCH], dtype=np.float32))
    set_nprobe(index, nprobe)
    return index


def _add_on_disk(index: faiss.Index, coarse: np.ndarray, directory: Path) -> None:
    """Add coarse [N, D] to the trained, empty IVF `index` group by group: each group of
    ADD_GROUP vectors (ids = row numbers) goes into a copy of the index, written to a file and
    freed; the groups' lists are then merged into `directory / IVFDATA_FILE` and the index
    switched to them. Memory: one group's codes, not the corpus's."""
    n = coarse.shape[0]
    groups: list[str] = []
    start = time.perf_counter()
    try:
        for number, begin in enumerate(range(0, n, ADD_GROUP)):
            part = faiss.clone_index(index)
            for first in range(begin, min(begin + ADD_GROUP, n), ADD_BATCH):
                last = min(first + ADD_BATCH, begin + ADD_GROUP, n)
                part.add_with_ids(np.ascontiguousarray(coarse[first:last], dtype=np.float32),
                                  np.arange(first, last, dtype=np.int64))
            groups.append(str(directory / f".recall-group-{number:05d}.index"))
            faiss.write_index(part, groups[-1])
            del part
        with _quiet_c_stdout():  # FAISS printf()s "resizing <file>" as the lists grow
            merge_ondisk(index, groups, str(directory / IVFDATA_FILE))
    finally:
        for group in groups:
            with contextlib.suppress(FileNotFoundError):
                os.remove(group)
    log.info("recall index: %d vectors in %d groups merged into on-disk lists %s in %.1f s", n,
             len(groups), directory / IVFDATA_FILE, time.perf_counter() - start)


@contextlib.contextmanager
def _quiet_c_stdout() -> Iterator[None]:
    """Send what C code writes to stdout meanwhile to /dev/null (FAISS's on-disk lists print
    progress lines; a command's stdout is its result)."""
    libc = ctypes.CDLL(None)
    sys.stdout.flush()
    libc.fflush(None)
    saved, null = os.dup(1), os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 1)
    try:
        yield
    finally:
        libc.fflush(None)
        os.dup2(saved, 1)
        os.close(saved)
        os.close(null)


def set_nprobe(index: faiss.Index, nprobe: int | None) -> None:
    """Set nprobe on an IVF index (default: `default_nprobe`); no-op for other types."""
    ivf = _ivf(index)
    if ivf is not None:
        ivf.nprobe = nprobe or _ivf_default_nprobe(ivf)


def has_on_disk_lists(index: faiss.Index) -> bool:
    """Whether `index` is an IVF index whose inverted lists are read from `IVFDATA_FILE`."""
    ivf = _ivf(index)
    lists = None if ivf is None else ivf.invlists
    return lists is not None and isinstance(faiss.downcast_InvertedLists(lists),
                                            faiss.OnDiskInvertedLists)


def describe(index: faiss.Index, factory: str) -> dict:
    """Index type and parameters for the manifest."""
    info = {"factory": factory, "metric": "inner_product", "ntotal": int(index.ntotal),
            "exact": _ivf(index) is None and "PQ" not in factory and "HNSW" not in factory}
    ivf = _ivf(index)
    if ivf is not None:
        info.update(nlist=int(ivf.nlist), nprobe=int(ivf.nprobe))
        if has_on_disk_lists(index):
            info["inverted_lists"] = IVFDATA_FILE
    return info


def search(index: faiss.Index, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-k inner-product search: queries [Q, D] -> (scores [Q, k] float32, rows [Q, k] int64).

    k is capped at the index size. A batch that probes each on-disk IVF list several times is
    searched list by list (`list_search`: the same results, each list read once; with lists in
    memory it measured no faster, so those are searched query by query). Queries for which an
    IVF probe found fewer than k vectors are searched again over every list, so every row holds
    k valid ids.
    """
    k = min(k, int(index.ntotal))
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    if has_on_disk_lists(index) and list_search.worthwhile(index, len(queries)):
        scores, rows = list_search.search_by_list(index, queries, k)
    else:
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


def exact_top_k(coarse: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    """Exact inner-product top-k rows [Q, k] of queries [Q, D] over coarse [N, D] (any array or
    memory map): streams over the corpus in blocks of ADD_BATCH (faiss.contrib, CPU only)."""
    k = min(k, int(coarse.shape[0]))
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    blocks = (np.ascontiguousarray(coarse[begin:begin + ADD_BATCH], dtype=np.float32)
              for begin in range(0, coarse.shape[0], ADD_BATCH))
    _, exact = knn_ground_truth(queries, blocks, k, metric_type=faiss.METRIC_INNER_PRODUCT, ngpu=0)
    return exact


def recall_vs_exact(index: faiss.Index, coarse: np.ndarray, queries: np.ndarray, k: int,
                    exact: np.ndarray | None = None) -> float:
    """Mean |approximate top-k ∩ exact top-k| / k over `queries` [Q, D]; `exact` [Q, k] is
    `exact_top_k(coarse, queries, k)`, computed when not given."""
    k = min(k, int(index.ntotal))
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    _, approx = search(index, queries, k)
    if exact is None:
        exact = exact_top_k(coarse, queries, k)
    return float(knn_intersection_measure(approx, exact[:, :k]))


def held_out_queries(coarse: np.ndarray, count: int, seed: int = 0,
                     noise: float = 0.5) -> np.ndarray:
    """[count, D] float32 unit queries that are not corpus members: each is a random convex mix
    (weights in [0.25, 0.75]) of two random corpus vectors plus isotropic Gaussian noise of norm
    ≈ `noise`, renormalised. Corpus members used as queries find themselves at rank 1 and
    overstate recall; these land between videos, as text queries do."""
    n, d = coarse.shape
    rng = np.random.default_rng(seed)
    pick = rng.integers(0, n, (2, count))
    order = np.argsort(pick.ravel())  # read memory-mapped rows in ascending order
    rows = np.empty((2 * count, d), np.float32)
    rows[order] = np.asarray(coarse[pick.ravel()[order]], dtype=np.float32)
    a, b = rows[:count], rows[count:]
    weight = rng.uniform(0.25, 0.75, (count, 1)).astype(np.float32)
    mixed = weight * a + (1 - weight) * b
    mixed += noise * rng.standard_normal((count, d)).astype(np.float32) / np.sqrt(d)
    return mixed / np.maximum(np.linalg.norm(mixed, axis=1, keepdims=True), 1e-12)


def search_parameter(index: faiss.Index) -> tuple[str, list[int]] | None:
    """(name, candidate values ascending) of the index's recall/speed knob, None for exact or
    fixed indices: IVF -> nprobe over powers of two up to nlist; HNSW -> efSearch 16..4096."""
    ivf = _ivf(index)
    if ivf is not None:
        values = [2 ** i for i in range(int(math.log2(ivf.nlist)) + 1)]
        return "nprobe", values if values[-1] == ivf.nlist else values + [int(ivf.nlist)]
    if _hnsw(index) is not None:
        return "efSearch", [16, 32, 64, 128, 256, 512, 1024, 2048, 4096]
    return None


def _hnsw(index: faiss.Index) -> faiss.IndexHNSW | None:
    downcast = faiss.downcast_index(index)
    return downcast if isinstance(downcast, faiss.IndexHNSW) else None


def _set_parameter(index: faiss.Index, name: str, value: int) -> None:
    faiss.ParameterSpace().set_index_parameter(index, name, value)


def tune(index: faiss.Index, coarse: np.ndarray, queries: np.ndarray, k: int,
         target: float = DEFAULT_RECALL_TARGET, fixed: int | None = None) -> dict:
    """Set the index's search parameter (`search_parameter`) to the smallest value whose
    recall@k vs exact on `queries` [Q, D] (held-out, see `held_out_queries`) reaches `target`,
    or to `fixed` when given; returns the record for the manifest: k, target, the chosen value,
    its recall, `met`, and the measured curve [[value, recall], ...]. When the target is never
    reached the largest value tried stays set and `met` is False (the caller warns or fails).
    """
    k = min(k, int(index.ntotal))
    exact = exact_top_k(coarse, queries, k)
    record: dict = {"k": k, "target": target, "num_queries": len(queries),
                    "queries": "held out: mixes of two corpus vectors plus noise (not members)"}
    knob = search_parameter(index)
    curve: list[list[float]] = []
    if knob is None:
        value = None
        recall = recall_vs_exact(index, coarse, queries, k, exact)
    else:
        name, candidates = knob
        record["parameter"] = name
        for value in ([fixed] if fixed else candidates):
            _set_parameter(index, name, value)
            recall = recall_vs_exact(index, coarse, queries, k, exact)
            curve.append([value, round(recall, 5)])
            if recall >= target:
                break
        record["curve"] = curve
    record.update(value=value, recall=round(recall, 5), met=bool(recall >= target))
    if fixed:
        record["fixed"] = True
    return record


def save(index: faiss.Index, path: str | Path) -> None:
    """Write the index to `path` atomically (temp name, then rename)."""
    with local_temp_path(path) as temp:
        faiss.write_index(index, str(temp))


def load(path: str | Path, nprobe: int | None = None, mmap: bool = True) -> faiss.Index:
    """Read an index written by `save`; nprobe overrides the stored one when given.

    With `mmap` (the default) the vectors / inverted lists are memory-mapped read-only
    (FAISS IO_FLAG_MMAP_IFC | IO_FLAG_READ_ONLY): they count as shared, file-backed pages, so a
    query worker's anonymous memory does not grow with the corpus and processes on one machine
    share one copy. Index types FAISS cannot map are read into memory (logged)."""
    if not Path(path).is_file():
        raise UserInputError(f"{path}: recall index file missing")
    index = None
    if (Path(path).parent / IVFDATA_FILE).is_file():  # on-disk lists: mapped from beside `path`
        try:
            with _quiet_c_stdout():
                index = faiss.read_index(str(path), faiss.IO_FLAG_ONDISK_SAME_DIR
                                         | faiss.IO_FLAG_READ_ONLY)
        except RuntimeError as exc:
            raise UserInputError(f"{path}: unreadable FAISS index with on-disk lists "
                                 f"{IVFDATA_FILE}: {exc}") from None
    elif mmap:
        try:
            index = faiss.read_index(str(path), faiss.IO_FLAG_MMAP_IFC | faiss.IO_FLAG_READ_ONLY)
        except RuntimeError as exc:
            log.info("%s: not memory-mappable (%s); reading it into memory", path,
                     str(exc).splitlines()[0])
    try:
        index = index if index is not None else faiss.read_index(str(path))
    except RuntimeError as exc:
        raise UserInputError(f"{path}: unreadable FAISS index: {exc}") from None
    if nprobe is not None:
        set_nprobe(index, nprobe)
    return index
