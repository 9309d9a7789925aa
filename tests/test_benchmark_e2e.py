"""Slow end to end per benchmark: small annotation files -> eercf import-dataset -> extract ->
build-index -> query (--top-n 0) -> evaluate on the shared captioned clips named as the dataset
expects; query and ground-truth counts per protocol, t2v and both v2t protocols computed."""
from __future__ import annotations

import json

import pytest

import eercf_core as ec
from eercf_core.files.text_formats import read_ranked
from pipelines.commands import build_index, evaluate, extract, query
from pipelines.commands import import_dataset as benchmark
from tests.benchmark_fixtures import EVAL_SPLIT, EXPECTED, write_dataset

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "model.pt"
    ec.save_model(ec.create_model("eercf-tiny", seed=0), str(path))
    return str(path)


@pytest.mark.parametrize("dataset", sorted(EXPECTED))
def test_benchmark_extract_index_query_evaluate(tmp_path, shared_videos, checkpoint, dataset):
    ann, videos = write_dataset(dataset, tmp_path, shared_videos)
    split = EVAL_SPLIT[dataset]
    _, found, num_queries = EXPECTED[dataset][split]
    out = tmp_path / "bench"
    assert benchmark.run([dataset, "--annotations", str(ann), "--videos", str(videos),
                          "--output", str(out), "--splits", split]) == 0
    files = out / split
    assert extract.run(["--input", str(files / "manifest.tsv"),
                        "--output", str(tmp_path / "shards"), "--model", checkpoint,
                        "--device", "cpu", "--decode-workers", "1"]) == 0
    assert build_index.run(["--shards", str(tmp_path / "shards"), "--output",
                            str(tmp_path / "index")]) == 0
    manifest = json.loads((tmp_path / "index" / "manifest.json").read_text())
    assert manifest["num_videos"] == found and manifest["num_error_rows"] == 0
    ranked = tmp_path / "ranked.tsv"
    assert query.run(["--index", str(tmp_path / "index"), "--model", checkpoint, "--queries",
                      str(files / "queries.tsv"), "--output", str(ranked), "--top-n", "0",
                      "--recall-k", "2"]) == 0
    rows = read_ranked(str(ranked))
    assert len(rows) == num_queries and {len(r) for r in rows.values()} == {found}
    assert evaluate.run(["--ranked", str(ranked), "--ground-truth", str(files / "ground_truth.tsv"),
                         "--output", str(tmp_path / "eval"), "--no-plots"]) == 0
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["reranked"]["num_queries"] == num_queries
    assert metrics["reranked"]["censored"] == 0
    for protocol in ("official_hybrid", "coarse"):
        v2t = metrics["v2t"][protocol]
        assert v2t["status"] == "ok" and v2t["num_queries"] == found
        assert v2t["num_captions"] == num_queries
