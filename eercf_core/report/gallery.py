"""The result gallery: ranked results + index (+ ground truth, evaluation) -> a static HTML folder.

`write_report` writes `index.html` (CSS, JS and the result data inline, `eercf_core.report.page`)
and `assets/` (one preview JPEG and one frame strip per shown video, copied from the index's
preview store, and the evaluation plots). Per query: its text, the top-N videos with preview,
rank, rerank score, coarse score (S_V), where the rerank moved each video from (coarse rank ->
final rank, both within the written list), the ground-truth video highlighted, and, given the
model, the sampled frame the text gate of the frame TIB (S_Fs) weighted most. Queries are paged
in the browser. CLIs: `eercf report` (a ranked TSV) and `eercf search --html` (one-off texts).
"""
from __future__ import annotations

import json
import logging
import shutil
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

import eercf_core as ec
from eercf_core.files import paths
from eercf_core.files.atomic import atomic_directory, download_tree, upload_tree
from eercf_core.files.text_formats import (
    RankedRow,
    coarse_ranks,
    read_ground_truth,
    read_queries,
    read_ranked,
)
from eercf_core.index import IndexDirectory
from eercf_core.report import page
from eercf_core.scoring.scores import frame_gate_weights
from eercf_core.video.previews import KINDS as PREVIEW_KINDS
from eercf_core.video.previews import open_previews

log = logging.getLogger(__name__)
ASSETS = "assets"
GATE_BATCH = 256  # queries whose top-N frame features are read at once


@dataclass
class QueryResults:
    """One query's ranked list (all written rows, rank order) and its ground-truth videos."""

    query_id: str
    text: str
    rows: list[RankedRow]
    truth: list[str] = field(default_factory=list)


def load_results(ranked_path: str, queries_path: str, truth_path: str | None = None
                 ) -> list[QueryResults]:
    """Join a ranked TSV with its query texts (and ground truth), in ranked-file order."""
    ranked = read_ranked(ranked_path)
    texts = {q.query_id: q.text for q in read_queries(queries_path)}
    missing = [q for q in ranked if q not in texts]
    if missing:
        raise ValueError(f"{queries_path}: no text for {len(missing)} ranked queries of "
                         f"{ranked_path} (e.g. {missing[0]!r}); pass the query file that was "
                         "ranked")
    truth = read_ground_truth(truth_path) if truth_path else {}
    unknown = sorted(set(truth) - set(ranked))
    if unknown:
        log.warning("%s: %d ground-truth queries are not in %s (e.g. %r); not shown",
                    truth_path, len(unknown), ranked_path, unknown[0])
    return [QueryResults(q, texts[q], rows, [v for v, _ in truth.get(q, [])])
            for q, rows in ranked.items()]


def gate_weights(model: ec.EercfModel, index: IndexDirectory, results: Sequence[QueryResults],
                 rows: np.ndarray, config: ec.ScoreConfig) -> tuple[np.ndarray, np.ndarray]:
    """The frame TIB's text-gate weights of each shown video and its frame mask: [Q, n, T] each.

    rows [Q, n] index rows of the shown videos (-1 = no video in that slot: weights 0, mask
    False). Computed with `scores.frame_gate_weights` from the stored raw frame features.
    """
    num_queries, n = rows.shape
    t = index.dims.num_frames
    weights_out = np.zeros((num_queries, n, t), dtype=np.float32)
    mask_out = np.zeros((num_queries, n, t), dtype=bool)
    for begin in range(0, num_queries, GATE_BATCH):
        block = rows[begin:begin + GATE_BATCH]
        safe = np.where(block < 0, 0, block).reshape(-1)
        frame = torch.from_numpy(index.store.read("frame", safe)).float()
        mask = torch.from_numpy(index.store.read("mask", safe)).view(*block.shape, t)
        text = model.encode_text([r.text for r in results[begin:begin + GATE_BATCH]]).float()
        weights = frame_gate_weights(text, frame.view(*block.shape, t, -1), mask, config)
        absent = (block < 0)[..., None]
        weights_out[begin:begin + len(block)] = np.where(absent, 0.0, weights.numpy())
        mask_out[begin:begin + len(block)] = mask.numpy() & ~absent
        log.info("report: gate weights %d/%d queries", begin + len(block), num_queries)
    return weights_out, mask_out


def _evaluation_summary(evaluation_dir: Path | None, assets: Path) -> tuple[dict, list[str]]:
    """(metrics.json of `eercf evaluate`, plot files copied into assets) or ({}, [])."""
    if evaluation_dir is None:
        return {}, []
    metrics_path = evaluation_dir / "metrics.json"
    if not metrics_path.is_file():
        raise ValueError(f"{evaluation_dir}: no metrics.json (pass the --output folder of "
                         "`eercf evaluate`)")
    try:
        metrics = json.loads(metrics_path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{metrics_path}: not JSON: {exc}") from None
    plots = []
    for plot in sorted(evaluation_dir.glob("*.png")):
        shutil.copyfile(plot, assets / plot.name)
        plots.append(f"{ASSETS}/{plot.name}")
    return metrics, plots


def _preview_assets(index: IndexDirectory, rows: set[int], assets: Path) -> dict[int, dict]:
    """Write each shown video's preview JPEGs into assets; row -> {"thumb": path, "strip": path}."""
    store = open_previews(index.path)
    found: dict[int, dict] = {}
    if store is None:
        log.warning("%s has no preview store (built before previews existed): no thumbnails",
                    index.path)
        return found
    for row in sorted(rows):
        for kind in PREVIEW_KINDS:
            payload = store.get(row, kind)
            if payload is not None:
                name = f"{row}-{kind}.jpg"
                (assets / name).write_bytes(payload)
                found.setdefault(row, {})[kind] = f"{ASSETS}/{name}"
    return found


def page_data(results: Sequence[QueryResults], index: IndexDirectory, top_n: int,
              previews: dict[int, dict], gates: tuple[np.ndarray, np.ndarray] | None,
              recall_k: int | None) -> list[dict]:
    """The per-query records the page renders (JSON-ready). `gates`: (weights, mask) [Q, n, T]
    from `gate_weights`; each card lists the weights of its valid frames (strip order)."""
    row_of = {video_id: i for i, video_id in enumerate(index.video_ids)}
    queries = []
    for q, result in enumerate(results):
        final = [row.video_id for row in result.rows]
        coarse_rank = coarse_ranks(result.rows)
        truth = set(result.truth)
        shown = []
        for slot, row in enumerate(result.rows[:top_n]):
            index_row = row_of[row.video_id]
            card = {"rank": row.rank, "video_id": row.video_id, "score": round(row.score, 4),
                    "coarse_score": round(row.coarse_score, 4),
                    "coarse_rank": coarse_rank[row.video_id], "truth": row.video_id in truth,
                    **previews.get(index_row, {})}
            if recall_k is not None:
                card["reranked"] = row.rank <= recall_k
            if gates is not None:
                weights = gates[0][q, slot][gates[1][q, slot]]
                card["gate"] = [round(float(w), 4) for w in weights]
                card["gate_frame"] = int(np.argmax(weights)) if weights.size else None
            shown.append(card)
        record = {"id": result.query_id, "text": result.text, "results": shown,
                  "list_length": len(result.rows), "truth": sorted(truth)}
        if truth:
            best = next((i for i, v in enumerate(final, start=1) if v in truth), None)
            record["truth_rank"] = best
            record["truth_coarse_rank"] = min((coarse_rank[v] for v in truth if v in coarse_rank),
                                              default=None)
        queries.append(record)
    return queries


def write_report(results: Sequence[QueryResults], index: IndexDirectory, output: str | Path,
                 model: ec.EercfModel | None = None, top_n: int = 10,
                 evaluation_dir: str | Path | None = None,
                 recall_k: int | None = None, title: str = "eercf results",
                 config: ec.ScoreConfig = ec.ScoreConfig()) -> Path | str:
    """Write the gallery folder `output` (index.html + assets/); returns the index.html path
    (a URL for an `output` URL: the folder is built locally and uploaded, index.html last).

    The folder is built under a hidden temp name and renamed at the end (an existing report at
    `output` is replaced). `model`: the model that extracted the indexed features, for the gate
    weights (None: no gate column). Ranked video ids must be in the index.
    """
    if top_n < 1:
        raise ValueError(f"top-n must be >= 1, got {top_n}")
    if not results:
        raise ValueError("no queries to report")
    started = time.perf_counter()
    row_of = {video_id: i for i, video_id in enumerate(index.video_ids)}
    rows = np.full((len(results), top_n), -1, dtype=np.int64)
    for q, result in enumerate(results):
        for slot, row in enumerate(result.rows[:top_n]):
            if row.video_id not in row_of:
                raise ValueError(f"query {result.query_id!r}: video {row.video_id!r} (rank "
                                 f"{row.rank}) is not in the index {index.path}")
            rows[q, slot] = row_of[row.video_id]
    if model is not None:
        index.check_model(model.identity.model_id, model.identity.checkpoint_sha256)
    if paths.is_url(str(output)) or (evaluation_dir and paths.is_url(str(evaluation_dir))):
        # Built in a local folder (evaluation fetched there), then uploaded, index.html last.
        with tempfile.TemporaryDirectory(prefix="eercf-report-") as staging:
            if evaluation_dir and paths.is_url(str(evaluation_dir)):
                evaluation_dir = download_tree(str(evaluation_dir), Path(staging) / "evaluation")
            local = (Path(staging) / "report" if paths.is_url(str(output))
                     else Path(paths.require_local(output, "report folder")))
            page_path = write_report(results, index, local, model, top_n, evaluation_dir,
                                     recall_k, title, config)
            if not paths.is_url(str(output)):
                return page_path
            upload_tree(local, str(output), last=("index.html",))
        return paths.join(str(output), "index.html")

    with atomic_directory(output, overwrite=True) as temp:
        (temp / ASSETS).mkdir()
        previews = _preview_assets(index, set(rows[rows >= 0].tolist()), temp / ASSETS)
        gates = None if model is None else gate_weights(model, index, results, rows, config)
        metrics, plots = _evaluation_summary(
            Path(evaluation_dir) if evaluation_dir else None, temp / ASSETS)
        data = {"title": title, "index": str(index.path), "num_videos": len(index.video_ids),
                "model_id": index.manifest.get("model_id"), "top_n": top_n,
                "recall_k": recall_k, "has_gate": gates is not None,
                "has_previews": bool(previews), "metrics": metrics, "plots": plots,
                "queries": page_data(results, index, top_n, previews, gates, recall_k)}
        (temp / "index.html").write_text(page.render(data), encoding="utf-8")
    log.info("report: %d queries, %d videos with previews, %.1f s", len(results), len(previews),
             time.perf_counter() - started)
    return Path(output) / "index.html"
