"""EercfModel: preprocessing, tokenisation, encoders, zero-shot mode and input validation."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image, ImageFilter

import eercf_core as ec
from eercf_core.config import OPENAI_MEAN, OPENAI_STD


def _frames(b=2, h=64, w=64, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (b, 12, h, w, 3), dtype=np.uint8)


def test_video_features_shapes_and_norms(tiny_model):
    mask = np.ones((2, 12), bool)
    mask[1, 5:] = False
    video = tiny_model.encode_video(_frames(), mask)
    assert video.coarse.shape == (2, 64) and video.frame.shape == (2, 12, 64)
    assert video.context.shape == (2, 12, 64) and video.patch.shape == (2, 12 * 16, 64)
    for x in (video.coarse, video.frame, video.context, video.patch):
        torch.testing.assert_close(x.norm(dim=-1), torch.ones(x.shape[:-1]))
    assert torch.equal(video.mask, torch.as_tensor(mask))


def test_padded_slots_do_not_depend_on_their_pixels(tiny_model):
    mask = np.ones((1, 12), bool)
    mask[0, 6:] = False
    a = _frames(1, seed=1)
    b = a.copy()
    b[0, 6:] = 255 - b[0, 6:]
    fa, fb = tiny_model.encode_video(a, mask), tiny_model.encode_video(b, mask)
    torch.testing.assert_close(fa.coarse, fb.coarse)
    torch.testing.assert_close(fa.context, fb.context)


def test_batching_does_not_change_results(tiny_model):
    frames, mask = _frames(5, seed=2), np.ones((5, 12), bool)
    whole = tiny_model.encode_video(frames, mask, batch_size=5)
    parts = tiny_model.encode_video(frames, mask, batch_size=2)
    torch.testing.assert_close(whole.patch, parts.patch, rtol=1e-5, atol=1e-5)


def test_zero_shot_mode_equations():
    model = ec.create_model("eercf-tiny", head="zero-shot", seed=0)
    mask = np.ones((2, 12), bool)
    mask[0, 4:] = False
    video = model.encode_video(_frames(seed=3), mask)
    torch.testing.assert_close(video.context, video.frame)
    m = torch.as_tensor(mask).float()[..., None]
    expected = torch.nn.functional.normalize((video.frame * m).sum(1) / m.sum(1), dim=-1)
    torch.testing.assert_close(video.coarse, expected)
    params = model.score_params
    assert torch.equal(params.global_weight, torch.eye(64))
    assert torch.equal(params.frame_logit_weight, torch.eye(12))


def test_preprocessing_matches_openai_pil_pipeline(tiny_model):
    """Resize shortest side bicubic, center crop, CLIP mean/std (method §2.2), against PIL."""
    image = np.random.default_rng(4).integers(0, 256, (90, 120, 3), dtype=np.uint8)
    image = np.asarray(Image.fromarray(image).filter(ImageFilter.GaussianBlur(2)))
    ours = tiny_model.preprocess_frames(np.broadcast_to(image, (1, 12, 90, 120, 3)).copy())[0, 0]
    pil = Image.fromarray(image).resize((85, 64), Image.BICUBIC)  # shortest side 90 -> 64
    left = (85 - 64) // 2
    crop = np.asarray(pil.crop((left, 0, left + 64, 64)), dtype=np.float32) / 255.0
    ref = (torch.from_numpy(crop).permute(2, 0, 1) - torch.tensor(OPENAI_MEAN)[:, None, None]) \
        / torch.tensor(OPENAI_STD)[:, None, None]
    assert ours.shape == (3, 64, 64)
    assert (ours - ref).abs().mean() < 0.03


def test_tokenize_official_layout(tiny_model):
    import open_clip

    tok = open_clip.get_tokenizer("ViT-B-32")
    long = " ".join(["word"] * 50)
    ids = tiny_model.tokenize(["A  <b>Dog</b> runs", long])
    assert ids.shape == (2, 77)
    torch.testing.assert_close(ids[0], tok(["A  <b>Dog</b> runs"])[0])
    body = ids[1][ids[1] != 0]
    assert len(body) == 32 and body[0] == tok.sot_token_id and body[-1] == tok.eot_token_id
    assert (ids[1, 32:] == 0).all()


def test_encode_text_is_normalised_eot_feature(tiny_model):
    text = tiny_model.encode_text(["a red ball", "a blue square"])
    assert text.shape == (2, 64)
    torch.testing.assert_close(text.norm(dim=-1), torch.ones(2))
    with torch.no_grad():
        raw = tiny_model.clip.encode_text(tiny_model.tokenize(["a red ball", "a blue square"]))
    torch.testing.assert_close(text, torch.nn.functional.normalize(raw, dim=-1))


def test_scores_api(tiny_model):
    video = tiny_model.encode_video(_frames(3, seed=5), np.ones((3, 12), bool))
    text = tiny_model.encode_text(["one", "two"])
    scores = tiny_model.scores(text, video)
    assert set(scores) == {"S_V", "S_Fw", "S_Fs", "S_Pw", "S_Ps"}
    assert all(v.shape == (2, 3) and torch.isfinite(v).all() for v in scores.values())
    ranking = ec.two_stage_rank(tiny_model, text, video, k=2)
    assert ranking.indices.shape == (2, 3)


@pytest.mark.parametrize(("frames", "message"), [
    (np.zeros((2, 12, 64, 64, 3), np.float32), "uint8"),
    (np.zeros((2, 12, 64, 64), np.uint8), r"\[B, T=12, H, W, 3\]"),
    (np.zeros((2, 8, 64, 64, 3), np.uint8), "T=12"),
    (np.zeros((2, 12, 64, 64, 4), np.uint8), "RGB"),
])
def test_bad_frames_are_named(tiny_model, frames, message):
    with pytest.raises(ValueError, match=message):
        tiny_model.encode_video(frames, np.ones(frames.shape[:2], bool))


def test_bad_mask_and_captions(tiny_model):
    with pytest.raises(ValueError, match="mask must be"):
        tiny_model.encode_video(_frames(), np.ones((2, 11), bool))
    with pytest.raises(ValueError, match="empty list"):
        tiny_model.encode_text([])
    with pytest.raises(TypeError, match="list of strings"):
        tiny_model.encode_text("a single string")
    with pytest.raises(TypeError, match="caption 1"):
        tiny_model.encode_text(["ok", None])
