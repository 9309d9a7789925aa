"""The EERCF training objective (method §7.1), training form of the TIB (§6.3).

For a batch of B (caption, video) pairs, caption i paired with video i (C = B):

  S_weak   = 0.5 S_V + 0.5 S_Fw + 0.05 S_Pw                       [B, B] (evaluation-form scores)
  S_strong = 1.0 S_Fs^train + 0.0 S_Ps^train                      [B, B]
  S_Fs^train(i, j) = τ · s_i · z^F_j,  z^F_j = norm(Σ_t g_{j,t} ĥ_{j,t}),
                     g_j = softmax_t(s_j·f_{j,t} / 0.1).detach()   (video j's OWN caption's gate)
  S_Ps^train likewise with g^P_j = softmax_n(s_j·p_{j,n} / 0.01).detach(), values p
  CE(S)    = mean_i −log softmax_j(S)_{ii}   (positives: the diagonal only)
  L_inter  = 0.8 · ½[CE(S_weak) + CE(S_weakᵀ)] + 0.2 · ½[CE(S_strong) + CE(S_strongᵀ)]
  PC(A, V) = α1 Σ_d (c_dd − 1)² + α2 Σ_{d≠e} c_de²,  c = Z_Aᵀ Z_V / B,
             Z = (X − mean_batch X) / std_batch X (unbiased std), α1 = 0.14, α2 = 0
  L_intra  = 1.0 PC(s, v) + 1.0 PC(s, z^F) + 0.0 PC(s, z^P)
  L        = L_inter + 0.001 · L_intra
τ is inside every S; there is no further scaling.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

from eercf_core.config import ScoreConfig
from eercf_core.model.features import VideoFeatures
from eercf_core.scoring.scores import ScoreParams, coarse_scores, fine_scores, valid_frame_mask


@dataclass(frozen=True)
class LossWeights:
    """Loss knobs, defaults = the official values (method §7.1 table; flag names in comments)."""

    video: float = 0.5  # --video_weight          S_V in S_weak
    weak_frame: float = 0.5  # --weakframe_weight  S_Fw in S_weak
    weak_patch: float = 0.05  # --weakpatch_weight S_Pw in S_weak
    strong_frame: float = 1.0  # --strongframe_weight S_Fs^train in S_strong
    strong_patch: float = 0.0  # --strongpatch_weight S_Ps^train in S_strong
    weak_loss: float = 0.8  # --weak_loss_weight
    strong_loss: float = 0.2  # --strong_loss_weight
    pearson_video: float = 1.0  # --cdcl_video_weight
    pearson_frame: float = 1.0  # --cdcl_frame_weight
    pearson_patch: float = 0.0  # --cdcl_patch_weight
    pearson_loss: float = 0.001  # --cdcl_loss_weight (λ)
    alpha1: float = 0.14  # diagonal term (hard-coded in the official code)
    alpha2: float = 0.0  # off-diagonal term (hard-coded 0; exposed)

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


def cross_entropy_diagonal(scores: torch.Tensor) -> torch.Tensor:
    """CE(S) = mean_i −log softmax_j(S)_{ii} for a square [B, B] score matrix (official CrossEn)."""
    if scores.ndim != 2 or scores.shape[0] != scores.shape[1]:
        raise ValueError(f"InfoNCE needs a square [B, B] score matrix, got {tuple(scores.shape)}")
    return -torch.diagonal(F.log_softmax(scores, dim=-1)).mean()


def symmetric_infonce(scores: torch.Tensor) -> torch.Tensor:
    """½[CE(S) + CE(Sᵀ)]: text-to-video and video-to-text InfoNCE, positives on the diagonal."""
    return 0.5 * (cross_entropy_diagonal(scores) + cross_entropy_diagonal(scores.T))


def pearson_constraint(text: torch.Tensor, video: torch.Tensor, alpha1: float = 0.14,
                       alpha2: float = 0.0) -> torch.Tensor:
    """DRL's CDCR as EERCF uses it: text [B, D], video [B, D] -> scalar.

    c = Z_textᵀ Z_video / B (per-dimension cross-modal correlation over the batch, unbiased std);
    returns α1 Σ_d (c_dd − 1)² + α2 Σ_{d≠e} c_de². Needs B ≥ 2.
    """
    if text.shape != video.shape or text.ndim != 2:
        raise ValueError(f"Pearson constraint needs two [B, D] matrices of one shape, got "
                         f"{tuple(text.shape)} and {tuple(video.shape)}")
    batch = text.shape[0]
    if batch < 2:
        raise ValueError("the Pearson constraint needs a batch of at least 2 pairs")
    z_text = (text - text.mean(0)) / text.std(0)
    z_video = (video - video.mean(0)) / video.std(0)
    c = z_text.T @ z_video / batch
    diagonal = torch.diagonal(c)
    loss = alpha1 * (diagonal - 1).pow(2).sum()
    if alpha2:
        loss = loss + alpha2 * (c.pow(2).sum() - diagonal.pow(2).sum())
    return loss


def _own_caption_pool(text: torch.Tensor, keys: torch.Tensor, values: torch.Tensor,
                      temperature: float, valid: torch.Tensor | None) -> torch.Tensor:
    """Training-form TIB: video j pooled with the gate of its own caption j, gate detached.

    text [B, D]; keys, values [B, M, D]; valid [B, M] or None -> z [B, D] (normalised).
    """
    logits = torch.einsum("bd,bmd->bm", text, keys) / temperature
    if valid is not None:
        logits = logits.masked_fill(~valid, float("-inf"))
    gate = torch.softmax(logits, dim=-1).detach()
    return F.normalize(torch.einsum("bm,bmd->bd", gate, values), dim=-1)


def training_tib(text: torch.Tensor, video: VideoFeatures, config: ScoreConfig = ScoreConfig(),
                 patches: bool = True) -> dict[str, torch.Tensor]:
    """z^F_diag [B, D] (gate from s·f at the frame-gate temperature, values ĥ) and, if `patches`,
    z^P_diag [B, D] (gate from s·p at the patch-gate temperature, values p). Caption j pairs
    video j."""
    valid = valid_frame_mask(video.mask, config)
    out = {"z_frame": _own_caption_pool(text, video.frame, video.context,
                                        config.frame_gate_temperature, valid)}
    if patches:
        per_frame = video.num_patches
        valid_patches = None if valid is None else valid.repeat_interleave(per_frame, dim=-1)
        out["z_patch"] = _own_caption_pool(text, video.patch, video.patch,
                                           config.patch_gate_temperature, valid_patches)
    return out


def eercf_loss(text: torch.Tensor, video: VideoFeatures, params: ScoreParams,
               weights: LossWeights = LossWeights(), config: ScoreConfig = ScoreConfig()
               ) -> dict[str, torch.Tensor]:
    """The EERCF objective for B pairs (caption i ↔ video i): text [B, D] normalised, video of B.

    Returns a dict of scalars: "loss" (the total, to backpropagate), "inter", "weak", "strong",
    "intra", "pearson_video", "pearson_frame", "pearson_patch"; terms with weight 0 that are not
    needed are returned as 0 without computing them.
    """
    batch = text.shape[0]
    if video.num_videos != batch:
        raise ValueError(f"{batch} captions but {video.num_videos} videos: training pairs caption "
                         "i with video i")
    text = text.float()
    zero = text.new_zeros(())
    weak_needed = [n for n, w in (("S_Fw", weights.weak_frame), ("S_Pw", weights.weak_patch)) if w]
    fine = fine_scores(text, video, params, config, scores=weak_needed) if weak_needed else {}
    s_weak = weights.video * coarse_scores(text, video.coarse, params)
    if weights.weak_frame:
        s_weak = s_weak + weights.weak_frame * fine["S_Fw"]
    if weights.weak_patch:
        s_weak = s_weak + weights.weak_patch * fine["S_Pw"]

    need_patch_tib = bool(weights.strong_patch or weights.pearson_patch)
    tib = training_tib(text, video, config, patches=need_patch_tib)
    tau = params.logit_scale
    s_strong = weights.strong_frame * tau * (text @ tib["z_frame"].T)
    if weights.strong_patch:
        s_strong = s_strong + weights.strong_patch * tau * (text @ tib["z_patch"].T)

    weak = symmetric_infonce(s_weak)
    strong = symmetric_infonce(s_strong) if (weights.strong_frame or weights.strong_patch) else zero
    inter = weights.weak_loss * weak + weights.strong_loss * strong

    def pc(video_side: torch.Tensor) -> torch.Tensor:
        return pearson_constraint(text, video_side, weights.alpha1, weights.alpha2)

    pearson_video = pc(video.coarse.float()) if weights.pearson_video else zero
    pearson_frame = pc(tib["z_frame"]) if weights.pearson_frame else zero
    pearson_patch = pc(tib["z_patch"]) if weights.pearson_patch else zero
    intra = (weights.pearson_video * pearson_video + weights.pearson_frame * pearson_frame
             + weights.pearson_patch * pearson_patch)
    total = inter + weights.pearson_loss * intra
    return {"loss": total, "inter": inter, "weak": weak, "strong": strong, "intra": intra,
            "pearson_video": pearson_video, "pearson_frame": pearson_frame,
            "pearson_patch": pearson_patch}
