"""Metrics against hand-computed cases (method §8.4), ties and multiple ground truths included."""
from __future__ import annotations

import numpy as np
import pytest

from eercf_core import metrics


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
