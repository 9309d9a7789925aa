"""eercf query end to end on shards of the tiny model: index ranking == eercf_core's ranking."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import eercf_core as ec
from eercf_core.files.text_formats import FormatError, read_ranked
from pipelines.commands import query
from tests.index_fixtures import CAPTIONS, tiny_index_corpus


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """Tiny model checkpoint, shards of 30 videos (+1 error row) it encoded, built index."""
    return tiny_index_corpus(tmp_path_factory.mktemp("corpus"))


def _run(corpus, *extra):
    out = corpus["root"] / f"ranked{abs(hash(extra))}.tsv"
    assert query.run(["--index", str(corpus["root"] / "index"), "--queries", str(corpus["queries"]),
                      "--output", str(out), "--model", corpus["checkpoint"], *extra]) == 0
    return read_ranked(str(out))


def _core(corpus):
    model = ec.load_model(corpus["checkpoint"], device="cpu")
    return model, model.encode_text(CAPTIONS)


@pytest.mark.parametrize("method", ["grouped", "gather"])
def test_two_stage_equals_core(corpus, method):
    model, text = _core(corpus)
    ref = ec.two_stage_rank(model, text, corpus["video"], k=10, top_n=20)
    ranked = _run(corpus, "--recall-k", "10", "--top-n", "20", "--rerank-method", method)
    for q in range(len(CAPTIONS)):
        rows = ranked[f"q{q}"]
        assert [r.video_id for r in rows] == [corpus["ids"][i] for i in ref.indices[q].tolist()]
        np.testing.assert_allclose([r.score for r in rows], ref.scores[q].numpy(), atol=1e-4)
        np.testing.assert_allclose([r.coarse_score for r in rows], ref.coarse_scores[q].numpy(),
                                   atol=1e-4)


def test_exhaustive_equals_dense_rerank(corpus):
    model, text = _core(corpus)
    ref = ec.exhaustive_rank(model, text, corpus["video"])
    ranked = _run(corpus, "--exhaustive", "--top-n", "0")
    for q in range(len(CAPTIONS)):
        assert [r.video_id for r in ranked[f"q{q}"]] == [corpus["ids"][i]
                                                          for i in ref.indices[q].tolist()]
        np.testing.assert_allclose([r.score for r in ranked[f"q{q}"]], ref.scores[q].numpy(),
                                   atol=1e-4)


def test_recall_only_is_coarse_order(corpus):
    model, text = _core(corpus)
    coarse = ec.scores.coarse_scores(text, corpus["video"].coarse, model.score_params.detach())
    ranked = _run(corpus, "--recall-only", "--top-n", "5")
    for q in range(len(CAPTIONS)):
        top = torch.sort(coarse[q], descending=True, stable=True).indices[:5]
        assert [r.video_id for r in ranked[f"q{q}"]] == [corpus["ids"][i] for i in top.tolist()]


def test_other_model_refused(corpus, tmp_path):
    other = ec.create_model("eercf-tiny", seed=1)
    path = str(tmp_path / "other.pt")
    ec.save_model(other, path)
    with pytest.raises(ValueError, match="index was built from features of model"):
        query.run(["--index", str(corpus["root"] / "index"), "--queries", str(corpus["queries"]),
                   "--output", str(tmp_path / "r.tsv"), "--model", path])
    assert not (tmp_path / "r.tsv").exists()


def test_bad_query_file_names_line(corpus, tmp_path):
    bad = tmp_path / "bad.tsv"
    bad.write_text("q1\tfine\nq2\t   \n")
    with pytest.raises(FormatError, match=r"bad.tsv:2: query 'q2' has empty text"):
        query.run(["--index", str(corpus["root"] / "index"), "--queries", str(bad),
                   "--output", str(tmp_path / "r.tsv"), "--model", corpus["checkpoint"]])
    assert not list(tmp_path.glob("r.tsv*"))


def test_missing_or_half_written_index(corpus, tmp_path):
    args = ["--queries", str(corpus["queries"]), "--output", str(tmp_path / "r.tsv"),
            "--model", corpus["checkpoint"]]
    with pytest.raises(ValueError, match="index directory not found"):
        query.run(["--index", str(tmp_path / "nope"), *args])
    half = tmp_path / "half"
    (half / "fine").mkdir(parents=True)
    with pytest.raises(ValueError, match="incomplete index directory"):
        query.run(["--index", str(half), *args])


def test_block_memory_refused_up_front_with_the_batch_that_fits(corpus, tmp_path):
    # 30 videos: exhaustive, top-n 0, batch 256 needs 256 * 30 * (250 + 32) B ~ 2.1 MB
    with pytest.raises(ValueError, match=r"exhaustive with --top-n 30 over 30 videos needs an "
                                         r"estimated .* lower --batch-size to \d+ or below"):
        query.run(["--index", str(corpus["root"] / "index"), "--queries", str(corpus["queries"]),
                   "--output", str(tmp_path / "r.tsv"), "--model", corpus["checkpoint"],
                   "--exhaustive", "--top-n", "0", "--max-block-memory", "0.001"])
    assert not list(tmp_path.glob("r.tsv*"))


def test_block_memory_estimate_grows_with_the_corpus_only_for_all_videos():
    from eercf_core.index.search import block_memory, check_block_memory
    assert block_memory("two-stage", 256, 50, 100, 10_000_000) == 256 * 100 * 250
    # exhaustive keeps a running top-n: small unless every video is written
    assert block_memory("exhaustive", 1, 50, 100, 10_000_000) == 100 * 250 + (100 + 256) * 32
    assert block_memory("exhaustive", 1, 50, 10_000_000, 10_000_000) > 10_000_000 * 250
    with pytest.raises(ValueError, match="not even one query fits"):
        check_block_memory("two-stage", 256, 50, 10_000_000, 10_000_000, budget=1 << 30)


def test_exhaustive_top_n_merged_block_by_block_equals_dense(corpus, monkeypatch):
    from eercf_core.index import search
    monkeypatch.setattr(search, "EXHAUSTIVE_BLOCK", 4)  # 30 videos: 8 blocks merged into a top-7
    model, text = _core(corpus)
    ref = ec.exhaustive_rank(model, text, corpus["video"], top_n=7)
    ranked = _run(corpus, "--exhaustive", "--top-n", "7")
    for q in range(len(CAPTIONS)):
        assert [r.video_id for r in ranked[f"q{q}"]] == [corpus["ids"][i]
                                                          for i in ref.indices[q].tolist()]
        np.testing.assert_allclose([r.score for r in ranked[f"q{q}"]], ref.scores[q].numpy(),
                                   atol=1e-4)
        np.testing.assert_allclose([r.coarse_score for r in ranked[f"q{q}"]],
                                   ref.coarse_scores[q].numpy(), atol=1e-4)
