"""Searching a large batch of queries list by list in an IVF recall index (big-batch search).

A regular IVF search walks each query's `nprobe` inverted lists, so a list probed by m queries of
a batch is read and decoded m times: a batch of 16,384 queries at nprobe 8 of 4,096 lists reads
every list 32 times, from disk when the lists are on-disk (`recall.ivfdata`) and not cached.
Here the probes of the whole batch are sorted by list, and each list is read and decoded once and
scored against all its queries in one matrix product (FAISS `knn`, BLAS), merged into a per-query
top-k heap. This is FAISS's big-batch search (`faiss.contrib.big_batch_search`) for this
project's indexes: that one subtracts the centroid from the queries of residual codes, which is
right for L2 only; with inner product the residual score is q·c + q·r, so here q·c (from the
coarse quantizer) is added to each list's scores.

The results equal `IndexIVF.search` with the same nprobe up to float rounding of the scores
(and so the order of near-ties): both score exactly the vectors of the probed lists.
"""
from __future__ import annotations

import math
from typing import Any

import faiss
import numpy as np

# A batch is searched list by list when it probes each list this many times on average; below
# that, the lists are read about once either way and the per-list loop only adds overhead.
MIN_PROBES_PER_LIST = 4


def supports(index: faiss.Index) -> bool:
    """Whether `index` is a bare inner-product IVF index of raw or scalar-quantised vectors (the
    recall index types this project builds by default)."""
    return (isinstance(index, (faiss.IndexIVFFlat, faiss.IndexIVFScalarQuantizer))
            and index.metric_type == faiss.METRIC_INNER_PRODUCT)


def worthwhile(index: faiss.Index, num_queries: int) -> bool:
    """Whether a batch of `num_queries` probes each list of `index` MIN_PROBES_PER_LIST times."""
    ivf: Any = index  # the FAISS stubs know Index only
    return supports(index) and num_queries * ivf.nprobe >= MIN_PROBES_PER_LIST * ivf.nlist


def batch_size(index: faiss.Index) -> int:
    """The smallest batch of queries that probes each list of the IVF `index`
    MIN_PROBES_PER_LIST times on average (4 x nlist / nprobe: 2,048 at nlist 4,096, nprobe 8)."""
    ivf: Any = index
    return math.ceil(MIN_PROBES_PER_LIST * ivf.nlist / ivf.nprobe)


def search_by_list(index: faiss.Index, queries: np.ndarray, k: int
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Top-k inner products of queries [Q, D] float32 over the lists each query probes: (scores
    [Q, k] float32, ids [Q, k] int64, best first; -1 / -inf where fewer than k vectors were
    probed), as `index.search`. `index` must pass `supports`."""
    if not supports(index):
        raise TypeError(f"list-by-list search needs an inner-product IVFFlat / IVFScalarQuantizer "
                        f"index, got {type(index).__name__}")
    ivf: Any = index  # the FAISS stubs know Index only
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    num_queries, nprobe = queries.shape[0], ivf.nprobe
    centroid_scores, probes = ivf.quantizer.search(queries, nprobe)  # [Q, nprobe] each
    flat = probes.ravel()
    order = np.argsort(flat, kind="stable")
    lists, starts = np.unique(flat[order], return_index=True)
    ends = np.append(starts[1:], order.size)
    heap = faiss.ResultHeap(num_queries, k, keep_max=True)
    invlists = ivf.invlists
    code_size = invlists.code_size
    residual = isinstance(ivf, faiss.IndexIVFScalarQuantizer) and ivf.by_residual
    for list_no, start, end in zip(lists.tolist(), starts.tolist(), ends.tolist()):
        size = invlists.list_size(list_no) if list_no >= 0 else 0
        if size == 0:
            continue
        pairs = order[start:end]
        members = pairs // nprobe  # each query probes a list at most once
        id_pointer, code_pointer = invlists.get_ids(list_no), invlists.get_codes(list_no)
        try:
            ids = faiss.rev_swig_ptr(id_pointer, size).copy()
            codes = faiss.rev_swig_ptr(code_pointer, size * code_size)
            if isinstance(ivf, faiss.IndexIVFFlat):
                vectors = codes.view(np.float32).reshape(size, ivf.d)
            else:
                vectors = ivf.sq.decode(codes.reshape(size, code_size))
            scores, local = faiss.knn(queries[members], vectors, min(k, size),
                                      metric=faiss.METRIC_INNER_PRODUCT)
        finally:
            invlists.release_codes(list_no, code_pointer)
            invlists.release_ids(list_no, id_pointer)
        if residual:  # q·(c + r) = q·c + q·r
            scores += centroid_scores.ravel()[pairs][:, None]
        heap.add_result_subset(members, scores, ids[local])
    heap.finalize()
    return heap.D, heap.I
