"""`eercf query` streamed locally and on a Beam runner (part files merged): byte-identical."""
from __future__ import annotations

import logging

import pytest

from pipelines.beam import distributed_query as query_beam
from pipelines.commands import query
from tests.index_fixtures import tiny_index_corpus


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return tiny_index_corpus(tmp_path_factory.mktemp("corpus"))


def _argv(corpus, output, *extra) -> list[str]:
    return ["--index", str(corpus["root"] / "index"), "--queries", str(corpus["queries"]),
            "--output", str(output), "--model", corpus["checkpoint"], "--top-n", "12",
            "--batch-size", "2", *extra]


def test_beam_path_is_byte_identical_to_the_local_run(corpus, tmp_path):
    assert query.run(_argv(corpus, tmp_path / "local.tsv")) == 0
    assert query.run(_argv(corpus, tmp_path / "beam.tsv", "--runner", "FnApiRunner")) == 0
    local = (tmp_path / "local.tsv").read_bytes()
    assert local.count(b"\n") == 1 + 7 * 12
    assert (tmp_path / "beam.tsv").read_bytes() == local
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "beam.tsv", "beam.tsv.meta.json", "local.tsv", "local.tsv.meta.json"]  # parts removed


class _LosingRankBlockFn(query_beam.RankBlockFn):
    def process(self, element):
        if element[0] == 1:
            return
        yield from super().process(element)


def test_a_lost_block_fails_the_job(corpus, tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(query_beam, "RankBlockFn", _LosingRankBlockFn)
    with caplog.at_level(logging.ERROR):
        code = query.run(_argv(corpus, tmp_path / "lost.tsv", "--runner", "FnApiRunner"))
    assert code == 1
    assert "1 of 4 query blocks have no result (blocks [1])" in caplog.text
    assert list(tmp_path.iterdir()) == []  # no output, no parts left


def test_beam_options_need_a_runner(corpus, tmp_path):
    with pytest.raises(SystemExit):
        query.run(_argv(corpus, tmp_path / "x.tsv", "--dask_npartitions", "3"))
