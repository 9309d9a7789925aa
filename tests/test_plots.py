"""eercf_core/evaluation/plots.py: the evaluate PNGs (what is drawn, written atomically, figures
closed)."""
from __future__ import annotations

import matplotlib.pyplot as plt
import pytest

from eercf_core.evaluation import metrics, plots

RESULT = {"list_length": 20, "recall_k": 5,
          "coarse_ranks": {"q0": 0, "q1": 7, "q2": 19, "q3": 3},
          "reranked_ranks": {"q0": 0, "q1": 1, "q2": 19, "q3": 0},
          "coarse": {"R@1": 25.0}, "reranked": {"R@1": 50.0}}
SWEEP = [{"recall_k": k, "reranked": {"R@1": r1}} for k, r1 in ((5, 40.0), (10, 50.0), (50, 45.0))]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def drawn(monkeypatch):
    """Capture the figures handed to `_save` (the real one still writes and closes them)."""
    figures = []
    real_save = plots._save

    def capture(fig, path):
        figures.append({line.get_label(): (list(line.get_xdata()), list(line.get_ydata()))
                        for line in fig.axes[0].get_lines()})
        return real_save(fig, path)

    monkeypatch.setattr(plots, "_save", capture)
    return figures


def test_recall_curves_draws_both_orders_and_the_recall_depth(tmp_path, drawn):
    path = plots.recall_curves(RESULT, tmp_path / "recall_at_k.png")
    assert path == tmp_path / "recall_at_k.png"
    assert path.read_bytes().startswith(PNG_MAGIC)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["recall_at_k.png"]  # no temp left
    assert plt.get_fignums() == []
    [lines] = drawn
    ks = list(range(1, 21))
    for name in ("coarse", "reranked"):
        xs, ys = lines[name]
        assert xs == ks
        assert ys == pytest.approx(metrics.recall_curve(list(RESULT[f"{name}_ranks"].values()), ks))
    assert lines["k = 5"][0] == [5, 5]  # the vertical line at the recall depth


def test_r1_vs_k_draws_the_sweep_against_the_coarse_baseline(tmp_path, drawn):
    path = plots.r1_vs_k(SWEEP, RESULT, tmp_path / "r1_vs_k.png")
    assert path.read_bytes().startswith(PNG_MAGIC)
    [lines] = drawn
    assert lines["two-stage R@1"] == ([5, 10, 50], [40.0, 50.0, 45.0])
    assert lines["coarse R@1"][1] == [25.0, 25.0]
    assert plt.get_fignums() == []


def test_a_failed_save_closes_the_figure_and_leaves_no_temp_file(tmp_path):
    blocked = tmp_path / "x.png"
    blocked.mkdir()  # the final rename onto a directory fails
    with pytest.raises(IsADirectoryError):
        plots.recall_curves(RESULT, blocked)
    assert plt.get_fignums() == []
    assert list(tmp_path.iterdir()) == [blocked] and list(blocked.iterdir()) == []
