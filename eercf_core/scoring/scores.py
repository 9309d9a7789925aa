"""The five EERCF similarity scores (method §5, §6), in evaluation form.

Two layouts share one implementation:
- dense: captions [C, D] against every one of B videos -> [C, B] (blockwise over videos);
- candidates: query q against its own k recalled videos, features gathered to [Q, k, ...] -> [Q, k].

Scores (τ = exp(logit_scale), s = sentence feature, all features L2-normalised):
  S_V  = τ · s W_g v                                           coarse / recall
  S_Fw = τ · Σ_t (softmax_t(σ/0.01) W_f)_t σ_t,  σ_t = s·f_t    weak frame (X-CLIP style)
  S_Pw = τ · Σ_n softmax_n(π/0.01)_n π_n,        π_n = s·p_n    weak patch
  S_Fs = τ · s · norm(Σ_t softmax_t(σ/0.1)_t ĥ_t)               frame TIB (text-gated)
  S_Ps = τ · s · norm(Σ_n softmax_n(π/0.01)_n p_n)              patch TIB
The TIB has no parameters. Everything runs in float32.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import torch

from eercf_core.config import BLOCK_ELEMENTS, RerankWeights, ScoreConfig
from eercf_core.model.features import VideoFeatures

FINE_SCORES = ("S_Fw", "S_Fs", "S_Pw", "S_Ps")
ALL_SCORES = ("S_V",) + FINE_SCORES


@dataclass
class ScoreParams:
    """The learned quantities the scores use (views of a model's parameters, or plain tensors).

    logit_scale:        scalar τ, already exponentiated (≈100 for OpenAI CLIP)
    global_weight:      [D, D] W_g of the coarse bilinear score
    frame_logit_weight: [T, T] W_f mixing the frame attention weights in S_Fw
    """

    logit_scale: torch.Tensor
    global_weight: torch.Tensor
    frame_logit_weight: torch.Tensor

    @classmethod
    def identity(cls, embed_dim: int, num_frames: int, logit_scale: float = 100.0) -> ScoreParams:
        """Zero-shot parameters: W_g = I, W_f = I."""
        return cls(torch.tensor(float(logit_scale)), torch.eye(embed_dim), torch.eye(num_frames))

    def detach(self) -> ScoreParams:
        return ScoreParams(self.logit_scale.detach(), self.global_weight.detach(),
                           self.frame_logit_weight.detach())

    def to(self, device: torch.device | str) -> ScoreParams:
        return ScoreParams(self.logit_scale.to(device), self.global_weight.to(device),
                           self.frame_logit_weight.to(device))


def _check_text(text: torch.Tensor, embed_dim: int) -> None:
    if text.ndim != 2 or text.shape[1] != embed_dim:
        raise ValueError(f"text features must be [C, D={embed_dim}], got {tuple(text.shape)}")
    if text.shape[0] == 0:
        raise ValueError("text features are empty (no captions)")


def recall_queries(text: torch.Tensor, params: ScoreParams) -> torch.Tensor:
    """[C, D] query vectors q = τ · s W_g whose inner product with a coarse vector v is S_V."""
    _check_text(text, params.global_weight.shape[0])
    return params.logit_scale * (text.float() @ params.global_weight)


def coarse_scores(text: torch.Tensor, coarse: torch.Tensor, params: ScoreParams) -> torch.Tensor:
    """S_V for every caption-video pair: text [C, D], coarse [B, D] -> [C, B]."""
    return recall_queries(text, params) @ coarse.float().T


def valid_frame_mask(mask: torch.Tensor, config: ScoreConfig) -> torch.Tensor | None:
    """Bool [..., T] of frames that take part in the softmaxes, or None (all of them).

    A video with no valid frame at all falls back to all frames so its scores stay finite.
    """
    if not config.mask_padded_frames:
        return None
    mask = mask.bool()
    if bool(mask.all()):
        return None
    return mask | ~mask.any(dim=-1, keepdim=True)


def _masked_softmax(logits: torch.Tensor, valid: torch.Tensor | None) -> torch.Tensor:
    if valid is not None:
        logits = logits.masked_fill(~valid, float("-inf"))
    return torch.softmax(logits, dim=-1)


def fine_scores_from_similarities(
    frame_sims: torch.Tensor,
    context_sims: torch.Tensor,
    context_gram: torch.Tensor,
    patch_sims: torch.Tensor,
    pool_patches: Callable[[torch.Tensor], torch.Tensor] | None,
    mask: torch.Tensor,
    params: ScoreParams,
    config: ScoreConfig = ScoreConfig(),
    scores: Iterable[str] | None = None,
) -> dict[str, torch.Tensor]:
    """Fine scores from precomputed similarities with leading dims L (= [C, B] or [Q, k]).

    The one implementation of the fine-score formulas: the dense and candidate layouts here, and
    the query job's grouped store rerank, all compute similarities their own way and call this.

    frame_sims   [*L, T]    s·f_t
    context_sims [*L, T]    s·ĥ_t
    context_gram [*L', T, T] ĥ_t·ĥ_u (L' broadcastable to L): |Σ g_t ĥ_t|² = gᵀ G g without
                            materialising the [*L, D] gated vector
    patch_sims   [*L, N]    s·p_n
    pool_patches: gates [*L, N] -> Σ_n g_n p_n [*L, D] (only called for S_Ps; may be None
                  when S_Ps is not asked for)
    mask         [*L', T]   bool frame mask (L' broadcastable to L)
    scores: which of S_Fw, S_Fs, S_Pw, S_Ps to compute (default all).
    """
    which = _which(scores)
    valid_frames = valid_frame_mask(mask, config)
    tau = params.logit_scale
    num_frames = frame_sims.shape[-1]
    out: dict[str, torch.Tensor] = {}
    if "S_Fw" in which:
        if params.frame_logit_weight.shape != (num_frames, num_frames):
            raise ValueError(f"W_f is {tuple(params.frame_logit_weight.shape)} but the videos have "
                             f"T={num_frames} frames")
        attention = _masked_softmax(frame_sims / config.weak_frame_temperature, valid_frames)
        mixed = attention @ params.frame_logit_weight
        if valid_frames is not None:
            mixed = mixed * valid_frames
        out["S_Fw"] = tau * (mixed * frame_sims).sum(-1)
    if "S_Fs" in which:
        gate = _frame_gate(frame_sims, valid_frames, config)
        numerator = (gate * context_sims).sum(-1)
        squared_norm = torch.einsum("...t,...tu,...u->...", gate, context_gram, gate)
        out["S_Fs"] = tau * numerator / squared_norm.clamp_min(1e-24).sqrt()
    if "S_Pw" in which or "S_Ps" in which:
        patches_per_frame = patch_sims.shape[-1] // num_frames
        valid_patches = (None if valid_frames is None
                         else valid_frames.repeat_interleave(patches_per_frame, dim=-1))
        if "S_Pw" in which:
            weights = _masked_softmax(patch_sims / config.weak_patch_temperature, valid_patches)
            out["S_Pw"] = tau * (weights * patch_sims).sum(-1)
        if "S_Ps" in which:
            if pool_patches is None:
                raise ValueError("S_Ps needs pool_patches (the gated patch sum)")
            gate = _masked_softmax(patch_sims / config.patch_gate_temperature, valid_patches)
            pooled = pool_patches(gate)
            out["S_Ps"] = tau * (gate * patch_sims).sum(-1) / pooled.norm(dim=-1).clamp_min(1e-12)
    return out


def _frame_gate(frame_sims: torch.Tensor, valid_frames: torch.Tensor | None,
                config: ScoreConfig) -> torch.Tensor:
    """The frame TIB's text-conditioned softmax over frames, softmax_t(σ_t / 0.1)."""
    return _masked_softmax(frame_sims / config.frame_gate_temperature, valid_frames)


def frame_gate_weights(
    text: torch.Tensor,
    frame: torch.Tensor,
    mask: torch.Tensor,
    config: ScoreConfig = ScoreConfig(),
) -> torch.Tensor:
    """The weights the frame TIB (S_Fs) gives each frame of each query's videos: [Q, n, T].

    text [Q, D]; frame [Q, n, T, D] raw CLIP frame features of n videos per query; mask
    [Q, n, T] bool. Rows sum to 1 over the frames taking part (padded ones get 0 when masked);
    the argmax is the frame the text gate weighted most. Same gate as `fine_scores`' S_Fs.
    """
    _check_text(text, frame.shape[-1])
    frame_sims = torch.einsum("qd,qntd->qnt", text.float(), frame.float())
    return _frame_gate(frame_sims, valid_frame_mask(mask, config), config)


def _which(scores: Iterable[str] | None) -> frozenset[str]:
    chosen = frozenset(FINE_SCORES if scores is None else scores) - {"S_V"}
    unknown = chosen - set(FINE_SCORES)
    if unknown:
        raise ValueError(f"unknown score name(s) {sorted(unknown)}; known: {ALL_SCORES}")
    return chosen


def fine_scores(
    text: torch.Tensor,
    video: VideoFeatures,
    params: ScoreParams,
    config: ScoreConfig = ScoreConfig(),
    scores: Iterable[str] | None = None,
) -> dict[str, torch.Tensor]:
    """Dense fine scores for every caption x video: text [C, D] -> {name: [C, B]}.

    `scores` limits which of S_Fw, S_Fs, S_Pw, S_Ps are computed (default: all four). Computed in
    blocks of videos so the [C, b, T*P] patch similarities stay bounded.
    """
    _check_text(text, video.embed_dim)
    which = _which(scores)  # validate names before any work
    text = text.float()
    num_captions, num_patches = text.shape[0], video.patch.shape[1]
    block = max(1, BLOCK_ELEMENTS // max(1, num_captions * num_patches))
    parts: dict[str, list[torch.Tensor]] = {name: [] for name in which}
    for start in range(0, video.num_videos, block):
        part = video.index(slice(start, start + block)).to(dtype=torch.float32)
        patch = part.patch
        block_scores = fine_scores_from_similarities(
            frame_sims=torch.einsum("cd,btd->cbt", text, part.frame),
            context_sims=torch.einsum("cd,btd->cbt", text, part.context),
            context_gram=(part.context @ part.context.transpose(1, 2)).unsqueeze(0),
            patch_sims=torch.einsum("cd,bnd->cbn", text, patch),
            # called within this iteration, so the loop variable is the right one
            pool_patches=lambda gate: torch.einsum("cbn,bnd->cbd", gate, patch),  # noqa: B023
            mask=part.mask.unsqueeze(0), params=params, config=config, scores=which)
        for name, value in block_scores.items():
            parts[name].append(value)
    return {name: torch.cat(values, dim=1) for name, values in parts.items()}


def candidate_fine_scores(
    text: torch.Tensor,
    frame: torch.Tensor,
    context: torch.Tensor,
    patch: torch.Tensor,
    mask: torch.Tensor,
    params: ScoreParams,
    config: ScoreConfig = ScoreConfig(),
    scores: Iterable[str] | None = None,
) -> dict[str, torch.Tensor]:
    """Fine scores of each query against its own candidates: {name: [Q, k]}.

    text [Q, D]; frame, context [Q, k, T, D]; patch [Q, k, T*P, D]; mask [Q, k, T] (bool).
    Work is proportional to Q·k, independent of the corpus size.
    """
    _check_text(text, frame.shape[-1])
    if frame.ndim != 4 or frame.shape[0] != text.shape[0]:
        raise ValueError(f"candidate frame features must be [Q={text.shape[0]}, k, T, D], "
                         f"got {tuple(frame.shape)}")
    text, frame, context, patch = (x.float() for x in (text, frame, context, patch))
    return fine_scores_from_similarities(
        frame_sims=torch.einsum("qd,qktd->qkt", text, frame),
        context_sims=torch.einsum("qd,qktd->qkt", text, context),
        context_gram=context @ context.transpose(-1, -2),
        patch_sims=torch.einsum("qd,qknd->qkn", text, patch),
        pool_patches=lambda gate: torch.einsum("qkn,qknd->qkd", gate, patch),
        mask=mask, params=params, config=config, scores=scores)


def all_scores(
    text: torch.Tensor, video: VideoFeatures, params: ScoreParams,
    config: ScoreConfig = ScoreConfig(),
) -> dict[str, torch.Tensor]:
    """All five scores for every caption x video, each [C, B]:
    {"S_V", "S_Fw", "S_Fs", "S_Pw", "S_Ps"}."""
    out = {"S_V": coarse_scores(text, video.coarse, params)}
    out.update(fine_scores(text, video, params, config))
    return out


def needed_scores(weights: RerankWeights) -> frozenset[str]:
    """The fine scores a rerank with `weights` needs (those with a non-zero weight)."""
    return frozenset(n for n, w in weights.as_score_weights().items() if w and n != "S_V")


def rerank_score(scores: Mapping[str, torch.Tensor], weights: RerankWeights = RerankWeights()
                 ) -> torch.Tensor:
    """The rerank mix Σ w·S (official: 0.5 S_V + 0.8 S_Fw + 0.2 S_Fs + 0.2 S_Pw + 0 S_Ps)."""
    total = None
    for name, weight in weights.as_score_weights().items():
        if not weight:
            continue
        if name not in scores:
            raise ValueError(f"rerank weight for {name} is {weight} but {name} was not computed")
        term = weight * scores[name]
        total = term if total is None else total + term
    if total is None:
        raise ValueError("all rerank weights are zero")
    return total
