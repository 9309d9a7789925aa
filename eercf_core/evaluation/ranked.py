"""A ranked TSV + ground truth -> t2v and v2t R@1/5/10, MdR, MnR (method §8.4); what
`eercf evaluate` computes and prints.

Metrics for the reranked order (the file's ranks) and the coarse order (the same rows sorted by
coarse_score, ties by rank: the coarse top-N when the list is at least k long, as `eercf query`
writes by default).
Definitions, tie and multi-ground-truth rules: eercf_core.evaluation.metrics.

Video-to-text (each video's ground-truth captions are its texts) needs every caption scored against
every ground-truth video, so it is computed only when every ground-truth query's list holds every
ground-truth video (`eercf query --top-n 0`, or top-n >= the corpus size) and every query has one
ground-truth video; otherwise the output says "unavailable" and why (no censored v2t: a truncated
t2v list bounds neither a video's own caption-set score nor the others'). Two protocols:
`official_hybrid` (the official code: the t2v-reranked matrix, +100 on each caption's reranked
entries, S_V elsewhere) and `coarse` (the S_V matrix: a genuine single-stage v2t).
"""
from __future__ import annotations

import logging

import numpy as np

from eercf_core.evaluation import metrics
from eercf_core.files.text_formats import (
    FormatError,
    RankedRow,
    coarse_order,
    read_ground_truth,
    read_ranked,
    read_ranked_meta,
)
from eercf_core.index import read_video_ids

log = logging.getLogger(__name__)


def _known_videos(index_dir: str | None) -> set[str] | None:
    if not index_dir:
        return None
    try:
        return set(read_video_ids(index_dir))
    except ValueError as exc:
        log.warning("%s: ground-truth video ids not checked", exc)
        return None


def validate_truth(truth: dict, gt_path: str, ranked: dict, ranked_path: str,
                   known_videos: set[str] | None) -> None:
    """Every ground-truth query must be in the ranked file, every video in the index."""
    for query_id, items in truth.items():
        if query_id not in ranked:
            raise FormatError(gt_path, items[0][1], f"unknown query_id {query_id!r} (not in "
                              f"{ranked_path})")
        if known_videos is not None:
            for video_id, line in items:
                if video_id not in known_videos:
                    raise FormatError(gt_path, line, f"unknown video_id {video_id!r} (not in the "
                                      "index)")


def orders(ranked: dict[str, list[RankedRow]]) -> tuple[dict, dict]:
    """(reranked order, coarse order) of video ids per query."""
    rerank = {q: [r.video_id for r in rows] for q, rows in ranked.items()}
    coarse = {q: [r.video_id for r in coarse_order(rows)] for q, rows in ranked.items()}
    return rerank, coarse


# The official rerank offset (method §8.3): reranked entries sit 100 above coarse ones.
OFFICIAL_RERANK_OFFSET = 100.0
T2V_PROTOCOL = ("every ground-truth caption is a query, rank of its (best-ranked) video in "
                "the written order; MdR = lower median (torch.median, official "
                "tensor_text_to_video_metrics)")
V2T_PROTOCOLS = {
    "official_hybrid": "v2t as the official EERCF code computes it: max over each video's captions "
                       "of the t2v-reranked matrix (+100 on each caption's reranked entries, S_V "
                       "elsewhere), then compute_metrics (MdR = np.median); not a genuine "
                       "two-stage v2t (method §8.4 caveat)",
    "coarse": "v2t on the coarse S_V matrix (coarse_score), same multi-sentence layout and "
              "compute_metrics: a genuine single-stage v2t (method §11 item 6)",
}


def _reranked_depth(meta: dict) -> float | None:
    """Ranks <= this many carry a rerank score in the file (None: unknown without meta)."""
    mode = meta.get("mode")
    if mode == "exhaustive":
        return float("inf")
    if mode == "recall-only":
        return 0
    if mode == "two-stage" and meta.get("recall_k"):
        return meta["recall_k"]
    return None


def video_to_text(ranked: dict[str, list[RankedRow]], relevant: dict[str, list[str]],
                  meta: dict) -> dict:
    """v2t metrics per protocol (V2T_PROTOCOLS), or {"status": "unavailable", "reason"} for each.

    Captions = the ground-truth queries, videos = their ground-truth videos (in first-seen order);
    the score matrices [C, V] are read from the ranked rows.
    """
    def unavailable(reason: str) -> dict:
        return {name: {"status": "unavailable", "reason": reason, "protocol": text}
                for name, text in V2T_PROTOCOLS.items()}

    several = [q for q, videos in relevant.items() if len(set(videos)) > 1]
    if several:
        return unavailable(f"{len(several)} queries have several ground-truth videos (e.g. "
                           f"{several[0]!r}); v2t needs each caption to describe one video")
    captions = list(relevant)
    videos = list(dict.fromkeys(relevant[q][0] for q in captions))
    column = {v: j for j, v in enumerate(videos)}
    depth = _reranked_depth(meta)
    coarse = np.full((len(captions), len(videos)), np.nan)
    hybrid = np.full_like(coarse, np.nan)
    for i, query_id in enumerate(captions):
        for row in ranked[query_id]:
            j = column.get(row.video_id)
            if j is not None:
                coarse[i, j] = row.coarse_score
                hybrid[i, j] = row.score + (OFFICIAL_RERANK_OFFSET if depth and row.rank <= depth
                                            else 0.0)
    if np.isnan(coarse).any():
        i, j = np.argwhere(np.isnan(coarse))[0]
        return unavailable(f"query {captions[i]!r} does not list ground-truth video "
                           f"{videos[j]!r} (lists truncated at top-n {meta.get('top_n', '?')}); "
                           "v2t needs every caption scored against every video: rerun eercf "
                           "query with --top-n 0")
    caption_video = [column[relevant[q][0]] for q in captions]
    out: dict[str, dict] = {}
    for name, matrix in (("official_hybrid", hybrid), ("coarse", coarse)):
        if name == "official_hybrid" and depth is None:
            out[name] = {"status": "unavailable", "protocol": V2T_PROTOCOLS[name],
                         "reason": "no ranked.tsv.meta.json with the query mode and recall k: "
                                   "the reranked entries are unknown"}
            continue
        out[name] = {"status": "ok", **metrics.video_to_text_metrics(matrix, caption_video),
                     "num_captions": len(captions), "protocol": V2T_PROTOCOLS[name]}
    return out


def evaluate(ranked_path: str, gt_path: str, index_dir: str | None = None) -> dict:
    """Metrics of one ranked file: {"reranked": {...}, "coarse": {...}, plus ranks and facts}."""
    ranked = read_ranked(ranked_path)
    truth = read_ground_truth(gt_path)
    meta = read_ranked_meta(ranked_path)
    validate_truth(truth, gt_path, ranked, ranked_path,
                   _known_videos(index_dir or meta.get("index")))
    without_truth = sorted(set(ranked) - set(truth))
    if without_truth:
        log.warning("%d ranked queries have no ground truth and are not evaluated (e.g. %r)",
                    len(without_truth), without_truth[0])
    relevant = {q: [v for v, _ in items] for q, items in truth.items()}
    result: dict = {"ranked": str(ranked_path), "ground_truth": str(gt_path),
                    "recall_k": meta.get("recall_k"), "mode": meta.get("mode"),
                    "list_length": max(len(rows) for rows in ranked.values()),
                    "protocol": T2V_PROTOCOL}
    for name, order in zip(("reranked", "coarse"), orders(ranked)):
        ranks, censored = metrics.ranks_for_queries(order, relevant)
        result[name] = metrics.metrics_from_ranks(list(ranks.values()), censored)
        result[f"{name}_ranks"] = ranks
    result["v2t"] = video_to_text(ranked, relevant, meta)
    for name, item in result["v2t"].items():
        if item["status"] != "ok":
            log.warning("v2t %s unavailable: %s", name, item["reason"])
    if meta.get("recall_k") and result["list_length"] < meta["recall_k"]:
        log.warning("lists are shorter than recall k: the coarse order covers the listed videos "
                    "only")
    if result["reranked"]["censored"]:
        log.warning("%d queries have no ground-truth video in their list: MdR/MnR are lower "
                    "bounds (query with a larger --top-n, or --top-n 0 for all)",
                    result["reranked"]["censored"])
    return result


def markdown_table(result: dict, sweep: list[dict] | None = None) -> str:
    cols = ["R@1", "R@5", "R@10", "MdR", "MnR"]
    lines = ["| t2v order | " + " | ".join(cols) + " | queries | censored |",
             "|---|" + "---|" * (len(cols) + 2)]
    for name in ("coarse", "reranked"):
        m = result[name]
        lines.append(f"| {name} | " + " | ".join(f"{m[c]:.1f}" for c in cols)
                     + f" | {m['num_queries']} | {m['censored']} |")
    lines += ["", f"t2v protocol: {result['protocol']}", "",
              "| v2t protocol | " + " | ".join(cols) + " | videos | ties |",
              "|---|" + "---|" * (len(cols) + 2)]
    for name, m in result["v2t"].items():
        if m["status"] == "ok":
            lines.append(f"| {name} | " + " | ".join(f"{m[c]:.1f}" for c in cols)
                         + f" | {m['num_queries']} | {m['ties']} |")
        else:
            lines.append(f"| {name} | unavailable: {m['reason']} |" + " |" * (len(cols) + 1))
    lines += [""] + [f"- {name}: {text}" for name, text in V2T_PROTOCOLS.items()]
    if sweep:
        lines += ["", "| recall k | R@1 | R@5 | R@10 |", "|---|---|---|---|"]
        lines += [f"| {s['recall_k']} | {s['reranked']['R@1']:.1f} | {s['reranked']['R@5']:.1f} | "
                  f"{s['reranked']['R@10']:.1f} |" for s in sweep]
    return "\n".join(lines) + "\n"
