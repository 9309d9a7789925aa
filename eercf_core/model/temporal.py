"""The EERCF temporal head (method §3 "Extra modules", §4): the CLIP4Clip seqTransf branch.

Parameter names and shapes match the official checkpoint's extra keys (after renaming
`transformerClip.` to `transformer.`), so the 51 released tensors load one-to-one.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from eercf_core.config import FRAME_POSITIONS, TEMPORAL_LAYERS, TEMPORAL_LN_EPS


class QuickGELU(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


class ResidualAttentionBlock(nn.Module):
    """Pre-LN CLIP block: x + attn(ln_1(x)); x + mlp(ln_2(x)); TF-style LayerNorm (eps 1e-12)."""

    def __init__(self, width: int, heads: int):
        super().__init__()
        self.heads = heads
        self.attn = nn.MultiheadAttention(width, heads, batch_first=True)
        self.ln_1 = nn.LayerNorm(width, eps=TEMPORAL_LN_EPS)
        self.mlp = nn.Sequential(OrderedDict([
            ("c_fc", nn.Linear(width, width * 4)),
            ("gelu", QuickGELU()),
            ("c_proj", nn.Linear(width * 4, width)),
        ]))
        self.ln_2 = nn.LayerNorm(width, eps=TEMPORAL_LN_EPS)

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor) -> torch.Tensor:
        y = self.ln_1(x)
        x = x + self.attn(y, y, y, need_weights=False, attn_mask=attn_mask)[0]
        return x + self.mlp(self.ln_2(x))


class TemporalTransformer(nn.Module):
    def __init__(self, width: int, layers: int, heads: int):
        super().__init__()
        self.heads = heads
        self.resblocks = nn.ModuleList(
            [ResidualAttentionBlock(width, heads) for _ in range(layers)])

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """x [B, T, D], mask [B, T] (1 = real frame) -> [B, T, D].

        Padded keys get an additive -1e6 (as the official code), per head.
        """
        t = x.shape[1]
        additive = (1.0 - mask.to(x.dtype)).unsqueeze(1).expand(-1, t, -1) * -1000000.0
        additive = additive.repeat_interleave(self.heads, dim=0)  # [B*heads, T, T], batch-major
        for block in self.resblocks:
            x = block(x, additive)
        return x


class TemporalHead(nn.Module):
    """Frame position embeddings + 4-layer temporal transformer + W_g + W_f.

    forward(raw frame features x [B, T, D] (CLIP CLS, not normalised), mask [B, T])
      -> context ĥ [B, T, D] (normalised), coarse v [B, D] (normalised)
    """

    def __init__(self, embed_dim: int, num_frames: int, layers: int = TEMPORAL_LAYERS,
                 heads: int | None = None):
        super().__init__()
        if num_frames > FRAME_POSITIONS:
            raise ValueError(f"num_frames {num_frames} exceeds {FRAME_POSITIONS} frame positions")
        self.num_frames = num_frames
        self.frame_position_embeddings = nn.Embedding(FRAME_POSITIONS, embed_dim)
        self.transformer = TemporalTransformer(embed_dim, layers, heads or max(1, embed_dim // 64))
        self.global_weight = nn.Parameter(torch.eye(embed_dim))  # W_g
        self.frame_logit_weight = nn.Parameter(torch.eye(num_frames))  # W_f

    def init_from_text_tower(self, clip_model: Any) -> None:  # an open_clip CLIP (untyped)
        """Official initialisation: transformer = text layers 0..L-1, positions = text positions."""
        text_blocks = clip_model.transformer.resblocks
        width = self.global_weight.shape[0]
        if clip_model.positional_embedding.shape[1] != width or len(text_blocks) < len(
                self.transformer.resblocks):
            return  # text tower of another width: keep the random init
        with torch.no_grad():
            rows = min(FRAME_POSITIONS, clip_model.positional_embedding.shape[0])
            self.frame_position_embeddings.weight[:rows].copy_(clip_model.positional_embedding[:rows])
            for ours, theirs in zip(self.transformer.resblocks, text_blocks):
                source = theirs.state_dict()
                ours.load_state_dict({k: source[k] for k in ours.state_dict()})

    def forward(self, frame_raw: torch.Tensor, mask: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        t = frame_raw.shape[1]
        positions = self.frame_position_embeddings.weight[:t]
        hidden = self.transformer(frame_raw + positions, mask) + frame_raw
        context = F.normalize(hidden, dim=-1)
        return context, masked_mean_normalised(context, mask)


def masked_mean_normalised(frames: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """norm(Σ_t m_t x_t / max(1, Σ_t m_t)): frames [B, T, D], mask [B, T] -> [B, D]."""
    weights = mask.to(frames.dtype).unsqueeze(-1)
    pooled = (frames * weights).sum(1) / weights.sum(1).clamp_min(1.0)
    return F.normalize(pooled, dim=-1)
