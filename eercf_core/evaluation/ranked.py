"""A ranked TSV + ground truth -> t2v and v2t R@1/5/10, MdR, MnR (method §8.4); what
`eercf evaluate` computes and prints.

Metrics for the reranked order (the file's ranks) and the coarse order (the same rows sorted by
coarse_score, ties by rank: the coarse top-N when the list is at least k long, as `eercf query`
writes by default).
Definitions, tie and multi-ground-truth rules: eercf_core.evaluation.metrics.

The ranked file is read once, in Arrow blocks (eercf_core.evaluation.ranked_reader), with memory
O(ground-truth queries + one block): no Python object per row, and v2t from the [V, V] grouped
maxima of the rows whose video is a ground-truth video, never a [captions x videos] matrix.

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
from collections.abc import Container

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from eercf_core.evaluation import metrics
from eercf_core.evaluation.ranked_reader import (
    DEFAULT_BLOCK_BYTES,
    FastPathRefused,
    RankedBlock,
    arrow_blocks,
    python_blocks,
)
from eercf_core.files.text_formats import (
    FormatError,
    read_ground_truth,
    read_ranked_meta,
)

log = logging.getLogger(__name__)


def _known_videos(index_dir: str | None) -> set[str] | None:
    if not index_dir:
        return None
    from eercf_core.index.directory import read_video_ids  # imports faiss and torch: only here

    try:
        return set(read_video_ids(index_dir))
    except ValueError as exc:
        log.warning("%s: ground-truth video ids not checked", exc)
        return None


def validate_truth(truth: dict, gt_path: str, ranked: Container[str], ranked_path: str,
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


# v2t score matrices are [V, V] float64, two of them; above this the v2t is refused up front.
V2T_MAX_BYTES = 2 << 30


class _Accumulator:
    """One pass over a ranked file's blocks: per ground-truth query the 0-based rank of its
    best-ranked ground-truth video in the reranked (file) order and in the coarse order (coarse
    score descending, ties by rank), and for v2t the grouped [V, V] maxima read sparsely from the
    rows whose video is a ground-truth video.

    Memory: O(queries) (ranks, the seen-query set) + O(block) + the v2t matrices when v2t is
    computable (every list holds every ground-truth video; refused up front otherwise)."""

    def __init__(self, truth: dict[str, list[tuple[str, int]]], meta: dict) -> None:
        self.truth = truth
        self.query_ids = list(truth)
        self.truth_index = {q: i for i, q in enumerate(self.query_ids)}
        # slot k: each query's k-th distinct ground-truth video ("" past its last one); a row is
        # relevant when its video equals one of its query's slots (string compare, no hashing)
        distinct = [list(dict.fromkeys(v for v, _ in items)) for items in truth.values()]
        self.num_relevant = np.array([len(d) for d in distinct], np.int64)
        self.slots = [pa.array([d[k] if k < len(d) else "" for d in distinct], pa.string())
                      for k in range(int(self.num_relevant.max()))]
        num = len(self.query_ids)
        self.rerank = np.full(num, -1, np.int64)
        self.coarse = np.full(num, -1, np.int64)
        self.censored = np.zeros(num, bool)
        self.seen: set[str] = set()
        self.list_length = 0
        self.rows = 0
        self.without_truth = 0
        self.without_truth_example: str | None = None
        self.carry: dict[str, np.ndarray] | None = None
        self.carry_qid: list[str] = []
        self.last_qid: str | None = None
        self.depth = _reranked_depth(meta)
        self.v2t_reason = self._v2t_up_front(truth, meta)
        self.grouped: dict[str, np.ndarray] = {}

    def _v2t_up_front(self, truth: dict, meta: dict) -> str | None:
        """Why v2t cannot be computed, known before reading the ranked file (None: maybe it can)."""
        several = [q for q, items in truth.items() if len({v for v, _ in items}) > 1]
        if several:
            return (f"{len(several)} queries have several ground-truth videos (e.g. "
                    f"{several[0]!r}); v2t needs each caption to describe one video")
        videos = list(dict.fromkeys(items[0][0] for items in truth.values()))
        self.videos = pa.array(videos, pa.string())
        column = {v: j for j, v in enumerate(videos)}
        self.caption_column = np.array([column[items[0][0]] for items in truth.values()],
                                       np.int64)
        self.v2t_listed = np.zeros(len(truth), np.int64)
        num_videos = len(videos)
        top_n = meta.get("top_n")
        if isinstance(top_n, int) and 0 < top_n < num_videos:
            return (f"lists truncated at top-n {top_n}, fewer than the {num_videos} ground-truth "
                    "videos; v2t needs every caption scored against every video: rerun eercf "
                    "query with --top-n 0")
        need = 2 * 8 * num_videos * num_videos
        if need > V2T_MAX_BYTES:
            return (f"v2t over {num_videos} ground-truth videos needs two [V, V] float64 "
                    f"matrices ({need / 2**30:.1f} GiB), over the {V2T_MAX_BYTES / 2**30:.0f} "
                    "GiB limit")
        return None

    def add(self, block: RankedBlock) -> None:
        """Take one block; complete query groups are scored, the last one waits for the next."""
        n = len(block)
        if n == 0:
            return
        queries = block.query_id
        change = np.empty(n, bool)
        change[0] = self.last_qid is None or queries[0].as_py() != self.last_qid
        if n > 1:
            change[1:] = pc.not_equal(queries[1:], queries[:-1]).to_numpy(zero_copy_only=False)
        qids = queries.take(pa.array(np.flatnonzero(change))).to_pylist()
        self.last_qid = queries[n - 1].as_py()
        t_group = np.array([self.truth_index.get(q, -1) for q in qids], np.int64)
        t_row = t_group[np.cumsum(change) - 1] if change[0] else np.concatenate(
            [[self._carry_truth()], t_group])[np.cumsum(change)]
        arrays = {"rank": block.rank, "score": block.score, "coarse": block.coarse_score,
                  "start": change, "relevant": self._relevant(block.video_id, t_row)}
        if self.v2t_reason is None:
            arrays["column"] = pc.fill_null(pc.index_in(block.video_id, value_set=self.videos),
                                            -1).to_numpy(zero_copy_only=False)
        if self.carry is not None:
            arrays = {k: np.concatenate([self.carry[k], v]) for k, v in arrays.items()}
            qids = self.carry_qid + qids
        last = int(np.flatnonzero(arrays["start"])[-1])
        self._groups({k: v[:last] for k, v in arrays.items()}, qids[:-1])
        self.carry = {k: v[last:] for k, v in arrays.items()}
        self.carry_qid = qids[-1:]

    def _carry_truth(self) -> int:
        """Truth index of the group carried over from the previous block (-1: none)."""
        return self.truth_index.get(self.carry_qid[0], -1) if self.carry_qid else -1

    def _relevant(self, videos: pa.Array, t_row: np.ndarray) -> np.ndarray:
        """[n] bool: row video is a ground-truth video of the row's query (t_row -1: no truth)."""
        relevant = np.zeros(len(t_row), bool)
        for k, slot in enumerate(self.slots):
            rows = np.flatnonzero(t_row >= 0) if k == 0 else \
                np.flatnonzero((t_row >= 0) & (self.num_relevant[np.maximum(t_row, 0)] > k))
            if rows.size == 0:
                break
            expected = slot.take(pa.array(t_row[rows]))
            got = videos.take(pa.array(rows)) if rows.size < len(t_row) else videos
            relevant[rows] |= pc.equal(got, expected).to_numpy(zero_copy_only=False)
        return relevant

    def finish(self) -> None:
        if self.carry is not None:
            self._groups(self.carry, self.carry_qid)
            self.carry = None

    def _groups(self, a: dict[str, np.ndarray], qids: list[str]) -> None:
        """Score whole query groups: rows [n] of len(qids) complete groups in file order."""
        n = len(a["rank"])
        if n == 0:
            return
        self.rows += n
        starts = np.flatnonzero(a["start"])
        gid = np.cumsum(a["start"]) - 1
        lengths = np.diff(np.append(starts, n))
        pos = np.arange(n) - starts[gid]
        if (a["rank"] != pos + 1).any():
            raise FastPathRefused("ranks do not run 1, 2, ... per query")
        for qid in qids:
            if qid in self.seen:
                raise FastPathRefused(f"query {qid!r} appears in two groups")
            self.seen.add(qid)
        self.list_length = max(self.list_length, int(lengths.max()))
        t_group = np.array([self.truth_index.get(q, -1) for q in qids], np.int64)
        missing = t_group < 0
        if missing.any():
            self.without_truth += int(missing.sum())
            if self.without_truth_example is None:
                self.without_truth_example = qids[int(np.flatnonzero(missing)[0])]
        relevant = a["relevant"]
        rerank = lengths.copy()
        np.minimum.at(rerank, gid[relevant], pos[relevant])
        # coarse order = (coarse desc, rank asc); its best relevant row per group is the first
        # relevant row in that order, and its position = rows of the group strictly before it
        rel_rows = np.flatnonzero(relevant)
        rel_rows = rel_rows[np.lexsort((a["rank"][rel_rows], -a["coarse"][rel_rows],
                                        gid[rel_rows]))]
        first = np.ones(rel_rows.size, bool)
        first[1:] = gid[rel_rows][1:] != gid[rel_rows][:-1]
        best = rel_rows[first]
        hit = np.zeros(len(qids), bool)
        hit[gid[best]] = True
        best_coarse = np.full(len(qids), np.nan)
        best_rank = np.zeros(len(qids), np.int64)
        best_coarse[gid[best]] = a["coarse"][best]
        best_rank[gid[best]] = a["rank"][best]
        row_best = best_coarse[gid]
        before = (a["coarse"] > row_best) | ((a["coarse"] == row_best)
                                             & (a["rank"] < best_rank[gid]))
        coarse = np.where(hit, np.bincount(gid, weights=before, minlength=len(qids)),
                          lengths).astype(np.int64)
        ok = ~missing
        self.rerank[t_group[ok]] = rerank[ok]
        self.coarse[t_group[ok]] = coarse[ok]
        self.censored[t_group[ok]] = ~hit[ok]
        if self.v2t_reason is None:
            self._v2t(a, gid, t_group, lengths, qids)

    def _v2t(self, a: dict[str, np.ndarray], gid: np.ndarray, t_group: np.ndarray,
             lengths: np.ndarray, qids: list[str]) -> None:
        num_videos = len(self.videos)
        short = (t_group >= 0) & (lengths < num_videos)
        if short.any():
            g = int(np.flatnonzero(short)[0])
            self.v2t_reason = (f"query {qids[g]!r} lists {int(lengths[g])} videos, fewer than "
                               f"the {num_videos} ground-truth videos; v2t needs every caption "
                               "scored against every video: rerun eercf query with --top-n 0")
            self.grouped = {}
            return
        if not self.grouped:
            self.grouped = {"coarse": np.full((num_videos, num_videos), -np.inf)}
            if self.depth is not None:
                self.grouped["official_hybrid"] = np.full((num_videos, num_videos), -np.inf)
        t_row = t_group[gid]
        take = (a["column"] >= 0) & (t_row >= 0)
        captions, columns = t_row[take], a["column"][take]
        own = self.caption_column[captions]
        np.add.at(self.v2t_listed, captions, 1)
        np.maximum.at(self.grouped["coarse"], (own, columns), a["coarse"][take])
        if "official_hybrid" in self.grouped:
            bonus = np.where(a["rank"][take] <= self.depth, OFFICIAL_RERANK_OFFSET, 0.0) \
                if self.depth else 0.0
            np.maximum.at(self.grouped["official_hybrid"], (own, columns),
                          a["score"][take] + bonus)

    def video_to_text(self, meta: dict) -> dict:
        """v2t metrics per protocol (V2T_PROTOCOLS), or {"status": "unavailable", "reason"}."""
        def unavailable(reason: str) -> dict:
            return {name: {"status": "unavailable", "reason": reason, "protocol": text}
                    for name, text in V2T_PROTOCOLS.items()}

        if self.v2t_reason is not None:
            return unavailable(self.v2t_reason)
        num_videos = len(self.videos)
        incomplete = np.flatnonzero(self.v2t_listed != num_videos)
        if incomplete.size:
            i = int(incomplete[0])
            return unavailable(
                f"query {self.query_ids[i]!r} lists {int(self.v2t_listed[i])} of the "
                f"{num_videos} ground-truth videos (lists truncated at top-n "
                f"{meta.get('top_n', '?')}, or a video listed twice); v2t needs every caption "
                "scored against every video: rerun eercf query with --top-n 0")
        out: dict[str, dict] = {}
        for name in V2T_PROTOCOLS:
            if name not in self.grouped:
                out[name] = {"status": "unavailable", "protocol": V2T_PROTOCOLS[name],
                             "reason": "no ranked.tsv.meta.json with the query mode and recall "
                                       "k: the reranked entries are unknown"}
                continue
            out[name] = {"status": "ok", **metrics.video_to_text_metrics_grouped(
                self.grouped[name]), "num_captions": len(self.query_ids),
                "protocol": V2T_PROTOCOLS[name]}
        return out


def _accumulate(ranked_path: str, truth: dict, meta: dict, block_bytes: int) -> _Accumulator:
    """One pass over the ranked file (Arrow; line by line when Arrow refuses it, see
    eercf_core.evaluation.ranked_reader)."""
    acc = _Accumulator(truth, meta)
    try:
        for block in arrow_blocks(ranked_path, block_bytes):
            acc.add(block)
        acc.finish()
        if acc.rows:
            return acc
    except FastPathRefused as exc:
        log.debug("%s: read line by line (%s)", ranked_path, exc)  # its errors name the line
    acc = _Accumulator(truth, meta)
    for block in python_blocks(ranked_path):
        acc.add(block)
    acc.finish()
    return acc


def evaluate(ranked_path: str, gt_path: str, index_dir: str | None = None,
             block_bytes: int = DEFAULT_BLOCK_BYTES) -> dict:
    """Metrics of one ranked file: {"reranked": {...}, "coarse": {...}, plus ranks and facts}.

    One streaming pass over the ranked file: memory O(ground-truth queries + block_bytes), plus
    the v2t [V, V] matrices when every list holds every ground-truth video."""
    truth = read_ground_truth(gt_path)
    meta = read_ranked_meta(ranked_path)
    acc = _accumulate(ranked_path, truth, meta, block_bytes)
    validate_truth(truth, gt_path, acc.seen, ranked_path,
                   _known_videos(index_dir or meta.get("index")))
    if acc.without_truth:
        log.warning("%d ranked queries have no ground truth and are not evaluated (e.g. %r)",
                    acc.without_truth, acc.without_truth_example)
    result: dict = {"ranked": str(ranked_path), "ground_truth": str(gt_path),
                    "recall_k": meta.get("recall_k"), "mode": meta.get("mode"),
                    "list_length": acc.list_length, "protocol": T2V_PROTOCOL}
    censored = int(acc.censored.sum())
    for name, ranks in (("reranked", acc.rerank), ("coarse", acc.coarse)):
        result[name] = metrics.metrics_from_ranks(ranks, censored)
        result[f"{name}_ranks"] = dict(zip(acc.query_ids, ranks.tolist()))
    result["v2t"] = acc.video_to_text(meta)
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
