"""Streaming evaluate (one pass, Arrow blocks) against the dense reference it replaced: the
same t2v and v2t metrics on random ranked files, block boundaries inside query groups, the
line-by-line fallback, and the errors that name file:line."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from eercf_core.evaluation import metrics
from eercf_core.evaluation import ranked as evaluate
from eercf_core.evaluation.ranked_reader import FastPathRefused, arrow_blocks, python_blocks
from eercf_core.files.text_formats import (
    FormatError,
    coarse_order,
    read_ground_truth,
    read_ranked,
)


def _reference(ranked_path: str, gt_path: str, depth: float | None) -> dict:
    """The pre-streaming evaluate: every row a Python object, dense [C, V] v2t matrices."""
    ranked = read_ranked(ranked_path)
    truth = read_ground_truth(gt_path)
    relevant = {q: [v for v, _ in items] for q, items in truth.items()}
    out = {}
    for name, order in (("reranked", {q: [r.video_id for r in rows] for q, rows in ranked.items()}),
                        ("coarse", {q: [r.video_id for r in coarse_order(rows)]
                                    for q, rows in ranked.items()})):
        ranks, censored = metrics.ranks_for_queries(order, relevant)
        out[name] = metrics.metrics_from_ranks(list(ranks.values()), censored)
        out[f"{name}_ranks"] = ranks
    captions = list(relevant)
    if any(len(set(v)) > 1 for v in relevant.values()):
        return out
    videos = list(dict.fromkeys(relevant[q][0] for q in captions))
    column = {v: j for j, v in enumerate(videos)}
    coarse = np.full((len(captions), len(videos)), np.nan)
    hybrid = np.full_like(coarse, np.nan)
    for i, q in enumerate(captions):
        for row in ranked[q]:
            j = column.get(row.video_id)
            if j is not None:
                coarse[i, j] = row.coarse_score
                hybrid[i, j] = row.score + (100.0 if depth and row.rank <= depth else 0.0)
    if np.isnan(coarse).any():
        return out
    own = [column[relevant[q][0]] for q in captions]
    out["v2t"] = {"coarse": metrics.video_to_text_metrics(coarse, own),
                  "official_hybrid": metrics.video_to_text_metrics(hybrid, own)}
    return out


def _write(tmp_path, rng, num_queries=40, num_videos=12, top_n=12, recall_k=5, several=False,
           header=True, extra_queries=3):
    videos = [f"v{i}" for i in range(num_videos)]
    truth = [(f"q{i}", videos[rng.integers(num_videos)]) for i in range(num_queries)]
    if several:
        truth.append(("q0", videos[(videos.index(truth[0][1]) + 1) % num_videos]))
    lines = ["query_id\trank\tvideo_id\tscore\tcoarse_score\n"] if header else []
    queries = [q for q, _ in truth[:num_queries]] + [f"x{i}" for i in range(extra_queries)]
    for q in queries:
        listed = rng.permutation(num_videos)[:top_n]
        score = np.sort(rng.integers(0, 6, top_n) / 4.0)[::-1]  # ties on purpose
        coarse = rng.integers(0, 4, top_n) / 8.0
        lines += [f"{q}\t{r + 1}\t{videos[j]}\t{s:.6f}\t{c:.6f}\n"
                  for r, (j, s, c) in enumerate(zip(listed, score, coarse))]
    ranked = tmp_path / "r.tsv"
    ranked.write_text("".join(lines))
    (tmp_path / "r.tsv.meta.json").write_text(json.dumps({"recall_k": recall_k,
                                                          "mode": "two-stage", "top_n": top_n}))
    gt = tmp_path / "gt.tsv"
    gt.write_text("".join(f"{q}\t{v}\n" for q, v in truth))
    return str(ranked), str(gt)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("block_bytes", [128, 1 << 20])
def test_streaming_matches_dense_reference(tmp_path, seed, block_bytes):
    rng = np.random.default_rng(seed)
    top_n = [12, 12, 7, 12, 3, 12][seed]
    ranked, gt = _write(tmp_path, rng, top_n=top_n, several=seed == 3, header=seed % 2 == 0)
    result = evaluate.evaluate(ranked, gt, block_bytes=block_bytes)
    reference = _reference(ranked, gt, depth=5)
    for name in ("reranked", "coarse"):
        assert result[name] == reference[name]
        assert result[f"{name}_ranks"] == reference[f"{name}_ranks"]
    assert result["list_length"] == top_n
    if "v2t" in reference:
        for name, expected in reference["v2t"].items():
            got = dict(result["v2t"][name])
            assert got.pop("status") == "ok" and got.pop("num_captions") == 40
            got.pop("protocol")
            assert got == expected
    else:
        assert {m["status"] for m in result["v2t"].values()} == {"unavailable"}


def test_arrow_and_line_paths_give_the_same_blocks(tmp_path):
    ranked, _ = _write(tmp_path, np.random.default_rng(0))
    def columns(blocks):
        blocks = list(blocks)
        return ([v for b in blocks for v in b.query_id.to_pylist()],
                np.concatenate([b.rank for b in blocks]).tolist(),
                [v for b in blocks for v in b.video_id.to_pylist()],
                np.concatenate([b.score for b in blocks]).tolist(),
                np.concatenate([b.coarse_score for b in blocks]).tolist())
    assert columns(arrow_blocks(ranked, 256)) == columns(python_blocks(ranked, 7))


def test_line_path_reads_what_arrow_refuses(tmp_path):
    ranked, gt = _write(tmp_path, np.random.default_rng(1))
    text = Path(ranked).read_text().replace("\t1\t", "\t+1\t", 1)  # int("+1") is fine, Arrow is not
    Path(ranked).write_text(text)
    with pytest.raises(FastPathRefused):
        list(arrow_blocks(ranked))
    assert evaluate.evaluate(ranked, gt)["reranked"] == _reference(ranked, gt, 5)["reranked"]


@pytest.mark.parametrize(("edit", "message"), [
    (lambda t: t.replace("q1\t2\t", "q1\t3\t", 1), r"r.tsv:\d+: query 'q1': rank 3 follows rank 1"),
    (lambda t: t + "q0\t1\tv1\t1.0\t1.0\n", r"r.tsv:\d+: query 'q0': rank 1 follows rank 12"),
    (lambda t: t.replace("\n", "\tx\n", 3), r"r.tsv:1: expected 5 tab-separated fields"),
    (lambda t: t.replace("q3\t1\t", "q3\tone\t", 1), r"r.tsv:\d+: rank must be an integer"),
])
def test_bad_ranked_files_name_file_and_line(tmp_path, edit, message):
    ranked, gt = _write(tmp_path, np.random.default_rng(2))
    text = edit(Path(ranked).read_text())
    Path(ranked).write_text(text)
    with pytest.raises(FormatError, match=message):
        evaluate.evaluate(ranked, gt, block_bytes=256)


def test_non_finite_score_names_line(tmp_path):
    ranked, gt = _write(tmp_path, np.random.default_rng(3))
    lines = Path(ranked).read_text().splitlines(keepends=True)
    fields = lines[5].split("\t")
    lines[5] = "\t".join(fields[:3] + ["nan", fields[4]])
    Path(ranked).write_text("".join(lines))
    with pytest.raises(FormatError, match=r"r.tsv:6: scores must be finite"):
        evaluate.evaluate(ranked, gt)


def test_v2t_refused_up_front_when_top_n_is_short(tmp_path):
    ranked, gt = _write(tmp_path, np.random.default_rng(4), top_n=5)
    v2t = evaluate.evaluate(ranked, gt)["v2t"]
    assert {m["status"] for m in v2t.values()} == {"unavailable"}
    assert "top-n 5" in v2t["coarse"]["reason"] and "--top-n 0" in v2t["coarse"]["reason"]


def test_v2t_refused_when_the_matrices_would_be_too_big(tmp_path, monkeypatch):
    monkeypatch.setattr(evaluate, "V2T_MAX_BYTES", 100)
    ranked, gt = _write(tmp_path, np.random.default_rng(5))
    reason = evaluate.evaluate(ranked, gt)["v2t"]["coarse"]["reason"]
    assert "GiB limit" in reason
