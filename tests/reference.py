"""Independent references written from the method's equations (docs/method.md §4-§6, §8.3).

Deliberately naive: explicit loops over caption-video pairs, materialised gated vectors, no shared
code with eercf_core, so the tests compare two implementations.
"""
from __future__ import annotations

import torch


def _norm(x: torch.Tensor) -> torch.Tensor:
    return x / x.norm(dim=-1, keepdim=True).clamp_min(1e-12)


def _softmax(logits: torch.Tensor, valid: torch.Tensor | None) -> torch.Tensor:
    if valid is not None:
        logits = torch.where(valid, logits, torch.tensor(float("-inf"), dtype=logits.dtype))
    return torch.softmax(logits, dim=0)


def reference_scores(s, v, f, h, p, mask, w_g, w_f, tau, masked=True,
                     temps=(0.01, 0.01, 0.1, 0.01)):
    """All five scores, loop per pair. s [C,D]; v [B,D]; f, h [B,T,D]; p [B,T*P,D]; mask [B,T]."""
    t_fw, t_pw, t_fs, t_ps = temps
    C, B, T = s.shape[0], v.shape[0], f.shape[1]
    P = p.shape[1] // T
    out = {k: torch.zeros(C, B, dtype=torch.float64)
           for k in ("S_V", "S_Fw", "S_Fs", "S_Pw", "S_Ps")}
    s, v, f, h, p, w_g, w_f = (x.double() for x in (s, v, f, h, p, w_g, w_f))
    for c in range(C):
        for b in range(B):
            valid_f = mask[b].bool() if masked and not bool(mask[b].all()) else None
            valid_p = valid_f.repeat_interleave(P) if valid_f is not None else None
            out["S_V"][c, b] = tau * s[c] @ w_g @ v[b]
            sigma = f[b] @ s[c]  # [T]
            alpha = _softmax(sigma / t_fw, valid_f)
            a = alpha @ w_f
            if valid_f is not None:
                a = a * valid_f
            out["S_Fw"][c, b] = tau * (a * sigma).sum()
            pi = p[b] @ s[c]  # [N]
            out["S_Pw"][c, b] = tau * (_softmax(pi / t_pw, valid_p) * pi).sum()
            gate = _softmax(sigma / t_fs, valid_f)
            z = _norm((gate[:, None] * h[b]).sum(0))
            out["S_Fs"][c, b] = tau * s[c] @ z
            gate_p = _softmax(pi / t_ps, valid_p)
            zp = _norm((gate_p[:, None] * p[b]).sum(0))
            out["S_Ps"][c, b] = tau * s[c] @ zp
    return out


def reference_official_rerank(scores, k, weights=(0.5, 0.8, 0.2, 0.2)):
    """The official two-pass simulation (method §8.3): top-k by S_V get 100 + mix, argsort."""
    wv, wfw, wfs, wpw = weights
    final = scores["S_V"].clone()
    mix = wv * scores["S_V"] + wfw * scores["S_Fw"] + wfs * scores["S_Fs"] + wpw * scores["S_Pw"]
    for c in range(final.shape[0]):
        top = torch.argsort(scores["S_V"][c], descending=True)[:k]
        final[c, top] = 100 + mix[c, top]
    return torch.argsort(final, dim=1, descending=True), mix


def reference_temporal_head(x, mask, sd, prefix="transformerClip.", layers=4, heads=8, eps=1e-12):
    """Method §4: ĥ = norm(Transformer_4(x + E_pos[0:T]; key mask) + x); v = norm(masked mean ĥ).

    x [B,T,D] raw CLIP CLS; sd: the official-layout state dict (transformerClip.*, ...).
    """
    def ln(y, w, b):
        mu = y.mean(-1, keepdim=True)
        var = ((y - mu) ** 2).mean(-1, keepdim=True)
        return (y - mu) / torch.sqrt(var + eps) * w + b

    B, T, D = x.shape
    g = {k: val.float() for k, val in sd.items()}
    y = x + g["frame_position_embeddings.weight"][:T]
    key_bias = (1.0 - mask.float())[:, None, None, :] * -1e6  # [B,1,1,T]
    hd = D // heads
    for i in range(layers):
        pre = f"{prefix}resblocks.{i}."
        u = ln(y, g[pre + "ln_1.weight"], g[pre + "ln_1.bias"])
        qkv = u @ g[pre + "attn.in_proj_weight"].T + g[pre + "attn.in_proj_bias"]
        q, k_, v_ = qkv.split(D, dim=-1)
        q, k_, v_ = (z.view(B, T, heads, hd).transpose(1, 2) for z in (q, k_, v_))
        att = torch.softmax(q @ k_.transpose(-1, -2) / hd ** 0.5 + key_bias, dim=-1)
        o = (att @ v_).transpose(1, 2).reshape(B, T, D)
        y = y + o @ g[pre + "attn.out_proj.weight"].T + g[pre + "attn.out_proj.bias"]
        u = ln(y, g[pre + "ln_2.weight"], g[pre + "ln_2.bias"])
        m = u @ g[pre + "mlp.c_fc.weight"].T + g[pre + "mlp.c_fc.bias"]
        m = m * torch.sigmoid(1.702 * m)
        y = y + m @ g[pre + "mlp.c_proj.weight"].T + g[pre + "mlp.c_proj.bias"]
    h = _norm(y + x)
    w = mask.float()[..., None]
    v = _norm((h * w).sum(1) / w.sum(1).clamp_min(1.0))
    return h, v


def reference_official_v2t(sim, cut_off_points):
    """The official multi-sentence v2t (method §8.4), written from its description.

    sim [N_text, N_video] numpy, captions grouped per video in video order; cut_off_points: the
    1-based end of each video's caption block. Reshape to [V, max_len, V] padded with -inf, max
    over captions, transpose, compute_metrics (sorted row minus diagonal, first zero = rank).
    """
    import numpy as np

    starts = [0] + list(cut_off_points[:-1])
    longest = max(e - s for s, e in zip(starts, cut_off_points))
    blocks = [np.concatenate([sim[s:e], np.full((longest - e + s, sim.shape[1]), -np.inf)])
              for s, e in zip(starts, cut_off_points)]
    x = np.stack(blocks).max(axis=1).T
    ind = np.where(np.sort(-x, axis=1) - np.diag(-x)[:, None] == 0)[1]
    return {"R@1": 100.0 * np.sum(ind == 0) / len(ind), "R@5": 100.0 * np.sum(ind < 5) / len(ind),
            "R@10": 100.0 * np.sum(ind < 10) / len(ind), "MdR": np.median(ind) + 1,
            "MnR": np.mean(ind) + 1}
