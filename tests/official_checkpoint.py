"""Generate a checkpoint in the official EERCF layout (method §9) with random values."""
from __future__ import annotations

import torch

_FP16_PARTS = ("attn.", "mlp.c_fc.", "mlp.c_proj.", "conv1.")


def official_dtype(clip_key: str) -> torch.dtype:
    """fp16 for conv, linear, attention and the two projections; fp32 elsewhere (§9)."""
    if (any(part in clip_key for part in _FP16_PARTS)
            or clip_key in ("visual.proj", "text_projection")):
        return torch.float16
    return torch.float32


def make_official_state_dict(seed: int = 0, embed_dim: int = 512, num_frames: int = 12,
                             arch: str = "ViT-B-32") -> dict[str, torch.Tensor]:
    """All 353 keys of the released ViT-B/32 checkpoint: 302 `clip.*` + 51 head tensors."""
    import open_clip

    torch.manual_seed(seed)
    clip = open_clip.create_model(arch, force_quick_gelu=True)
    sd = {}
    for key, value in clip.state_dict().items():
        sd["clip." + key] = value.detach().clone().to(official_dtype(key))
    g = torch.Generator().manual_seed(seed + 1)
    d = embed_dim
    sd["global_mat_weight"] = torch.eye(d) + 0.02 * torch.randn(d, d, generator=g)
    sd["frame_logit_weight"] = torch.eye(num_frames) + 0.05 * torch.randn(num_frames, num_frames,
                                                                          generator=g)
    sd["frame_position_embeddings.weight"] = 0.02 * torch.randn(77, d, generator=g)
    for i in range(4):
        pre = f"transformerClip.resblocks.{i}."
        shapes = {"attn.in_proj_weight": (3 * d, d), "attn.in_proj_bias": (3 * d,),
                  "attn.out_proj.weight": (d, d), "attn.out_proj.bias": (d,),
                  "ln_1.weight": (d,), "ln_1.bias": (d,), "mlp.c_fc.weight": (4 * d, d),
                  "mlp.c_fc.bias": (4 * d,), "mlp.c_proj.weight": (d, 4 * d),
                  "mlp.c_proj.bias": (d,), "ln_2.weight": (d,), "ln_2.bias": (d,)}
        for name, shape in shapes.items():
            scale = 0.02 if "weight" in name and not name.startswith("ln") else 0.1
            value = torch.randn(*shape, generator=g) * scale
            if name.startswith("ln") and name.endswith("weight"):
                value = value + 1.0
            sd[pre + name] = value
    return sd
