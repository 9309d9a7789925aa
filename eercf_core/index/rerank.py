"""Rerank recalled candidates straight from the fine store's rows (method §8.3 stage 2).

Two implementations, same scores (the formulas of `eercf_core.scoring.scores`, float32):
- "gather": gather each query's k candidates to [Q, k, ...] float32 tensors and call
  `ec.rerank_candidates`, the core's own function. Simple, but it copies every candidate's patch
  features once per query (~1.2 MB per pair at ViT-B/32), which makes it memory-bound.
- "grouped" (default): candidates of a block of queries are grouped by video, each distinct
  video's fine rows are read and converted once, and the similarities s·f, s·ĥ, s·p of all queries
  that recalled it are computed together (one batched matmul). The similarities then go through
  the core's `fine_scores_from_similarities` and `rank_candidates`, as
  `ec.rerank_candidates` does. Results equal the "gather" path up to float32 summation order.
The grouped loop is many small, memory-bound operations: it runs with one intra-op thread
(measured 3-5x faster than two on the shared 2-core machine, where OpenMP barriers stall when a
core is busy), restoring the caller's thread count afterwards.
On a store whose patches are codes (`--fine-codec`), "grouped" decodes a chunk's patch codes in
one FAISS `sa_decode` call into the same float32 buffer the float16 path converts into, and runs
the same batched matmul; when no video of the chunk has more than _LUT_MAX_GROUP queries, PQ
codes are instead scored on the codes through per-query lookup tables. Frame and context vectors
(T per video) are decoded. "gather" decodes every candidate's features.
The patch TIB (S_Ps, rerank weight 0 by default) needs the gated patch sum per pair; when its
weight is non-zero the "grouped" path falls back to "gather".
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch

from eercf_core.config import BLOCK_ELEMENTS, RerankWeights, ScoreConfig
from eercf_core.index.codecs import VectorCodec
from eercf_core.index.store import FineStore
from eercf_core.scoring.ranking import Ranking, rank_candidates, rerank_candidates
from eercf_core.scoring.scores import ScoreParams, fine_scores_from_similarities, needed_scores

# Distinct videos converted to float32 at once (64 x 588 x 512 x 4 B ≈ 77 MB at ViT-B/32).
_VIDEO_CHUNK = 64
# Queries reranked at once, at most: a block recalled list by list can hold 16,384 queries, and
# the rerank's [queries x k x T*P] similarities and their softmax temporaries grow with it
# (+120 MB at 2,048 eercf-tiny queries, measured); 256 is the query job's default block.
RERANK_QUERIES = 256
METHODS = ("grouped", "gather")
# Largest queries-per-video group scored by PQ lookup tables (PQ64, D = 512, 64 videos, one
# thread: lookups 30 ms at 1 query per video, 51 at 2, 200 at 4; sa_decode into a reused buffer
# + matmul 52, 53, 56 ms; float16 convert + matmul 40, 49, 48 ms).
_LUT_MAX_GROUP = 2


@contextmanager
def _single_thread() -> Iterator[None]:
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@torch.no_grad()
def rerank_from_store(
    text: torch.Tensor,
    candidate_ids: torch.Tensor,
    candidate_coarse: torch.Tensor,
    store: FineStore,
    params: ScoreParams,
    config: ScoreConfig = ScoreConfig(),
    weights: RerankWeights = RerankWeights(),
    store_rows: torch.Tensor | None = None,
    method: str = "grouped",
) -> Ranking:
    """Order each query's k candidates by the rerank score, reading fine features from `store`.

    text [Q, D] sentence features; candidate_ids [Q, k] (recall order, best first; returned in the
    Ranking); candidate_coarse [Q, k] their S_V; store_rows [Q, k] the store rows holding their
    features (default: candidate_ids). Ties keep recall order.
    """
    if method not in METHODS:
        raise ValueError(f"unknown rerank method {method!r}; choose from {METHODS}")
    store_rows = candidate_ids if store_rows is None else store_rows
    if "S_Ps" in needed_scores(weights):
        method = "gather"
    num_queries, k = candidate_ids.shape
    per_query = k * store.dims.num_frames * store.dims.num_patches
    if method == "gather":  # the gathered [Q, k, T*P, D] float32 patches bound the block
        per_query *= store.dims.embed_dim
    block = max(1, min(RERANK_QUERIES, BLOCK_ELEMENTS // max(1, per_query)))
    parts = []
    for start in range(0, num_queries, block):
        rows = slice(start, start + block)
        if method == "gather":
            frame, context, patch, mask = store.gather(store_rows[rows])
            parts.append(rerank_candidates(text[rows], candidate_ids[rows], candidate_coarse[rows],
                                           frame, context, patch, mask, params, config, weights))
        else:
            with _single_thread():
                parts.append(_grouped_block(text[rows].float(), candidate_ids[rows],
                                            candidate_coarse[rows], store_rows[rows], store,
                                            params, config, weights))
    return Ranking.cat(parts)


def _grouped_block(text: torch.Tensor, candidate_ids: torch.Tensor, candidate_coarse: torch.Tensor,
                   store_rows: torch.Tensor, store: FineStore, params: ScoreParams,
                   config: ScoreConfig, weights: RerankWeights) -> Ranking:
    num_queries, k = candidate_ids.shape
    t, d = store.dims.num_frames, store.dims.embed_dim
    n = t * store.dims.num_patches
    flat_rows = store_rows.reshape(-1).cpu().numpy().astype(np.int64)
    if flat_rows.size and (flat_rows.min() < 0 or flat_rows.max() >= len(store)):
        raise IndexError(f"fine store rows out of range [0, {len(store)})")
    pair_query = np.repeat(np.arange(num_queries), k)
    videos, pair_video = np.unique(flat_rows, return_inverse=True)
    order = np.argsort(pair_video, kind="stable")  # pairs grouped by video
    bounds = np.searchsorted(pair_video[order], np.arange(videos.size + 1))

    pairs = num_queries * k
    frame_sims = torch.empty(pairs, t)
    context_sims = torch.empty(pairs, t)
    context_gram = torch.empty(pairs, t, t)
    patch_sims = torch.empty(pairs, n)
    mask = torch.empty(pairs, t, dtype=torch.bool)
    codec = store.codec("patch")
    width = min(_VIDEO_CHUNK, videos.size)
    patch32 = torch.empty(width, n, d)  # reused buffers: fresh pages cost more than the copy
    patch16 = np.empty((width, n, d), dtype=np.float16) if codec is None else None
    for first in range(0, videos.size, _VIDEO_CHUNK):
        last = min(first + _VIDEO_CHUNK, videos.size)
        chunk = videos[first:last]
        members = order[bounds[first]:bounds[last]]           # pair ids, grouped by video
        local = torch.from_numpy(pair_video[members] - first)  # their video within the chunk
        counts = np.diff(bounds[first:last + 1])
        slot = torch.from_numpy(np.arange(members.size) - np.repeat(bounds[first:last] -
                                                                    bounds[first], counts))
        members_t = torch.from_numpy(members)
        texts = text[torch.from_numpy(pair_query[members])]   # [m, D]
        # Each video's queries, padded to the chunk's largest group: [c, g, D].
        grouped = torch.zeros(chunk.size, int(counts.max()), d)
        grouped[local, slot] = texts

        if codec is not None and codec.scores_on_codes and grouped.shape[1] <= _LUT_MAX_GROUP:
            sims = _lookup_similarities(codec, store.read("patch", chunk), grouped)
        else:
            patches = _read_patches(store, chunk, codec, patch16, patch32[:chunk.size])
            in_space = grouped if codec is None else codec.to_code_space(grouped)
            sims = torch.bmm(in_space, patches.transpose(1, 2))
        patch_sims[members_t] = sims[local, slot]
        frame = store.read_float("frame", chunk)
        context = store.read_float("context", chunk)
        frame_sims[members_t] = torch.bmm(grouped, frame.transpose(1, 2))[local, slot]
        context_sims[members_t] = torch.bmm(grouped, context.transpose(1, 2))[local, slot]
        context_gram[members_t] = (context @ context.transpose(1, 2))[local]
        mask[members_t] = torch.from_numpy(store.read("mask", chunk))[local]

    fine = fine_scores_from_similarities(
        frame_sims=frame_sims.view(num_queries, k, t),
        context_sims=context_sims.view(num_queries, k, t),
        context_gram=context_gram.view(num_queries, k, t, t),
        patch_sims=patch_sims.view(num_queries, k, n),
        pool_patches=None,  # S_Ps takes the gather path (see rerank_from_store)
        mask=mask.view(num_queries, k, t), params=params, config=config,
        scores=needed_scores(weights))
    fine["S_V"] = candidate_coarse.float()
    return rank_candidates(candidate_ids, fine, weights)


def _read_patches(store: FineStore, chunk: np.ndarray, codec: VectorCodec | None,
                  raw16: np.ndarray | None, out: torch.Tensor) -> torch.Tensor:
    """float32 patches of the store rows `chunk` into `out` [c, n, D]: float16 rows converted
    (read through the [>= c, n, D] buffer `raw16`), or codes decoded in one call, in the
    codec's code space (score them against `codec.to_code_space` queries)."""
    if codec is None:
        assert raw16 is not None
        return out.copy_(torch.from_numpy(store.read("patch", chunk, out=raw16[:len(chunk)])))
    codes = store.read("patch", chunk)
    codec.decode_code_space(codes.reshape(-1, codec.code_size),
                            out=out.view(-1, out.shape[-1]).numpy())
    return out


def _lookup_similarities(codec: VectorCodec, codes: np.ndarray,
                         grouped: torch.Tensor) -> torch.Tensor:
    """s·p_n of each video's queries against its PQ-coded patches, on the codes: per-query
    lookup tables (s_m · centroid) summed over the sub-quantizers. codes [c, n, M] uint8,
    grouped [c, g, D] -> [c, g, n]. Costs g·M lookups per patch (see _LUT_MAX_GROUP)."""
    c, g, d = grouped.shape
    n = codes.shape[1]
    tables = codec.query_tables(grouped.reshape(c * g, d)).view(c, g, -1)
    offsets = codec.code_offsets(codes).view(c, 1, -1).expand(c, g, -1)
    return torch.gather(tables, 2, offsets).view(c, g, n, -1).sum(-1)
