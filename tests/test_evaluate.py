"""eercf evaluate on hand-made ranked files: metrics, coarse order, plots, sweep, bad input."""
from __future__ import annotations

import json

import pytest

from eercf_core.evaluation import ranked as evaluate
from eercf_core.files.text_formats import FormatError, read_queries
from pipelines.commands import evaluate as evaluate_command

# q1: reranked puts v2 first; coarse order (by coarse_score) puts v1 first.
RANKED = """query_id\trank\tvideo_id\tscore\tcoarse_score
q1\t1\tv2\t150.0\t20.0
q1\t2\tv1\t140.0\t30.0
q1\t3\tv3\t130.0\t10.0
q2\t1\tv3\t150.0\t30.0
q2\t2\tv2\t149.0\t30.0
q2\t3\tv1\t120.0\t5.0
"""


def _files(tmp_path, ranked=RANKED, truth="q1\tv2\nq2\tv2\nq2\tv1\n", recall_k=3, name="r.tsv"):
    (tmp_path / name).write_text(ranked)
    meta = {"recall_k": recall_k, "mode": "two-stage"}
    (tmp_path / f"{name}.meta.json").write_text(json.dumps(meta))
    (tmp_path / "gt.tsv").write_text("query_id\tvideo_id\n" + truth)
    return str(tmp_path / name), str(tmp_path / "gt.tsv")


def test_metrics_reranked_and_coarse(tmp_path):
    ranked, gt = _files(tmp_path)
    result = evaluate.evaluate(ranked, gt)
    # reranked: q1 rank 0, q2 best of {v2 at 1, v1 at 2} = 1 -> R@1 50, MdR lower median(1,2) = 1
    assert result["reranked_ranks"] == {"q1": 0, "q2": 1}
    assert result["reranked"]["R@1"] == 50.0 and result["reranked"]["MdR"] == 1.0
    assert result["reranked"]["MnR"] == 1.5
    # coarse: q1 order v1, v2, v3 -> rank 1; q2 tie at 30 keeps file order v3, v2 -> v2 rank 1
    assert result["coarse_ranks"] == {"q1": 1, "q2": 1}
    assert result["coarse"]["R@1"] == 0.0 and result["coarse"]["R@5"] == 100.0


def test_run_writes_json_markdown_plots_and_sweep(tmp_path):
    ranked, gt = _files(tmp_path)
    other, _ = _files(tmp_path, recall_k=1, name="r1.tsv")
    out = tmp_path / "eval"
    assert evaluate_command.run(["--ranked", ranked, "--ground-truth", gt, "--output", str(out),
                         "--sweep", other, ranked]) == 0
    payload = json.loads((out / "metrics.json").read_text())
    assert payload["reranked"]["R@1"] == 50.0
    assert [s["recall_k"] for s in payload["sweep"]] == [1, 3]
    assert "| reranked | 50.0 |" in (out / "metrics.md").read_text()
    for name in ("recall_at_k.png", "r1_vs_k.png"):
        assert (out / name).read_bytes()[:4] == b"\x89PNG"


def test_unknown_ids_name_file_and_line(tmp_path):
    ranked, gt = _files(tmp_path, truth="q1\tv2\nq9\tv1\n")
    with pytest.raises(FormatError, match=r"gt.tsv:3: unknown query_id 'q9'"):
        evaluate.evaluate(ranked, gt)
    ranked, gt = _files(tmp_path, truth="q1\tv2\nq2\tnope\n")
    index = tmp_path / "idx"
    index.mkdir()
    (index / "video_ids.json").write_text(json.dumps(["v1", "v2", "v3"]))
    with pytest.raises(FormatError, match=r"gt.tsv:3: unknown video_id 'nope'"):
        evaluate_command.run(["--ranked", ranked, "--ground-truth", gt, "--output",
                      str(tmp_path / "out"), "--index", str(index)])
    assert not (tmp_path / "out" / "metrics.json").exists()


def test_malformed_ranked_and_truth(tmp_path):
    ranked, gt = _files(tmp_path, ranked=RANKED.replace("q1\t3\tv3", "q1\t4\tv3"))
    with pytest.raises(FormatError, match=r"r.tsv:4: query 'q1': rank 4 follows rank 2"):
        evaluate.evaluate(ranked, gt)
    ranked, gt = _files(tmp_path, truth="q1\tv2\textra\n")
    with pytest.raises(FormatError, match=r"gt.tsv:2: expected 'query_id<TAB>video_id'"):
        evaluate.evaluate(ranked, gt)


@pytest.mark.parametrize(("content", "message"), [
    (b"q1\tok\n\tno id\n", r":2: missing query_id"),
    (b"q1\tok\nq2\t \n", r":2: query 'q2' has empty text"),
    (b"q1\tok\nq2\t\xff\xfe bad\n", r":2: not valid UTF-8"),
    (b"q1\tok\nq1\tagain\n", r":2: duplicate query_id 'q1' \(first on line 1\)"),
    (b"q1 no tab\n", r":1: expected 'query_id<TAB>text'"),
])
def test_malformed_query_files(tmp_path, content, message):
    path = tmp_path / "q.tsv"
    path.write_bytes(content)
    with pytest.raises(FormatError, match=message):
        read_queries(str(path))


def test_query_formats_tsv_header_and_jsonl(tmp_path):
    tsv = tmp_path / "q.tsv"
    tsv.write_text("query_id\ttext\nq1\ta dog\twith tab\n\nq2\tcat\n")
    assert [(q.query_id, q.text) for q in read_queries(str(tsv))] == [("q1", "a dog\twith tab"),
                                                                      ("q2", "cat")]
    jsonl = tmp_path / "q.jsonl"
    jsonl.write_text('{"query_id": "a", "text": "x"}\n{"query_id": 7, "text": "y"}\n')
    assert [(q.query_id, q.line) for q in read_queries(str(jsonl))] == [("a", 1), ("7", 2)]
    jsonl.write_text('{"query_id": "a"}\n')
    with pytest.raises(FormatError, match=r"q.jsonl:1: query 'a' has empty text"):
        read_queries(str(jsonl))


# c1, c2 describe video a, c3 video b; recall k = 1: only rank 1 of each caption is reranked.
V2T_RANKED = """query_id\trank\tvideo_id\tscore\tcoarse_score
c1\t1\ta\t0.9\t0.3
c1\t2\tb\t0.6\t0.6
c2\t1\tb\t0.5\t0.7
c2\t2\ta\t0.4\t0.4
c3\t1\ta\t0.95\t0.35
c3\t2\tb\t0.2\t0.2
"""
V2T_TRUTH = "c1\ta\nc2\ta\nc3\tb\n"


def test_video_to_text_official_hybrid_and_coarse(tmp_path):
    ranked, gt = _files(tmp_path, ranked=V2T_RANKED, truth=V2T_TRUTH, recall_k=1)
    v2t = evaluate.evaluate(ranked, gt)["v2t"]
    # hybrid (+100 on rank 1): set a = max(c1, c2) = [100.9, 100.5], set b = c3 = [100.95, 0.2]
    # -> video a: 100.9 < 100.95 rank 1; video b: 0.2 < 100.5 rank 1.
    hybrid = v2t["official_hybrid"]
    assert hybrid["status"] == "ok" and hybrid["R@1"] == 0.0 and hybrid["MdR"] == 2.0
    assert "t2v-reranked" in hybrid["protocol"] and hybrid["num_queries"] == 2
    # coarse: set a = [0.4, 0.7], set b = [0.35, 0.2] -> video a rank 0, video b rank 1.
    coarse = v2t["coarse"]
    assert coarse["R@1"] == 50.0 and coarse["MdR"] == 1.5 and coarse["MnR"] == 1.5
    assert coarse["num_captions"] == 3


def test_video_to_text_unavailable_says_why(tmp_path):
    truncated = "\n".join(V2T_RANKED.splitlines()[:-1]) + "\n"
    ranked, gt = _files(tmp_path, ranked=truncated, truth=V2T_TRUTH, recall_k=1)
    v2t = evaluate.evaluate(ranked, gt)["v2t"]
    assert {m["status"] for m in v2t.values()} == {"unavailable"}
    assert "--top-n 0" in v2t["coarse"]["reason"] and "'c3'" in v2t["coarse"]["reason"]
    ranked, gt = _files(tmp_path)  # q2 has two ground-truth videos
    out = tmp_path / "eval"
    assert evaluate_command.run(["--ranked", ranked, "--ground-truth", gt, "--output", str(out),
                         "--no-plots"]) == 0
    table = (out / "metrics.md").read_text()
    assert "| official_hybrid | unavailable: 1 queries have several ground-truth videos" in table
    written = json.loads((out / "metrics.json").read_text())
    assert written["v2t"]["coarse"]["status"] == "unavailable"


def test_video_to_text_without_meta_reports_coarse_only(tmp_path):
    ranked, gt = _files(tmp_path, ranked=V2T_RANKED, truth=V2T_TRUTH)
    (tmp_path / "r.tsv.meta.json").unlink()
    v2t = evaluate.evaluate(ranked, gt)["v2t"]
    assert v2t["coarse"]["status"] == "ok"
    assert v2t["official_hybrid"]["status"] == "unavailable"
    assert "meta.json" in v2t["official_hybrid"]["reason"]
