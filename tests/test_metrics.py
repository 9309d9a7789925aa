"""Metrics against hand-computed cases (method §8.4), ties and multiple ground truths included."""
from __future__ import annotations

import numpy as np
import pytest

from eercf_core.evaluation import metrics


def test_hand_computed_ranks():
    # ranks (0-based) 0, 2, 7, 12 -> R@1 25, R@5 50, R@10 75; rank+1 = 1,3,8,13
    m = metrics.metrics_from_ranks([0, 2, 7, 12])
    assert (m["R@1"], m["R@5"], m["R@10"]) == (25.0, 50.0, 75.0)
    assert m["MdR"] == 3.0  # lower median of 1,3,8,13 (torch.median semantics), not 5.5
    assert m["MnR"] == pytest.approx((1 + 3 + 8 + 13) / 4)


def test_odd_count_median_and_lower_median_matches_torch():
    import torch

    values = np.array([5, 1, 9, 2, 7, 3])
    assert metrics.lower_median(values) == float(torch.median(torch.tensor(values)))
    assert metrics.lower_median(np.array([4, 1, 3])) == 3.0


def test_ties_use_output_position():
    # Scores tie: the rank is the position in the written order, not a shared rank.
    order = ["a", "b", "c"]
    assert metrics.query_rank(order, {"b"}) == (1, False)
    # Dense reference: ties broken by column index (stable), as the ranking jobs do.
    scores = np.array([[1.0, 1.0, 0.5], [0.2, 0.9, 0.9]])
    assert metrics.ranks_from_scores(scores, [1, 2]).tolist() == [1, 1]
    assert metrics.ranks_from_scores(scores, [0, 1]).tolist() == [0, 0]


def test_several_ground_truths_take_best_and_censoring():
    orders = {"q1": ["v3", "v1", "v2"], "q2": ["v1", "v2", "v3"], "q3": ["v1"]}
    truth = {"q1": ["v2", "v1"], "q2": ["v3"], "q3": ["v9"], "unranked": ["v1"]}
    ranks, censored = metrics.ranks_for_queries(orders, truth)
    assert ranks == {"q1": 1, "q2": 2, "q3": 1}  # q3: censored at list length 1
    assert censored == 1
    m = metrics.metrics_from_ranks(list(ranks.values()), censored)
    assert m["R@1"] == 0.0 and m["R@5"] == 100.0 and m["censored"] == 1


def test_recall_curve_and_empty():
    assert metrics.recall_curve([0, 1, 4], [1, 2, 5]) == pytest.approx([100 / 3, 200 / 3, 100.0])
    with pytest.raises(ValueError, match="no ranks to evaluate"):
        metrics.metrics_from_ranks([])


def test_video_to_text_matches_official_multi_sentence_layout():
    from tests.reference import reference_official_v2t

    rng = np.random.default_rng(3)
    counts = [3, 1, 4, 2, 5, 2, 3, 1, 2, 4, 3, 2]  # captions per video, grouped in video order
    caption_video = np.repeat(np.arange(len(counts)), counts)
    scores = rng.standard_normal((len(caption_video), len(counts)))
    scores[np.arange(len(caption_video)), caption_video] += 1.0
    got = metrics.video_to_text_metrics(scores, caption_video)
    want = reference_official_v2t(scores, np.cumsum(counts).tolist())
    for key, value in want.items():
        assert got[key] == pytest.approx(value), key
    assert got["num_queries"] == len(counts) and got["ties"] == 0
    # caption order does not matter: shuffle the rows
    perm = rng.permutation(len(caption_video))
    assert metrics.video_to_text_metrics(scores[perm], caption_video[perm]) == got


def test_video_to_text_hand_case_median_and_ties():
    # 2 videos x 3 captions. video 0: own set max 0.9 vs set 1 max 0.8 -> rank 0.
    # video 1: own set max 0.5 vs set 0 max 0.7 -> rank 1.
    scores = np.array([[0.9, 0.7], [0.1, 0.2], [0.8, 0.5]])
    ranks, ties = metrics.video_to_text_ranks(scores, [0, 0, 1])
    assert ranks.tolist() == [0, 1] and ties == 0
    m = metrics.video_to_text_metrics(scores, [0, 0, 1])
    assert m["MdR"] == 1.5  # np.median of 1, 2 (official compute_metrics), not the lower median
    tied = metrics.video_to_text_ranks(np.array([[1.0, 0.5], [1.0, 0.5]]), [0, 1])
    assert tied[0].tolist() == [0, 0] and tied[1] == 2  # each video: both caption sets score equal
    with pytest.raises(ValueError, match="no caption"):
        metrics.video_to_text_ranks(scores, [0, 0, 0])
