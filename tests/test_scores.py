"""Scores and two-stage ranking against the naive references in tests/reference.py."""
from __future__ import annotations

import pytest
import torch

import eercf_core as ec
from eercf_core.scoring.scores import ScoreParams, all_scores, candidate_fine_scores, recall_queries
from tests.reference import reference_official_rerank, reference_scores

C, B, T, P, D = 6, 9, 12, 4, 16


def _norm(x):
    return torch.nn.functional.normalize(x, dim=-1)


@pytest.fixture
def case():
    g = torch.Generator().manual_seed(7)
    frame = _norm(torch.randn(B, T, D, generator=g))
    context = _norm(torch.randn(B, T, D, generator=g))
    patch = _norm(torch.randn(B, T * P, D, generator=g))
    mask = torch.ones(B, T, dtype=torch.bool)
    mask[2, 7:] = False  # a short video
    mask[5, 1:] = False  # a one-frame video
    coarse = _norm(torch.randn(B, D, generator=g))
    video = ec.VideoFeatures(coarse=coarse, frame=frame, context=context, patch=patch, mask=mask)
    text = _norm(torch.randn(C, D, generator=g))
    params = ScoreParams(torch.tensor(37.0), torch.eye(D) + 0.1 * torch.randn(D, D, generator=g),
                         torch.eye(T) + 0.05 * torch.randn(T, T, generator=g))
    return text, video, params


def _ref(text, video, params, masked):
    return reference_scores(text, video.coarse, video.frame, video.context, video.patch, video.mask,
                            params.global_weight, params.frame_logit_weight,
                            float(params.logit_scale), masked=masked)


@pytest.mark.parametrize("masked", [True, False])
def test_dense_scores_match_reference(case, masked):
    text, video, params = case
    got = all_scores(text, video, params, ec.ScoreConfig(mask_padded_frames=masked))
    ref = _ref(text, video, params, masked)
    assert set(got) == set(ref)
    for name in ref:
        assert got[name].shape == (C, B)
        torch.testing.assert_close(got[name].double(), ref[name], rtol=1e-5, atol=1e-4, msg=name)


def test_masking_changes_only_padded_videos(case):
    text, video, params = case
    on = all_scores(text, video, params, ec.ScoreConfig(mask_padded_frames=True))
    off = all_scores(text, video, params, ec.ScoreConfig(mask_padded_frames=False))
    full = video.mask.all(1)
    for name in ("S_Fw", "S_Fs", "S_Pw"):
        torch.testing.assert_close(on[name][:, full], off[name][:, full])
        assert not torch.allclose(on[name][:, ~full], off[name][:, ~full])


def test_dense_scores_blockwise_equal_single_block(case, monkeypatch):
    text, video, params = case
    whole = all_scores(text, video, params)
    monkeypatch.setattr(ec.scores, "BLOCK_ELEMENTS", C * T * P * 2)  # 2 videos per block
    blocked = all_scores(text, video, params)
    for name in whole:
        torch.testing.assert_close(blocked[name], whole[name])


def test_candidate_scores_equal_dense_gather(case):
    text, video, params = case
    dense = all_scores(text, video, params)
    ids = torch.stack([torch.randperm(B, generator=torch.Generator().manual_seed(i))[:4]
                       for i in range(C)])
    cand = video.index(ids.reshape(-1))
    got = candidate_fine_scores(text, cand.frame.view(C, 4, T, D), cand.context.view(C, 4, T, D),
                                cand.patch.view(C, 4, T * P, D), cand.mask.view(C, 4, T), params)
    for name, value in got.items():
        torch.testing.assert_close(value, dense[name].gather(1, ids), msg=name)


def test_recall_queries_fold_global_weight(case):
    text, video, params = case
    torch.testing.assert_close(recall_queries(text, params) @ video.coarse.T,
                               all_scores(text, video, params)["S_V"])


def test_rerank_score_is_official_mix(case):
    text, video, params = case
    s = all_scores(text, video, params)
    expected = 0.5 * s["S_V"] + 0.8 * s["S_Fw"] + 0.2 * s["S_Fs"] + 0.2 * s["S_Pw"]
    torch.testing.assert_close(ec.scores.rerank_score(s), expected)
    with pytest.raises(ValueError, match="S_Ps"):
        ec.scores.rerank_score({"S_V": s["S_V"]}, ec.RerankWeights(1, 0, 0, 0, 1))


@pytest.mark.parametrize("k", [1, 3, B])
def test_two_stage_rank_equals_official_simulation(case, k):
    text, video, params = case
    ref_order, ref_mix = reference_official_rerank(_ref(text, video, params, True), k)
    ranking = ec.two_stage_rank(params, text, video, k=k)
    assert torch.equal(ranking.indices, ref_order)
    assert ranking.reranked[:, :k].all() and not ranking.reranked[:, k:].any()
    torch.testing.assert_close(ranking.scores[:, :k].double(), ref_mix.gather(1, ref_order[:, :k]),
                               rtol=1e-5, atol=1e-4)
    s_v = all_scores(text, video, params)["S_V"]
    torch.testing.assert_close(ranking.coarse_scores, s_v.gather(1, ranking.indices))
    # After the reranked block, videos follow in coarse order.
    assert (ranking.coarse_scores[:, k:].diff(dim=1) <= 0).all()


def test_two_stage_top_n_and_bad_k(case):
    text, video, params = case
    full = ec.two_stage_rank(params, text, video, k=3)
    top = ec.two_stage_rank(params, text, video, k=3, top_n=4)
    assert torch.equal(top.indices, full.indices[:, :4])
    with pytest.raises(ValueError, match="k must be"):
        ec.two_stage_rank(params, text, video, k=0)


def test_exhaustive_equals_dense_rerank_order_and_two_stage_with_all(case):
    text, video, params = case
    ref = _ref(text, video, params, True)
    _, mix = reference_official_rerank(ref, B)
    ranking = ec.exhaustive_rank(params, text, video)
    assert torch.equal(ranking.indices, torch.argsort(mix, dim=1, descending=True))
    assert torch.equal(ec.two_stage_rank(params, text, video, k=B).indices, ranking.indices)


def test_bad_text_shapes(case):
    text, video, params = case
    with pytest.raises(ValueError, match="text features"):
        all_scores(text[:, :5], video, params)
    with pytest.raises(ValueError, match="empty"):
        all_scores(text[:0], video, params)
