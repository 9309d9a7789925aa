"""Two-stage ranking (method §8.3), done for real: recall top-k by S_V, fine-score only those k.

Final order per query: the k recalled videos ordered by the rerank score, then every other video
in coarse (S_V) order. This equals the official "+100 on the top-k block" simulation exactly,
without
relying on S_V < 100.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from eercf_core.config import BLOCK_ELEMENTS, RECALL_K, RerankWeights, ScoreConfig
from eercf_core.model.features import VideoFeatures
from eercf_core.scoring.scores import (
    ScoreParams,
    candidate_fine_scores,
    coarse_scores,
    fine_scores,
    needed_scores,
    rerank_score,
)

if TYPE_CHECKING:
    from eercf_core.model.network import EercfModel


@dataclass
class Ranking:
    """Ranked videos per query (n = top_n, or all videos).

    indices:       [Q, n] long, video rows in final order
    scores:        [Q, n] the rerank score inside the reranked block, S_V after it
    coarse_scores: [Q, n] S_V of each ranked video
    reranked:      [Q, n] bool, True inside the reranked block
    """

    indices: torch.Tensor
    scores: torch.Tensor
    coarse_scores: torch.Tensor
    reranked: torch.Tensor

    @staticmethod
    def cat(parts: list[Ranking]) -> Ranking:
        return Ranking(*(torch.cat([getattr(p, f) for p in parts]) for f in
                         ("indices", "scores", "coarse_scores", "reranked")))


def _params_of(model_or_params: EercfModel | ScoreParams) -> ScoreParams:
    if isinstance(model_or_params, ScoreParams):
        return model_or_params
    return model_or_params.score_params


def sort_descending(scores: torch.Tensor) -> torch.Tensor:
    """Indices sorting each row descending; ties keep their input order (stable)."""
    return torch.sort(scores, dim=-1, descending=True, stable=True).indices


def order_by_rerank_score(final: torch.Tensor, coarse: torch.Tensor) -> torch.Tensor:
    """[Q, n] positions ordering each row by `final` descending, ties broken by coarse order."""
    coarse_order = sort_descending(coarse)
    return coarse_order.gather(1, sort_descending(final.gather(1, coarse_order)))


def rank_candidates(candidate_ids: torch.Tensor, scores: dict[str, torch.Tensor],
                    weights: RerankWeights = RerankWeights()) -> Ranking:
    """Order candidates (recall order, [Q, k]) by the rerank mix of `scores` (S_V included).

    Ties keep recall order. Shared by every rerank path so they all rank identically.
    """
    final = rerank_score(scores, weights)
    order = sort_descending(final)
    return Ranking(
        indices=candidate_ids.gather(1, order),
        scores=final.gather(1, order),
        coarse_scores=scores["S_V"].gather(1, order),
        reranked=torch.ones_like(order, dtype=torch.bool),
    )


def rerank_candidates(
    text: torch.Tensor,
    candidate_ids: torch.Tensor,
    candidate_coarse: torch.Tensor,
    frame: torch.Tensor,
    context: torch.Tensor,
    patch: torch.Tensor,
    mask: torch.Tensor,
    params: ScoreParams,
    config: ScoreConfig = ScoreConfig(),
    weights: RerankWeights = RerankWeights(),
) -> Ranking:
    """Order each query's k recalled candidates by the rerank score.

    text [Q, D]; candidate_ids [Q, k] (in recall order, best first); candidate_coarse [Q, k] their
    S_V; frame, context [Q, k, T, D], patch [Q, k, T*P, D], mask [Q, k, T]: their fine features.
    Ties in the rerank score keep recall order.
    """
    fine = candidate_fine_scores(text, frame, context, patch, mask, params, config,
                                 scores=needed_scores(weights))
    fine["S_V"] = candidate_coarse.float()
    return rank_candidates(candidate_ids, fine, weights)


@torch.no_grad()
def two_stage_rank(
    model_or_params: EercfModel | ScoreParams,
    text: torch.Tensor,
    video: VideoFeatures,
    k: int = RECALL_K,
    top_n: int | None = None,
    weights: RerankWeights = RerankWeights(),
    config: ScoreConfig = ScoreConfig(),
) -> Ranking:
    """Recall the top-k videos per caption by S_V, rerank them, the rest follow in S_V order.

    text [C, D] sentence features; video: B videos. Returns the first `top_n` (default all B)
    positions. Fine scores are computed for C·k pairs only.
    """
    if k < 1:
        raise ValueError(f"recall k must be >= 1, got {k}")
    params = _params_of(model_or_params)
    coarse = coarse_scores(text, video.coarse, params)
    order = sort_descending(coarse)
    k = min(k, video.num_videos)
    per_query = k * video.patch.shape[1] * video.embed_dim
    block = max(1, BLOCK_ELEMENTS // max(1, per_query))
    parts = []
    for start in range(0, text.shape[0], block):
        rows = slice(start, start + block)
        ids = order[rows, :k]
        candidates = video.index(ids.reshape(-1))
        q = ids.shape[0]
        parts.append(rerank_candidates(
            text[rows], ids, coarse[rows].gather(1, ids),
            candidates.frame.reshape(q, k, *candidates.frame.shape[1:]),
            candidates.context.reshape(q, k, *candidates.context.shape[1:]),
            candidates.patch.reshape(q, k, *candidates.patch.shape[1:]),
            candidates.mask.reshape(q, k, -1),
            params, config, weights))
    rest_ids = order[:, k:]
    return truncate(with_coarse_tail(Ranking.cat(parts), rest_ids, coarse.gather(1, rest_ids)),
                     top_n)


def with_coarse_tail(head: Ranking, tail_ids: torch.Tensor, tail_coarse: torch.Tensor) -> Ranking:
    """The reranked block `head` [Q, k] followed by videos tail_ids [Q, m] in coarse order, their
    S_V tail_coarse [Q, m] standing as their score: the final two-stage order [Q, k + m]."""
    return Ranking(
        indices=torch.cat([head.indices, tail_ids], dim=1),
        scores=torch.cat([head.scores, tail_coarse], dim=1),
        coarse_scores=torch.cat([head.coarse_scores, tail_coarse], dim=1),
        reranked=torch.cat([head.reranked, torch.zeros_like(tail_ids, dtype=torch.bool)], dim=1),
    )


def pair_rerank_scores(text: torch.Tensor, video: VideoFeatures, params: ScoreParams,
                       config: ScoreConfig, weights: RerankWeights
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """(rerank score, S_V) of every caption-video pair: text [C, D], B videos -> [C, B] each."""
    scores = fine_scores(text, video, params, config, scores=needed_scores(weights))
    scores["S_V"] = coarse_scores(text, video.coarse, params)
    return rerank_score(scores, weights), scores["S_V"]


def rank_all(final: torch.Tensor, coarse: torch.Tensor, top_n: int | None = None) -> Ranking:
    """Every video ranked by the rerank score `final` [Q, B], ties by coarse order (S_V
    `coarse` [Q, B]), as the two-stage ranking breaks them; the first `top_n` positions."""
    order = order_by_rerank_score(final, coarse)
    ranking = Ranking(
        indices=order,
        scores=final.gather(1, order),
        coarse_scores=coarse.gather(1, order),
        reranked=torch.ones_like(order, dtype=torch.bool),
    )
    return truncate(ranking, top_n)


@torch.no_grad()
def exhaustive_rank(
    model_or_params: EercfModel | ScoreParams,
    text: torch.Tensor,
    video: VideoFeatures,
    top_n: int | None = None,
    weights: RerankWeights = RerankWeights(),
    config: ScoreConfig = ScoreConfig(),
) -> Ranking:
    """Rank every video by the rerank score (fine scores for all C·B pairs): the costly
    reference."""
    final, coarse = pair_rerank_scores(text, video, _params_of(model_or_params), config, weights)
    return rank_all(final, coarse, top_n)


def truncate(ranking: Ranking, top_n: int | None) -> Ranking:
    if top_n is None:
        return ranking
    if top_n < 1:
        raise ValueError(f"top_n must be >= 1, got {top_n}")
    return Ranking(*(getattr(ranking, f)[:, :top_n] for f in
                     ("indices", "scores", "coarse_scores", "reranked")))
