"""The EERCF objective against an independent float64 reference written here from method §5-§7."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import eercf_core as ec
from eercf_core.training.losses import (
    LossWeights,
    eercf_loss,
    pearson_constraint,
    symmetric_infonce,
)

B, T, P, D = 6, 4, 3, 8
TAU = 20.0


def _normalise(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max())
    return e / e.sum()


@pytest.fixture
def batch():
    rng = np.random.default_rng(7)
    text = _normalise(rng.normal(size=(B, D)))
    frame = _normalise(rng.normal(size=(B, T, D)))
    context = _normalise(rng.normal(size=(B, T, D)))
    patch = _normalise(rng.normal(size=(B, T * P, D)))
    coarse = _normalise(context.mean(1))
    w_g = np.eye(D) + 0.1 * rng.normal(size=(D, D))
    w_f = np.eye(T) + 0.1 * rng.normal(size=(T, T))
    return {"text": text, "frame": frame, "context": context, "patch": patch, "coarse": coarse,
            "w_g": w_g, "w_f": w_f}


def _torch_inputs(b, mask=None):
    f32 = lambda x: torch.tensor(x, dtype=torch.float32)  # noqa: E731
    mask = torch.ones(B, T, dtype=torch.bool) if mask is None else torch.tensor(mask)
    video = ec.VideoFeatures(coarse=f32(b["coarse"]), frame=f32(b["frame"]),
                             context=f32(b["context"]), patch=f32(b["patch"]), mask=mask)
    params = ec.ScoreParams(torch.tensor(TAU), f32(b["w_g"]), f32(b["w_f"]))
    return f32(b["text"]), video, params


# ---------------------------------------------------------------- the reference (plain loops)
def ref_scores(b, mask=None):
    """S_V, S_Fw, S_Pw (evaluation form) and S_Fs^train, S_Ps^train (own-caption gates), [B, B]."""
    mask = np.ones((B, T), bool) if mask is None else mask
    s, f, h, p, v = b["text"], b["frame"], b["context"], b["patch"], b["coarse"]
    out = {k: np.zeros((B, B)) for k in ("S_V", "S_Fw", "S_Pw", "S_Fs", "S_Ps")}
    z_frame, z_patch = np.zeros((B, D)), np.zeros((B, D))
    for j in range(B):
        valid = mask[j]
        valid_p = np.repeat(valid, P)
        gate = _softmax(np.where(valid, f[j] @ s[j] / 0.1, -np.inf))
        z_frame[j] = _normalise(gate @ h[j])
        gate_p = _softmax(np.where(valid_p, p[j] @ s[j] / 0.01, -np.inf))
        z_patch[j] = _normalise(gate_p @ p[j])
    for i in range(B):
        for j in range(B):
            valid, valid_p = mask[j], np.repeat(mask[j], P)
            out["S_V"][i, j] = TAU * s[i] @ b["w_g"] @ v[j]
            sigma = f[j] @ s[i]
            alpha = _softmax(np.where(valid, sigma / 0.01, -np.inf))
            a = (alpha @ b["w_f"]) * valid
            out["S_Fw"][i, j] = TAU * (a * sigma).sum()
            pi = p[j] @ s[i]
            out["S_Pw"][i, j] = TAU * (_softmax(np.where(valid_p, pi / 0.01, -np.inf)) * pi).sum()
            out["S_Fs"][i, j] = TAU * s[i] @ z_frame[j]
            out["S_Ps"][i, j] = TAU * s[i] @ z_patch[j]
    return out, z_frame, z_patch


def ref_infonce(S):
    loss_t2v = np.mean([-(S[i, i] - np.log(np.exp(S[i]).sum())) for i in range(len(S))])
    loss_v2t = np.mean([-(S[i, i] - np.log(np.exp(S[:, i]).sum())) for i in range(len(S))])
    return 0.5 * (loss_t2v + loss_v2t)


def ref_pearson(a, v, alpha1=0.14, alpha2=0.0):
    za = (a - a.mean(0)) / a.std(0, ddof=1)
    zv = (v - v.mean(0)) / v.std(0, ddof=1)
    c = za.T @ zv / len(a)
    off = c - np.diag(np.diag(c))
    return alpha1 * ((np.diag(c) - 1) ** 2).sum() + alpha2 * (off ** 2).sum()


def ref_total(b, w: LossWeights, mask=None):
    S, z_frame, z_patch = ref_scores(b, mask)
    weak = ref_infonce(w.video * S["S_V"] + w.weak_frame * S["S_Fw"] + w.weak_patch * S["S_Pw"])
    strong = ref_infonce(w.strong_frame * S["S_Fs"] + w.strong_patch * S["S_Ps"])
    pv = ref_pearson(b["text"], b["coarse"], w.alpha1, w.alpha2)
    pf = ref_pearson(b["text"], z_frame, w.alpha1, w.alpha2)
    pp = ref_pearson(b["text"], z_patch, w.alpha1, w.alpha2)
    intra = w.pearson_video * pv + w.pearson_frame * pf + w.pearson_patch * pp
    inter = w.weak_loss * weak + w.strong_loss * strong
    return {"weak": weak, "strong": strong, "pearson_video": pv, "pearson_frame": pf,
            "pearson_patch": pp,
                "intra": intra, "inter": inter, "loss": inter + w.pearson_loss * intra}


# ---------------------------------------------------------------- tests
def test_official_defaults():
    w = LossWeights()
    assert (w.video, w.weak_frame, w.weak_patch) == (0.5, 0.5, 0.05)
    assert (w.strong_frame, w.strong_patch, w.weak_loss, w.strong_loss) == (1.0, 0.0, 0.8, 0.2)
    assert (w.pearson_video, w.pearson_frame, w.pearson_patch) == (1.0, 1.0, 0.0)
    assert (w.pearson_loss, w.alpha1, w.alpha2) == (0.001, 0.14, 0.0)


def test_default_loss_terms_match_reference(batch):
    text, video, params = _torch_inputs(batch)
    got = eercf_loss(text, video, params)
    ref = ref_total(batch, LossWeights())
    for name in ("weak", "strong", "pearson_video", "pearson_frame", "intra", "inter", "loss"):
        assert got[name].item() == pytest.approx(ref[name], rel=2e-5, abs=2e-5), name
    assert got["pearson_patch"].item() == 0.0  # weight 0: not computed
    # the total is not dominated by one term: every term is non-trivial here
    assert ref["strong"] > 0.1 and ref["pearson_video"] > 0.1 and ref["pearson_frame"] > 0.1


def test_all_terms_active_with_mask_and_alpha2(batch):
    """Non-default weights switch on every term (patch TIB, PC_patch, α2), with a padded video."""
    mask = np.ones((B, T), bool)
    mask[2, 3:] = False
    mask[4, 1:] = False
    w = LossWeights(video=0.3, weak_frame=0.6, weak_patch=0.2, strong_frame=0.7, strong_patch=0.4,
                    weak_loss=0.6, strong_loss=0.4, pearson_video=0.5, pearson_frame=1.5,
                    pearson_patch=2.0, pearson_loss=0.01, alpha1=0.2, alpha2=0.05)
    text, video, params = _torch_inputs(batch, mask)
    got = eercf_loss(text, video, params, w)
    ref = ref_total(batch, w, mask)
    for name, value in ref.items():
        assert got[name].item() == pytest.approx(value, rel=2e-5, abs=2e-5), name


def test_infonce_and_pearson_primitives(batch):
    rng = np.random.default_rng(3)
    S = rng.normal(size=(5, 5)) * 4
    assert symmetric_infonce(torch.tensor(S)).item() == pytest.approx(ref_infonce(S), rel=1e-9)
    a, v = rng.normal(size=(9, 4)), rng.normal(size=(9, 4))
    got = pearson_constraint(torch.tensor(a), torch.tensor(v), 0.14, 0.3).item()
    assert got == pytest.approx(ref_pearson(a, v, 0.14, 0.3), rel=1e-9)
    # identical features: c_dd = (B-1)/B, so the loss is small but not zero (method §7.1)
    same = pearson_constraint(torch.tensor(a), torch.tensor(a)).item()
    assert same == pytest.approx(0.14 * 4 * (1 / 9) ** 2, rel=1e-9)
    with pytest.raises(ValueError, match="at least 2"):
        pearson_constraint(torch.zeros(1, 4), torch.zeros(1, 4))


def test_training_tib_gates_are_detached(batch):
    """With only the strong loss, raw frames f (which only make the gate) get no gradient; ĥ
    does."""
    text, video, params = _torch_inputs(batch)
    frame = video.frame.clone().requires_grad_(True)
    context = video.context.clone().requires_grad_(True)
    video = ec.VideoFeatures(video.coarse, frame, context, video.patch, video.mask)
    w = LossWeights(weak_loss=0.0, pearson_video=0.0, pearson_frame=0.0)
    eercf_loss(text, video, params, w)["loss"].backward()
    assert frame.grad is None or torch.count_nonzero(frame.grad) == 0
    assert context.grad is not None and torch.count_nonzero(context.grad) > 0


def test_weak_softmax_weights_are_not_detached(batch):
    text, video, params = _torch_inputs(batch)
    frame = video.frame.clone().requires_grad_(True)
    video = ec.VideoFeatures(video.coarse, frame, video.context, video.patch, video.mask)
    w = LossWeights(video=0.0, weak_patch=0.0, strong_loss=0.0, pearson_loss=0.0)
    eercf_loss(text, video, params, w)["loss"].backward()
    assert frame.grad is not None and torch.count_nonzero(frame.grad) > 0


def test_mismatched_batch_is_refused(batch):
    text, video, params = _torch_inputs(batch)
    with pytest.raises(ValueError, match="captions but"):
        eercf_loss(text[:3], video, params)
