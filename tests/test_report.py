"""eercf report and eercf search on a small indexed corpus: page data, assets, errors, and search ==
query (same two-stage path)."""
from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pytest

import eercf_core as ec
from eercf_core.files.text_formats import read_ranked
from eercf_core.index import open_index
from eercf_core.report import load_results, write_report
from eercf_core.video.previews import open_previews
from pipelines.commands import evaluate, report, search
from tests.report_fixtures import CAPTIONS, make_corpus


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return make_corpus(tmp_path_factory.mktemp("report"))


def page_data(html_path) -> dict:
    html = html_path.read_text()
    match = re.search(r'<script id="report-data" type="application/json">(.*?)</script>', html,
                      re.S)
    return json.loads(match.group(1))


def _softmax(x):
    e = np.exp(x - x.max())
    return e / e.sum()


def test_report_page_data_assets_and_metrics(corpus, tmp_path, capsys):
    evaluate.run(["--ranked", str(corpus.ranked), "--ground-truth", str(corpus.truth),
                  "--output", str(tmp_path / "eval")])
    out = tmp_path / "report"
    assert report.run(["--ranked", str(corpus.ranked), "--queries", str(corpus.queries),
                       "--index", str(corpus.index), "--model", corpus.checkpoint,
                       "--ground-truth", str(corpus.truth), "--evaluation", str(tmp_path / "eval"),
                       "--top-n", "6", "--output", str(out)]) == 0
    assert str(out / "index.html") in capsys.readouterr().out
    html = (out / "index.html").read_text()
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html)  # nothing remote
    data = page_data(out / "index.html")
    ranked = read_ranked(str(corpus.ranked))
    index = open_index(corpus.index)
    store = open_previews(corpus.index)
    model = ec.load_model(corpus.checkpoint, device="cpu")
    assert [q["id"] for q in data["queries"]] == list(ranked)
    assert data["recall_k"] == 5 and data["has_gate"] and data["has_previews"]
    for q, caption in zip(data["queries"], CAPTIONS):
        rows = ranked[q["id"]]
        assert q["text"] == caption and len(q["results"]) == 6
        coarse_order = [r.video_id for r in sorted(rows, key=lambda r: (-r.coarse_score, r.rank))]
        truth = corpus.truth_of[q["id"]]
        assert q["truth"] == [truth]
        assert q["truth_rank"] == [r.video_id for r in rows].index(truth) + 1
        assert q["truth_coarse_rank"] == coarse_order.index(truth) + 1
        text = model.encode_text([caption])[0].numpy()
        for card, row in zip(q["results"], rows):
            assert (card["rank"], card["video_id"]) == (row.rank, row.video_id)
            assert card["score"] == pytest.approx(row.score, abs=1e-4)
            assert card["coarse_rank"] == coarse_order.index(row.video_id) + 1
            assert card["truth"] == (row.video_id == truth)
            assert card["reranked"] == (row.rank <= 5)
            store_row = index.video_ids.index(row.video_id)
            assert (out / card["thumb"]).read_bytes() == store.get(store_row)
            assert (out / card["strip"]).read_bytes() == store.get(store_row, "strip")
            # the text gate: softmax over valid frames of s·f_t / 0.1 (method §6.2)
            valid = index.store.read("mask", [store_row])[0]
            frames = index.store.read("frame", [store_row])[0].astype(np.float32)[valid]
            expected = _softmax(frames @ text / 0.1)
            np.testing.assert_allclose(card["gate"], expected, atol=2e-3)
            assert card["gate_frame"] == int(np.argmax(expected))
    assert data["metrics"]["reranked"]["num_queries"] == 7
    assert data["plots"] == ["assets/recall_at_k.png"]
    assert (out / "assets" / "recall_at_k.png").is_file()


def test_report_without_model_or_preview_store(corpus, tmp_path):
    old_index = tmp_path / "old-index"
    shutil.copytree(corpus.index, old_index)
    shutil.rmtree(old_index / "previews")  # an index built before previews existed
    out = tmp_path / "r"
    page = write_report(load_results(str(corpus.ranked), str(corpus.queries)),
                               open_index(old_index), out, top_n=3)
    data = page_data(page)
    assert not data["has_gate"] and not data["has_previews"]
    card = data["queries"][0]["results"][0]
    assert "thumb" not in card and "gate" not in card and "truth" in card
    assert list((out / "assets").iterdir()) == []
    # a rerun replaces the folder
    write_report(load_results(str(corpus.ranked), str(corpus.queries)),
                        open_index(old_index), out, top_n=2)
    assert len(page_data(page)["queries"][0]["results"]) == 2


def test_report_bad_inputs_name_the_problem(corpus, tmp_path):
    short = tmp_path / "short.tsv"
    short.write_text("q0\ta red car drives\n")
    with pytest.raises(ValueError, match=r"short.tsv: no text for 6 ranked queries"):
        load_results(str(corpus.ranked), str(short))
    results = load_results(str(corpus.ranked), str(corpus.queries))
    results[0].rows[0] = results[0].rows[0].__class__("q0", 1, "ghost", 1.0, 1.0)
    index = open_index(corpus.index)
    with pytest.raises(ValueError, match=r"video 'ghost' .* not in the index"):
        write_report(results, index, tmp_path / "r")
    results = load_results(str(corpus.ranked), str(corpus.queries))
    (tmp_path / "empty-eval").mkdir()
    with pytest.raises(ValueError, match=r"empty-eval: no metrics.json"):
        write_report(results, index, tmp_path / "r", evaluation_dir=tmp_path / "empty-eval")
    assert not (tmp_path / "r").exists()  # nothing half-written
    with pytest.raises(ValueError, match="top-n must be >= 1"):
        write_report(results, index, tmp_path / "r", top_n=0)


def test_search_ranks_like_query_and_writes_gallery(corpus, tmp_path, capsys):
    texts = [CAPTIONS[1], CAPTIONS[4]]
    assert search.run(["--index", str(corpus.index), "--model", corpus.checkpoint,
                       "--recall-k", "5", "--top-n", "8", "--html", str(tmp_path / "g"),
                       *texts]) == 0
    printed = capsys.readouterr().out
    ranked = read_ranked(str(corpus.ranked))
    for number, query_id in ((1, "q1"), (2, "q4")):
        block = printed.split(f"s{number}: ")[1].split("\n\n")[0].splitlines()[2:]
        assert len(block) == 8
        for line, row in zip(block, ranked[query_id]):
            rank, video_id, score, coarse, _ = line.split()
            assert (int(rank), video_id) == (row.rank, row.video_id)
            assert float(score) == pytest.approx(row.score, abs=2e-3)
            assert float(coarse) == pytest.approx(row.coarse_score, abs=2e-3)
    data = page_data(tmp_path / "g" / "index.html")
    assert [q["text"] for q in data["queries"]] == texts
    assert len(data["queries"][0]["results"]) == 8 and data["has_gate"]
    assert "gallery:" in printed
