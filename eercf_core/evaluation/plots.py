"""PNG plots of `eercf evaluate` (matplotlib, Agg backend, written atomically)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from eercf_core.evaluation import metrics
from eercf_core.files.atomic import local_temp_path


def _save(fig: Any, path: Path) -> Path:
    try:
        with local_temp_path(path) as temp:
            fig.savefig(temp, dpi=110, bbox_inches="tight")
    finally:
        plt.close(fig)
    return path


def recall_curves(result: dict, path: Path) -> Path:
    """R@K against K (1 .. list length) for the coarse and the reranked order."""
    ks = list(range(1, result["list_length"] + 1))
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, style in (("coarse", "--"), ("reranked", "-")):
        ranks = list(result[f"{name}_ranks"].values())
        ax.plot(ks, metrics.recall_curve(ranks, ks), style, label=name)
    if result.get("recall_k"):
        ax.axvline(result["recall_k"], color="grey", lw=0.8, ls=":",
                   label=f"k = {result['recall_k']}")
    ax.set(xscale="log", xlabel="K", ylabel="R@K (%)", title="text-to-video recall@K",
           ylim=(0, 101))
    ax.grid(alpha=0.3)
    ax.legend()
    return _save(fig, path)


def r1_vs_k(sweep: list[dict], baseline: dict, path: Path) -> Path:
    """R@1 of the reranked order against the recall depth k (cf. the paper's Figure 3)."""
    fig, ax = plt.subplots(figsize=(6, 4))
    ks = [s["recall_k"] for s in sweep]
    ax.plot(ks, [s["reranked"]["R@1"] for s in sweep], "o-", label="two-stage R@1")
    ax.axhline(baseline["coarse"]["R@1"], color="grey", ls="--", label="coarse R@1")
    ax.set(xscale="log", xlabel="recall depth k", ylabel="R@1 (%)", title="R@1 against k")
    ax.grid(alpha=0.3)
    ax.legend()
    return _save(fig, path)
