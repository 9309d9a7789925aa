"""Retrieval metrics (method §8.4): text-to-video and video-to-text R@1/5/10, MdR, MnR.

Definitions (as the official `compute_metrics`, t2v):
- rank r of a query = 0-based position of its ground-truth video in the query's output order;
- R@K = 100 · mean(r < K);  MdR = median(r + 1) with torch.median semantics (the *lower* of the
  two middle values for an even count);  MnR = mean(r + 1).

Project decisions (documented, deterministic):
- Ties: the rank is the position in the output order as written; the ranking jobs break score ties
  deterministically (stable sort: recall order, then row order), so equal scores never make a
  rank ambiguous here. (The official double argsort breaks ties by its sort's order too.)
- Several ground-truth videos for one query: the query's rank is that of its best-ranked
  ground-truth video (any correct video counts as a hit).
- A ground-truth video absent from a truncated output (top-N lists) is *censored*: it gets rank
  N (one past the list), so R@K stays exact for K <= N while MdR and MnR become lower bounds; the
  count is reported as `censored`.

Video-to-text (`video_to_text_metrics`), as the official code's multi-sentence layout computes it
(`tensor_video_to_text_sim` + `compute_metrics`): a caption-by-video score matrix is grouped by
each caption's own video, the group score of video b against caption set g is the max over g's
captions, and each video ranks the caption sets (one per video); rank = number of caption sets
scoring strictly higher than its own (the official first match). The official code appends one
extra entry per tie; here every video counts once and the number of videos with a tie is reported
as `ties`. MdR follows the official `compute_metrics`: `np.median` (mean of the two middle values).
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np

RECALL_AT = (1, 5, 10)


def lower_median(values: np.ndarray) -> float:
    """Median with torch.median semantics: the lower middle element for an even count."""
    ordered = np.sort(np.asarray(values, dtype=np.float64))
    if ordered.size == 0:
        raise ValueError("median of an empty set")
    return float(ordered[(ordered.size - 1) // 2])


def query_rank(ordered_video_ids: Sequence[str], relevant: Iterable[str]) -> tuple[int, bool]:
    """(0-based rank of the best-ranked relevant video, censored?) for one query's output order.

    If no relevant video is in the list, the rank is len(list) and censored is True.
    """
    relevant = set(relevant)
    for position, video_id in enumerate(ordered_video_ids):
        if video_id in relevant:
            return position, False
    return len(ordered_video_ids), True


def metrics_from_ranks(ranks: Sequence[int] | np.ndarray, censored: int = 0,
                       recall_at: Sequence[int] = RECALL_AT,
                       lower: bool = True) -> dict[str, float]:
    """R@K (percent), MdR, MnR from 0-based ranks [Q]; `censored` ranks are lower bounds.

    MdR is the lower median (torch.median, the official t2v) or, with `lower=False`, np.median
    (the official `compute_metrics`, used for v2t).
    """
    ranks = np.asarray(ranks, dtype=np.int64)
    if ranks.size == 0:
        raise ValueError("no ranks to evaluate (no query has ground truth)")
    out: dict[str, float] = {f"R@{k}": float(100.0 * np.mean(ranks < k)) for k in recall_at}
    out["MdR"] = lower_median(ranks + 1) if lower else float(np.median(ranks + 1))
    out["MnR"] = float(np.mean(ranks + 1))
    out["num_queries"] = int(ranks.size)
    out["censored"] = int(censored)
    return out


def ranks_for_queries(
    orders: Mapping[str, Sequence[str]], truth: Mapping[str, Iterable[str]]
) -> tuple[dict[str, int], int]:
    """0-based rank per query present in both `orders` (query -> video ids in output order)
    and `truth` (query -> relevant video ids); returns (ranks, number censored)."""
    ranks: dict[str, int] = {}
    censored = 0
    for query_id, relevant in truth.items():
        if query_id not in orders:
            continue
        rank, cut = query_rank(orders[query_id], relevant)
        ranks[query_id] = rank
        censored += cut
    return ranks, censored


def recall_curve(ranks: Sequence[int] | np.ndarray, ks: Sequence[int]) -> list[float]:
    """R@K in percent for every K in `ks` (for the recall@K plot)."""
    ranks = np.asarray(ranks, dtype=np.int64)
    return [float(100.0 * np.mean(ranks < k)) for k in ks]


def ranks_from_scores(scores: np.ndarray, targets: Sequence[int]) -> np.ndarray:
    """0-based ranks of column targets[i] in row i of a dense score matrix [C, B], descending,
    ties broken by column index (a stable sort): the dense reference used in tests."""
    scores = np.asarray(scores)
    order = np.argsort(-scores, axis=1, kind="stable")
    positions = np.argsort(order, axis=1, kind="stable")
    return positions[np.arange(scores.shape[0]), np.asarray(targets)]


def video_to_text_ranks(scores: np.ndarray, caption_video: Sequence[int] | np.ndarray
                        ) -> tuple[np.ndarray, int]:
    """0-based v2t rank per video and the number of videos whose own caption set ties another.

    scores [C, V]: caption c against video b (any score: coarse, reranked or the official hybrid);
    caption_video [C]: the index (0..V-1) of each caption's own video; every video needs at least
    one caption. Group matrix G[g, b] = max over captions c of video g of scores[c, b] ([V, V]);
    video b's rank = #{g : G[g, b] > G[b, b]}.
    """
    scores = np.asarray(scores, dtype=np.float64)
    caption_video = np.asarray(caption_video, dtype=np.int64)
    if scores.ndim != 2 or caption_video.shape != (scores.shape[0],):
        raise ValueError(f"scores must be [C, V] and caption_video [C]; got {scores.shape} and "
                         f"{caption_video.shape}")
    num_videos = scores.shape[1]
    if caption_video.size and (caption_video.min() < 0 or caption_video.max() >= num_videos):
        raise ValueError("caption_video holds indices outside 0..V-1")
    without = np.setdiff1d(np.arange(num_videos), caption_video)
    if without.size:
        raise ValueError(f"{without.size} videos have no caption (e.g. column {int(without[0])}); "
                         "v2t needs every video's captions")
    grouped = np.full((num_videos, num_videos), -np.inf)
    np.maximum.at(grouped, caption_video, scores)
    return video_to_text_ranks_grouped(grouped)


def video_to_text_ranks_grouped(grouped: np.ndarray) -> tuple[np.ndarray, int]:
    """v2t ranks and ties (as `video_to_text_ranks`) from the grouped matrix G [V, V]:
    G[g, b] = max over the captions of video g of their score against video b."""
    grouped = np.asarray(grouped, dtype=np.float64)
    if grouped.ndim != 2 or grouped.shape[0] != grouped.shape[1]:
        raise ValueError(f"grouped scores must be [V, V]; got {grouped.shape}")
    by_video = grouped.T  # [V videos, V caption sets]
    own = np.diag(by_video)[:, None]
    ranks = (by_video > own).sum(axis=1)
    ties = int(((by_video == own).sum(axis=1) > 1).sum())
    return ranks, ties


def video_to_text_metrics(scores: np.ndarray, caption_video: Sequence[int] | np.ndarray
                          ) -> dict[str, float]:
    """v2t R@1/5/10, MdR (np.median), MnR over videos, with `ties` (see video_to_text_ranks)."""
    ranks, ties = video_to_text_ranks(scores, caption_video)
    out = metrics_from_ranks(ranks, lower=False)
    out["ties"] = ties
    return out


def video_to_text_metrics_grouped(grouped: np.ndarray) -> dict[str, float]:
    """`video_to_text_metrics` from the grouped matrix G [V, V] (see video_to_text_ranks_grouped):
    what a streaming reader accumulates without the [C, V] caption matrix."""
    ranks, ties = video_to_text_ranks_grouped(grouped)
    out = metrics_from_ranks(ranks, lower=False)
    out["ties"] = ties
    return out
