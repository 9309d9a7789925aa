"""`eercf extract` (and `eercf query`) on a Dask cluster: a distributed.LocalCluster with 2
worker processes and default worker settings (daemonic nanny workers), compared with the default
runner. The cluster's workers start in the repository root; the jobs run from a temp directory
with relative paths, so paths must be made absolute where the command is typed."""
from __future__ import annotations

import functools
import json
import logging
import os
from pathlib import Path

import numpy as np
import pytest

from eercf_core.files import shards
from pipelines.beam import extract_pipeline
from pipelines.commands import build_index, extract, query
from tests._runner_helpers import DroppingWriteShardsFn
from tests.helpers import shard_features
from tests.index_fixtures import tiny_index_corpus
from tests.test_extract import TINY, _rows

pytestmark = pytest.mark.slow
distributed = pytest.importorskip("distributed")



@pytest.fixture(scope="module")
def cluster():
    with distributed.LocalCluster(n_workers=2, dashboard_address=None) as local:
        yield local


@pytest.fixture(scope="module")
def tiny_index(tmp_path_factory) -> dict:
    return tiny_index_corpus(tmp_path_factory.mktemp("index"))


@pytest.fixture(scope="module")
def captioned_corpus(tmp_path_factory, shared_videos) -> Path:
    """The 12 captioned clips (links) plus one corrupt file."""
    corpus = tmp_path_factory.mktemp("corpus")
    clips = sorted((shared_videos / "captioned").glob("*.mp4"))
    assert len(clips) == 12
    for clip in clips:
        (corpus / clip.name).symlink_to(clip)
    (corpus / "corrupt.mp4").write_bytes(b"\x00\x01not a video" * 64)
    return corpus


def _extract_argv(corpus: Path, output: str) -> list[str]:
    return ["--input", str(corpus), "--output", output, *TINY, "--shard-size", "4",
            "--batch-size", "3", "--decode-workers", "1"]


def _dask(cluster) -> list[str]:
    return ["--runner", "DaskRunner", f"--dask_client_address={cluster.scheduler_address}"]


def test_extract_on_dask_equals_the_default_runner(cluster, captioned_corpus, tmp_path,
                                                   monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert extract.run(_extract_argv(captioned_corpus, "local")) == 0
    assert extract.run(_extract_argv(captioned_corpus, "on_dask") + _dask(cluster)) == 0

    local, on_dask = _rows(tmp_path / "local"), _rows(tmp_path / "on_dask")
    assert len(on_dask) == 13 and sorted(on_dask) == sorted(local)
    assert on_dask["corrupt.mp4"]["status"] == "error"
    assert sum(row["status"] == "ok" for row in on_dask.values()) == 12
    names = [Path(p).name for p in shards.list_shards(str(tmp_path / "on_dask"))]
    assert names == [Path(p).name for p in shards.list_shards(str(tmp_path / "local"))]
    assert len(names) == 4
    local_features, dask_features = shard_features(tmp_path / "local"), shard_features(
        tmp_path / "on_dask")
    for video_id, row in local.items():
        other = on_dask[video_id]
        assert (other["status"], other["frame_times"]) == (row["status"], row["frame_times"])
        if row["status"] != "ok":
            continue
        assert len(local_features[video_id]) == 4  # coarse, frame, context, patch
        for name, values in local_features[video_id].items():
            np.testing.assert_allclose(dask_features[video_id][name], values,
                                       atol=2e-3, rtol=1e-2)
    writers = {shards.shard_metadata(p)[shards.WRITER_KEY]
               for p in shards.list_shards(str(tmp_path / "on_dask"))}
    assert len(writers) == 2, f"all shards written by one worker: {writers}"
    assert not any(w.endswith(f":{os.getpid()}") for w in writers)  # not by the launcher
    summary = json.loads((tmp_path / "on_dask" / "summary.json").read_text())
    assert summary["completeness"]["complete"] and summary["by_status"] == {"error": 1, "ok": 12}


def test_a_row_lost_on_dask_fails_the_job(cluster, captioned_corpus, tmp_path, monkeypatch,
                                          caplog):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(extract_pipeline, "WriteShardsFn",
                        functools.partial(DroppingWriteShardsFn, drop="languagebind__0.mp4"))
    with caplog.at_level(logging.ERROR):
        code = extract.run(_extract_argv(captioned_corpus, "lossy") + _dask(cluster))
    assert code == 1
    assert "1 of 13 input videos have no row" in caplog.text
    assert "languagebind__0.mp4" in caplog.text
    assert len(_rows(tmp_path / "lossy")) == 12


def test_query_on_dask_is_byte_identical_to_the_local_run(cluster, tiny_index, tmp_path,
                                                          monkeypatch):
    monkeypatch.chdir(tmp_path)
    argv = ["--index", str(tiny_index["root"] / "index"), "--queries",
            str(tiny_index["queries"]), "--model", tiny_index["checkpoint"], "--top-n", "20",
            "--batch-size", "2"]
    assert query.run([*argv, "--output", "local.tsv"]) == 0
    assert query.run([*argv, "--output", "on_dask.tsv", *_dask(cluster)]) == 0
    local = (tmp_path / "local.tsv").read_bytes()
    assert local.count(b"\n") == 1 + 7 * 20
    assert (tmp_path / "on_dask.tsv").read_bytes() == local


def test_build_index_fill_on_dask_equals_the_local_build(cluster, tiny_index, tmp_path,
                                                         monkeypatch):
    """The fine store filled by the cluster's worker processes, one task per shard, is the
    local build's byte for byte (relative output path: made absolute for the workers)."""
    monkeypatch.chdir(tmp_path)
    argv = ["--shards", str(tiny_index["root"] / "shards"), "--workers", "1"]
    assert build_index.run([*argv, "--output", "local"]) == 0
    assert build_index.run([*argv, "--output", "on_dask", *_dask(cluster)]) == 0
    local = sorted(p.relative_to(tmp_path / "local") for p in (tmp_path / "local").rglob("*"))
    assert sorted(p.relative_to(tmp_path / "on_dask")
                  for p in (tmp_path / "on_dask").rglob("*")) == local  # no markers left
    for name in (tmp_path / "local" / "fine").iterdir():
        assert (tmp_path / "on_dask" / "fine" / name.name).read_bytes() == name.read_bytes()
