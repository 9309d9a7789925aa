"""The decode-fidelity measures of `python -m bench decode` (per-video cosines and the gate)."""
from __future__ import annotations

import numpy as np
import pytest

from bench.decode_fidelity import cosine_stats, feature_cosines, gate, neighbour_lists_changed
from tests.index_fixtures import as_video_features, random_features


def test_feature_cosines_per_video_worst_valid_frame():
    reference = as_video_features(random_features(3))
    moved = as_video_features(random_features(3, seed=1))
    moved.coarse[0] = reference.coarse[0] * 2  # same direction: cosine 1
    moved.frame[1] = reference.frame[1]
    moved.frame[1, 0] = -reference.frame[1, 0]  # one opposite frame: the video's worst
    reference.mask[2, :] = False  # no valid frame: nothing to compare, cosine 1
    cosines = feature_cosines(reference, moved)
    assert cosines["coarse"][0] == pytest.approx(1.0, abs=1e-6)
    assert cosines["frame"][1] == pytest.approx(-1.0, abs=1e-6)
    assert cosines["frame"][2] == 1.0
    same = feature_cosines(reference, reference)
    np.testing.assert_allclose(same["coarse"], 1.0, atol=1e-6)


def test_cosine_stats_and_gate():
    values = np.array([1.0] * 99 + [0.9])
    stats = cosine_stats(values)
    assert stats["min"] == pytest.approx(0.9) and stats["videos"] == 100
    assert stats["p1"] == pytest.approx(np.percentile(values, 1))
    assert stats["mean"] == pytest.approx(values.mean())
    good = {"min": 0.9995, "p1": 0.9995, "mean": 1.0}
    assert gate({"coarse": good, "frame": good})
    assert not gate({"coarse": good, "frame": {**good, "p1": 0.998}})


def test_neighbour_lists_changed_counts_reordered_top_lists():
    reference = as_video_features(random_features(12))
    same = neighbour_lists_changed(reference, reference)
    assert same == {"queries": 12, "top10_lists_changed": 0, "top1_changed": 0}
    moved = as_video_features(random_features(12))
    moved.coarse[0] = -reference.coarse[0]  # video 0 decoded badly: it no longer finds itself
    changed = neighbour_lists_changed(reference, moved)
    assert changed["top1_changed"] == 1
    assert changed["top10_lists_changed"] >= 2  # video 0 also leaves others' top 10 lists
