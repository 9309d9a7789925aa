"""Search an opened index directory (method §8.3): two-stage, recall-only or exhaustive.

- two-stage: recall max(k, top_n) videos per query by S_V from FAISS, rerank the first k with
  fine features read from the store (random access); positions after k follow in coarse order
  (the order `ec.two_stage_rank` gives on in-memory features).
- recall-only: the coarse order, top-n by S_V straight from FAISS.
- exhaustive: fine-score every video and rank all by the rerank score (the costly reference;
  `ec.exhaustive_rank` on blocks of videos read from the store).
"""
from __future__ import annotations

import logging
import time

import numpy as np
import torch

from eercf_core.config import RerankWeights, ScoreConfig
from eercf_core.errors import UserInputError
from eercf_core.index import list_search, recall
from eercf_core.index.directory import IndexDirectory
from eercf_core.index.rerank import rerank_from_store
from eercf_core.scoring.ranking import (
    Ranking,
    pair_rerank_scores,
    rank_all,
    truncate,
    with_coarse_tail,
)
from eercf_core.scoring.scores import ScoreParams, recall_queries

log = logging.getLogger(__name__)
# Videos whose fine features are converted to float32 at once in exhaustive (≈300 MB at B/32).
EXHAUSTIVE_BLOCK = 256
DEFAULT_BATCH_SIZE = 256
MAX_LIST_BATCH_SIZE = 16_384
MODES = ("two-stage", "recall-only", "exhaustive")


# Estimated bytes per ranked row of a block (FAISS ids + scores, the torch ranking tensors and
# the Python rows the writer formats) and per (query, video) pair of an exhaustive block
# ([Q, N] rerank and coarse scores plus the sort); measured order of magnitude, not a bound.
BYTES_PER_RANKED_ROW = 250
BYTES_PER_EXHAUSTIVE_PAIR = 32
DEFAULT_BLOCK_MEMORY = 4 << 30


def default_batch_size(index: IndexDirectory, mode: str) -> int:
    """Queries per block when `--batch-size` is not given: DEFAULT_BATCH_SIZE, except that a
    recall from on-disk IVF lists (>= 1M videos) takes blocks large enough to be searched list by
    list (`list_search.batch_size`, at most MAX_LIST_BATCH_SIZE): each list is then read once per
    block instead of once per probing query, which keeps a worker whose page cache cannot hold the
    lists from re-reading them for every query."""
    faiss_index = index.index
    if mode == "exhaustive" or not recall.has_on_disk_lists(faiss_index) \
            or not list_search.supports(faiss_index):
        return DEFAULT_BATCH_SIZE
    return max(DEFAULT_BATCH_SIZE, min(MAX_LIST_BATCH_SIZE, list_search.batch_size(faiss_index)))


def block_memory(mode: str, batch_size: int, recall_k: int, top_n: int, num_videos: int) -> int:
    """Estimated peak bytes to rank one block of `batch_size` queries: rows recalled per query
    (max(k, top_n), capped at N) for two-stage / recall-only, every pair for exhaustive."""
    depth = min(max(recall_k, top_n) if mode == "two-stage" else top_n, num_videos)
    bytes_ = batch_size * depth * BYTES_PER_RANKED_ROW
    if mode == "exhaustive":  # the running top-n merged with one block of videos at a time
        pairs = min(top_n, num_videos) + min(EXHAUSTIVE_BLOCK, num_videos)
        bytes_ += batch_size * pairs * BYTES_PER_EXHAUSTIVE_PAIR
    return bytes_


def check_block_memory(mode: str, batch_size: int, recall_k: int, top_n: int, num_videos: int,
                       budget: int = DEFAULT_BLOCK_MEMORY) -> int:
    """Refuse up front (UserInputError naming the memory it would need and the largest
    --batch-size that fits) a block that would not fit in `budget` bytes; returns the estimate.
    `--top-n 0` (all videos) and `--exhaustive` grow with the corpus: at 10M videos one query
    needs ~2.5 GB of ranked rows."""
    need = block_memory(mode, batch_size, recall_k, top_n, num_videos)
    if need <= budget:
        return need
    per_query = block_memory(mode, 1, recall_k, top_n, num_videos)
    fits = budget // per_query
    hint = (f"lower --batch-size to {fits} or below" if fits >= 1 else
            "not even one query fits: lower --top-n (0 = every video)")
    raise UserInputError(
        f"{mode} with --top-n {top_n} over {num_videos:,} videos needs an estimated "
        f"{need / 2**30:.1f} GiB per block of --batch-size {batch_size} queries "
        f"({per_query / 2**20:.1f} MiB per query), over the {budget / 2**30:.1f} GiB block "
        f"memory limit (--max-block-memory); {hint}")


def _recall(index: IndexDirectory, text: torch.Tensor, params: ScoreParams, depth: int
            ) -> tuple[torch.Tensor, torch.Tensor]:
    """(video rows [Q, depth] long, their S_V [Q, depth]) from the FAISS recall index."""
    scores, rows = recall.search(index.index, recall_queries(text, params).numpy(), depth)
    return torch.from_numpy(rows), torch.from_numpy(scores)


def two_stage(index: IndexDirectory, text: torch.Tensor, params: ScoreParams, k: int,
              top_n: int, weights: RerankWeights = RerankWeights(),
              config: ScoreConfig = ScoreConfig(), method: str = "grouped") -> Ranking:
    """Recall max(k, top_n) by S_V from FAISS, rerank the first k from the store: [Q, top_n]."""
    depth = min(max(k, top_n), index.index.ntotal)
    k = min(k, depth)
    ids, coarse = _recall(index, text, params, depth)
    head = rerank_from_store(text, ids[:, :k], coarse[:, :k], index.store, params, config, weights,
                             method=method)
    return truncate(with_coarse_tail(head, ids[:, k:], coarse[:, k:]), top_n)


def recall_only(index: IndexDirectory, text: torch.Tensor, params: ScoreParams,
                top_n: int) -> Ranking:
    """The coarse order: top-n by S_V straight from FAISS: [Q, top_n]."""
    ids, coarse = _recall(index, text, params, top_n)
    return Ranking(ids, coarse, coarse, torch.zeros_like(ids, dtype=torch.bool))


def exhaustive(index: IndexDirectory, text: torch.Tensor, params: ScoreParams, top_n: int,
               weights: RerankWeights = RerankWeights(), config: ScoreConfig = ScoreConfig(),
               num_videos: int | None = None) -> Ranking:
    """Fine scores for every (query, video) pair, all videos ranked by the rerank score.

    Same scores and tie rule as `ec.exhaustive_rank` (rerank score descending, then S_V
    descending, then video row), computed in blocks of EXHAUSTIVE_BLOCK videos read from the
    store (the first `num_videos`, default all) and merged into a running top-n after each
    block, so memory is O(Q · (top_n + EXHAUSTIVE_BLOCK)), not O(Q · N): [Q, top_n].
    """
    num_videos = num_videos or len(index.store)
    top_n = min(top_n, num_videos)
    if top_n == num_videos:  # every video is written: one sort at the end (a running merge
        return _exhaustive_all(index, text, params, weights, config, num_videos)  # re-sorts)
    best: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None  # rows, final, coarse
    start = time.perf_counter()
    for begin in range(0, num_videos, EXHAUSTIVE_BLOCK):
        rows = np.arange(begin, min(begin + EXHAUSTIVE_BLOCK, num_videos))
        final, coarse = pair_rerank_scores(text, index.store.features(rows), params, config,
                                           weights)
        block_rows = torch.from_numpy(rows).expand(final.shape[0], -1)
        if best is not None:
            block_rows = torch.cat([best[0], block_rows], 1)
            final = torch.cat([best[1], final], 1)
            coarse = torch.cat([best[2], coarse], 1)
            by_row = torch.sort(block_rows, dim=1, stable=True).indices  # ties break by row
            block_rows, final, coarse = (t.gather(1, by_row) for t in (block_rows, final, coarse))
        merged = rank_all(final, coarse, top_n)
        best = (block_rows.gather(1, merged.indices), merged.scores, merged.coarse_scores)
        if (begin // EXHAUSTIVE_BLOCK) % 20 == 19:
            log.info("exhaustive: %d/%d videos, %.0f pairs/s", rows[-1] + 1, num_videos,
                     (rows[-1] + 1) * len(text) / (time.perf_counter() - start))
    assert best is not None, "an index holds at least one video"
    return Ranking(best[0], best[1], best[2], torch.ones_like(best[0], dtype=torch.bool))


def _exhaustive_all(index: IndexDirectory, text: torch.Tensor, params: ScoreParams,
                    weights: RerankWeights, config: ScoreConfig, num_videos: int) -> Ranking:
    """`exhaustive` with every video written ([Q, N] scores held: check_block_memory bounds it)."""
    final_parts, coarse_parts = [], []
    for begin in range(0, num_videos, EXHAUSTIVE_BLOCK):
        rows = np.arange(begin, min(begin + EXHAUSTIVE_BLOCK, num_videos))
        final, coarse = pair_rerank_scores(text, index.store.features(rows), params, config,
                                           weights)
        final_parts.append(final)
        coarse_parts.append(coarse)
    return rank_all(torch.cat(final_parts, 1), torch.cat(coarse_parts, 1), num_videos)


def rank(index: IndexDirectory, text: torch.Tensor, params: ScoreParams, mode: str, k: int,
         top_n: int, weights: RerankWeights = RerankWeights(),
         config: ScoreConfig = ScoreConfig(), method: str = "grouped") -> Ranking:
    """Rank the indexed videos for text features [Q, D] in one of MODES: [Q, top_n]."""
    if mode == "two-stage":
        return two_stage(index, text, params, k, top_n, weights, config, method)
    if mode == "recall-only":
        return recall_only(index, text, params, top_n)
    if mode == "exhaustive":
        return exhaustive(index, text, params, top_n, weights, config)
    raise ValueError(f"unknown search mode {mode!r}; choose from {MODES}")
