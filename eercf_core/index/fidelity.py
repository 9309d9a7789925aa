"""How faithfully a compressed fine store ranks: rerank scores on decoded vs float16 features.

Text queries are not known at build time, so sampled corpus-derived queries stand in for them (as
the recall index's recall vs exact uses sampled corpus vectors): the frame feature of a random
valid frame of a random sample video. Each query recalls its top-k sample videos by S_V (the
coarse vectors are never compressed, so both sides rerank the same candidates), and the rerank
is computed twice, on the reference features and on the codec's decoded features.
"""
from __future__ import annotations

import numpy as np
import torch

from eercf_core.config import RECALL_K, RerankWeights, ScoreConfig
from eercf_core.index.codecs import VectorCodec
from eercf_core.model.features import VideoFeatures
from eercf_core.scoring.scores import (
    FINE_SCORES,
    ScoreParams,
    coarse_scores,
    fine_scores,
    rerank_score,
)

AGREEMENT_TOP = 10


def corpus_queries(video: VideoFeatures, num_queries: int, seed: int = 0) -> torch.Tensor:
    """[num_queries, D] stand-in text queries: a random valid frame feature of random videos."""
    rng = np.random.default_rng(seed)
    videos = rng.integers(0, video.num_videos, num_queries)
    frames = []
    for v in videos:
        valid = np.flatnonzero(video.mask[v].numpy())
        frames.append(int(rng.choice(valid)) if valid.size else 0)
    queries = video.frame[torch.from_numpy(videos), torch.tensor(frames)].float()
    return queries / queries.norm(dim=-1, keepdim=True).clamp_min(1e-12)


def round_trip(video: VideoFeatures, codecs: dict[str, VectorCodec]) -> VideoFeatures:
    """`video` with each kind in `codecs` replaced by decode(encode(.)) (float32): what the rerank
    of a store built with those codecs sees."""
    def coded(kind: str) -> torch.Tensor:
        values = getattr(video, kind)
        codec = codecs.get(kind)
        if codec is None:
            return values
        flat = values.reshape(-1, values.shape[-1]).float().numpy()
        return codec.decode_torch(codec.encode(flat)).view(values.shape)

    return VideoFeatures(coarse=video.coarse, frame=coded("frame"), context=coded("context"),
                         patch=coded("patch"), mask=video.mask)


@torch.no_grad()
def measure_fidelity(reference: VideoFeatures, decoded: VideoFeatures, queries: torch.Tensor,
                     params: ScoreParams, k: int = RECALL_K,
                     weights: RerankWeights = RerankWeights(),
                     config: ScoreConfig = ScoreConfig()) -> dict:
    """Rerank-score errors and top-10 agreement of `decoded` against `reference` features.

    reference, decoded: the same B videos (any float dtype, scored in float32); queries [Q, D].
    Returns per fine score and for the rerank mix ("final") the max and mean absolute error over
    the Q·k candidate pairs (score units, τ included), the mean gap between neighbouring reference
    rerank scores in the top 10 (what an error must stay well below to keep the order), and the
    mean fraction of the reference top-10 (of k) that the decoded top-10 holds.
    """
    k = min(k, reference.num_videos)
    coarse = coarse_scores(queries, reference.coarse, params)
    candidates = torch.sort(coarse, dim=1, descending=True, stable=True).indices[:, :k]
    num_queries = len(queries)

    def scores_of(video: VideoFeatures) -> dict[str, torch.Tensor]:
        # Dense scores over the (small) sample, blockwise over videos; then the candidates'.
        dense = fine_scores(queries, video, params, config, scores=FINE_SCORES)
        out = {name: value.gather(1, candidates) for name, value in dense.items()}
        out["S_V"] = coarse.gather(1, candidates)
        out["final"] = rerank_score(out, weights)
        return out

    ref, dec = scores_of(reference), scores_of(decoded)
    top = min(AGREEMENT_TOP, k)
    ref_order = torch.sort(ref["final"], dim=1, descending=True, stable=True)
    dec_top = torch.sort(dec["final"], dim=1, descending=True, stable=True).indices[:, :top]
    agreement = [len(set(a.tolist()) & set(b.tolist())) / top
                 for a, b in zip(ref_order.indices[:, :top], dec_top)]
    errors = {name: {"max_abs": round(float((dec[name] - ref[name]).abs().max()), 5),
                     "mean_abs": round(float((dec[name] - ref[name]).abs().mean()), 5)}
              for name in (*FINE_SCORES, "final")}
    gaps = -(ref_order.values[:, 1:top] - ref_order.values[:, :top - 1])
    # Keys say top10; with k < 10 candidates the top k (`agreement_top`) is compared.
    return {"queries": num_queries, "videos": reference.num_videos, "k": k, "agreement_top": top,
            "query_source": "random valid frame feature of a random sample video",
            "top10_agreement": round(float(np.mean(agreement)), 4),
            "top10_agreement_min": round(float(np.min(agreement)), 4),
            "score_errors": errors,
            "final_neighbour_gap_mean_top10": round(float(gaps.mean()), 5) if top > 1 else None}
