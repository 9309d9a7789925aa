"""`--fine-codec auto`: pick the smallest fine codec whose held-out rerank fidelity meets a target.

Each candidate spec (frame/context/patch codecs, see `eercf_core.index.codecs`) is trained on the
training sample and judged on a disjoint held-out sample with `measure_fidelity` (top-10 agreement
of the rerank order against float16). Candidates are tried from the fewest bytes per video up;
the first whose mean top-10 agreement reaches `min_agreement` is kept (it is the smallest that
does), candidates above the byte budget are skipped, and float16 is kept when none meets the
target. Every candidate, tried or skipped, is recorded with its bytes per video and (if tried)
its agreement, score errors and training time.

The default candidates, sized to D (shown at D = 512, frame/context SQ8 = 512 B per vector):
patch PQ32 < PQ64 < OPQ64,PQ64 < IVF1024,PQ64 (a coarse centroid id + PQ of the residual, the
ColBERTv2/PLAID layout) < OPQ64,IVF1024,PQ64 < PQ128 < IVF1024,PQ128 < SQ4 < SQ8 everywhere.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from eercf_core.errors import UserInputError
from eercf_core.index.codecs import (
    CODED_KINDS,
    DEFAULT_TRAIN_VECTORS,
    FP16,
    FineCodecSpec,
    VectorCodec,
    train_codecs,
)
from eercf_core.index.fidelity import measure_fidelity, round_trip
from eercf_core.index.store import bytes_per_video
from eercf_core.model.features import VideoFeatures
from eercf_core.scoring.scores import ScoreParams
from schemas import FeatureDims

log = logging.getLogger(__name__)

AUTO = "auto"
DEFAULT_MIN_AGREEMENT = 0.95
# Templates: {d2} = D/2, {d4} = D/4, {d8} = D/8, {d16} = D/16 sub-quantizers (bytes per vector);
# {nlist} = the coarse quantizer's centroids of the residual codecs.
_FRAMES = "frame=SQ8,context=SQ8"
CANDIDATE_TEMPLATES = (
    f"patch=PQ{{d16}},{_FRAMES}",
    f"patch=PQ{{d8}},{_FRAMES}",
    f"patch=OPQ{{d8}},PQ{{d8}},{_FRAMES}",
    f"patch=IVF{{nlist}},PQ{{d8}},{_FRAMES}",
    f"patch=OPQ{{d8}},IVF{{nlist}},PQ{{d8}},{_FRAMES}",
    f"patch=PQ{{d4}},{_FRAMES}",
    f"patch=IVF{{nlist}},PQ{{d4}},{_FRAMES}",
    f"patch=SQ4,{_FRAMES}",
    "SQ8",
)


def is_auto(text: str | None) -> bool:
    """Whether a --fine-codec value asks for automatic selection."""
    return text is not None and text.strip().lower() == AUTO


def residual_lists(train_vectors: int) -> int:
    """Coarse centroids of the residual candidates: 1024, fewer when the sample is small (FAISS
    wants >= 39 training vectors per centroid), at least 16."""
    return int(max(16, min(1024, 2 ** int(np.log2(max(1, train_vectors // 39))))))


def default_candidates(embed_dim: int, train_vectors: int = DEFAULT_TRAIN_VECTORS) -> list[str]:
    """The candidate specs for vectors of `embed_dim` (PQ sub-quantizer counts that divide it)."""
    specs = []
    sizes = {f"d{n}": embed_dim // n for n in (2, 4, 8, 16)}
    for template in CANDIDATE_TEMPLATES:
        needed = [key for key in sizes if f"{{{key}}}" in template]
        if any(sizes[key] < 1 or embed_dim % sizes[key] for key in needed):
            continue
        spec = template.format(nlist=residual_lists(train_vectors), **sizes)
        if spec not in specs:
            specs.append(spec)
    return specs


def spec_bytes_per_video(spec: FineCodecSpec, dims: FeatureDims) -> int:
    """Bytes one video takes in a store with codec `spec` (codes sized without training)."""
    sizes = {kind: VectorCodec(spec.codec(kind), dims.embed_dim, kind=kind).code_size
             for kind in CODED_KINDS if spec.codec(kind) != FP16}
    return bytes_per_video(dims, sizes)


@dataclass
class Selection:
    """The outcome of `select_codec`: the kept spec, its trained codecs and the manifest record."""

    spec: FineCodecSpec
    codecs: dict[str, VectorCodec]
    record: dict = field(default_factory=dict)
    fidelity: dict | None = None  # measure_fidelity of the kept spec (None: float16 kept)


def select_codec(train: VideoFeatures, held_out: VideoFeatures, queries: torch.Tensor,
                 params: ScoreParams, dims: FeatureDims,
                 min_agreement: float = DEFAULT_MIN_AGREEMENT,
                 max_bytes_per_video: int | None = None,
                 candidates: Sequence[str] | None = None,
                 train_vectors: int = DEFAULT_TRAIN_VECTORS, seed: int = 0,
                 try_all: bool = False,
                 text_queries: tuple[torch.Tensor, ScoreParams] | None = None) -> Selection:
    """Keep the smallest candidate whose held-out top-10 agreement reaches `min_agreement`.

    train, held_out: VideoFeatures of disjoint video samples (float16/32, [B, ...]); queries
    [Q, D] fidelity queries (unit vectors); params: the score parameters the fidelity uses.
    `max_bytes_per_video` skips candidates above that many store bytes per video (float16 is
    kept regardless when nothing meets the target: a store that cannot prove its fidelity is
    never coded). `try_all` measures every candidate within the budget (the bytes-vs-agreement
    curve) instead of stopping at the first that meets the target; the kept spec is the same.
    `text_queries` (text vectors [Q', D] of a model and its score parameters) are a second
    fidelity measure: a candidate then meets the target only if both agreements reach it.
    Returns the Selection; its record lists every candidate.
    """
    if not 0.0 < min_agreement <= 1.0:
        raise UserInputError(f"--min-agreement {min_agreement}: must be in (0, 1]")
    if max_bytes_per_video is not None and max_bytes_per_video < 1:
        raise UserInputError(f"--max-bytes-per-video {max_bytes_per_video}: must be >= 1")
    texts = list(candidates) if candidates is not None else default_candidates(
        dims.embed_dim, min(train_vectors, train.num_videos * dims.num_frames * dims.num_patches))
    if not texts:
        raise UserInputError("--fine-codec auto: no candidate codecs")
    specs = [FineCodecSpec.parse(text) for text in texts]
    for spec in specs:
        spec.validate(dims.embed_dim)
    sized = sorted(((spec_bytes_per_video(spec, dims), i, spec) for i, spec in enumerate(specs)),
                   key=lambda item: item[:2])
    samples = {kind: getattr(train, kind).numpy() for kind in CODED_KINDS}
    rows: list[dict] = []
    chosen: tuple[FineCodecSpec, dict[str, VectorCodec], dict | None] | None = None
    for size, _, spec in sized:
        row: dict = {"codec": str(spec), "bytes_per_video": size}
        rows.append(row)
        if chosen is not None and not try_all:
            row["skipped"] = "a smaller candidate met the target"
            continue
        if max_bytes_per_video is not None and size > max_bytes_per_video:
            row["skipped"] = f"over the budget of {max_bytes_per_video} B/video"
            continue
        start = time.perf_counter()
        try:
            codecs = train_codecs(spec, samples, dims.embed_dim, train_vectors, seed)
        except UserInputError as exc:  # e.g. fewer sample vectors than a PQ's 256 centroids
            row["skipped"] = f"training failed: {exc}"
            log.warning("auto codec candidate %s skipped: %s", spec, exc)
            continue
        trained = time.perf_counter() - start
        decoded = round_trip(held_out, codecs)
        fidelity = measure_fidelity(held_out, decoded, queries, params)
        meets = fidelity["top10_agreement"] >= min_agreement
        if text_queries is not None:
            text = measure_fidelity(held_out, decoded, *text_queries)
            text["query_source"] = "text queries encoded by the model"
            fidelity["text"] = text
            row.update(text_top10_agreement=text["top10_agreement"],
                       text_top10_agreement_min=text["top10_agreement_min"],
                       text_score_errors_mean_abs={name: error["mean_abs"] for name, error
                                                   in text["score_errors"].items()})
            meets = meets and text["top10_agreement"] >= min_agreement
        row.update(top10_agreement=fidelity["top10_agreement"],
                   top10_agreement_min=fidelity["top10_agreement_min"],
                   score_errors_mean_abs={name: error["mean_abs"] for name, error
                                          in fidelity["score_errors"].items()},
                   final_neighbour_gap_mean_top10=fidelity["final_neighbour_gap_mean_top10"],
                   meets_target=meets,
                   seconds={"train": round(trained, 3),
                            "fidelity": round(time.perf_counter() - start - trained, 3)})
        log.info("auto codec candidate %s: %d B/video, held-out top-10 agreement %.4f (target "
                 "%.3f)", spec, size, fidelity["top10_agreement"], min_agreement)
        if row["meets_target"] and chosen is None:
            chosen = (spec, codecs, fidelity)
    if chosen is None:
        log.warning("--fine-codec auto: no candidate reached top-10 agreement %.3f%s; keeping "
                    "float16", min_agreement,
                    "" if max_bytes_per_video is None else f" within {max_bytes_per_video} B/video")
        chosen = (FineCodecSpec.parse(FP16), {}, None)
    spec, codecs, kept = chosen
    record = {"mode": AUTO, "min_agreement": min_agreement,
              "max_bytes_per_video": max_bytes_per_video, "chosen": str(spec),
              "met_target": kept is not None, "candidates": rows}
    return Selection(spec, codecs, record, kept)
