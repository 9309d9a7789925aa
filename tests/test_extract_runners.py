"""Runner neutrality of `eercf extract`: runner flags, absolute paths, the completeness check,
and Beam's Dask runner in-process (its bundle semantics: bundle-end output is dropped)."""
from __future__ import annotations

import functools
import json
import logging
import os

import pytest

from eercf_core.files import commits, paths, shards
from pipelines.beam import extract_pipeline
from pipelines.beam.completeness import check_complete
from pipelines.beam.runner import DASK_RUNNER, is_dask, runner_args
from pipelines.commands import extract
from tests._runner_helpers import DroppingWriteShardsFn
from tests.helpers import make_videos
from tests.test_extract import TINY, _rows


def test_runner_alias_and_dask_partitions():
    assert runner_args(["--runner", "DaskRunner"], 7) == [
        "--runner", DASK_RUNNER, "--dask_npartitions=7"]
    assert runner_args(["--runner=dask", "--dask_partition_size", "2"], 7) == [
        f"--runner={DASK_RUNNER}", "--dask_partition_size", "2"]
    assert runner_args(["--runner", "FnApiRunner", "--project", "p"], 7) == [
        "--runner", "FnApiRunner", "--project", "p"]
    assert runner_args([], 3) == []
    assert is_dask([f"--runner={DASK_RUNNER}"]) and not is_dask(["--runner", "DirectRunner"])


def test_local_paths_become_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert paths.absolute("out/feats") == str(tmp_path / "out" / "feats")
    assert paths.absolute("~/x") == os.path.expanduser("~/x")
    for url in ("s3://bucket/x", "file:///tmp/x", "memory://x"):
        assert paths.absolute(url) == url


def test_check_complete_names_missing_and_duplicated(tmp_path, tiny_model):
    dims, identity = tiny_model.dims, tiny_model.identity
    for name, ids in (("a", ["v1", "v2"]), ("b", ["v2", "old"])):
        commits.commit_shard(str(tmp_path / f"{name}.parquet"),
                             [{"video_id": v, "uri": v, "status": "error", "error": "x"}
                              for v in ids], dims, identity.model_id, identity.checkpoint_sha256)
    found = check_complete(str(tmp_path), ["v1", "v2", "v3"])
    assert not found.ok and found.missing == ["v3"] and list(found.duplicated) == ["v2"]
    message = found.message(str(tmp_path))
    assert "1 of 3 input videos have no row" in message and "'v3'" in message
    assert "'v2'" in message and "a.parquet" in message
    assert check_complete(str(tmp_path), ["v1", "old"]).ok  # rows of other inputs are allowed


def test_a_lost_row_fails_the_job(tmp_path, monkeypatch, caplog):
    make_videos(tmp_path / "corpus", 3)
    monkeypatch.setattr(extract_pipeline, "WriteShardsFn",
                        functools.partial(DroppingWriteShardsFn, drop="sub1/clip1.webm"))
    out = tmp_path / "out"
    with caplog.at_level(logging.ERROR):
        code = extract.run(["--input", str(tmp_path / "corpus"), "--output", str(out), *TINY,
                            "--workers", "1"])
    assert code == 1
    assert "1 of 3 input videos have no row" in caplog.text and "sub1/clip1.webm" in caplog.text
    summary = json.loads((out / "summary.json").read_text())
    assert summary["completeness"]["missing_examples"] == ["sub1/clip1.webm"]
    assert sorted(_rows(out)) == ["sub0/clip0.mp4", "sub0/clip2.avi"]


def test_dask_runner_in_process_writes_every_row(tmp_path):
    # Beam's own Dask runner dropped what finish_bundle emits (5 videos in batches of 3 leave a
    # remainder batch in each chunk) and repeated outputs across partitions; our DaskRunner
    # (pipelines/beam/dask_runner.py) runs each partition as one bundle.
    distributed = pytest.importorskip("distributed")
    make_videos(tmp_path / "corpus", 5)
    out = tmp_path / "out"
    argv = ["--input", str(tmp_path / "corpus"), "--output", str(out), *TINY,
            "--shard-size", "4", "--batch-size", "3", "--decode-workers", "1"]
    with distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=False,
                                  dashboard_address=None) as cluster:
        code = extract.run([*argv, "--runner", "DaskRunner",
                            f"--dask_client_address={cluster.scheduler_address}"])
    assert code == 0
    assert len(_rows(out)) == 5 and len(shards.list_shards(str(out))) == 2


@pytest.mark.slow  # 38 s on the loaded 2-core box
def test_dask_runner_runs_the_split_stages(tmp_path):
    """Decode and inference as separate stages (a reshuffle between, rows gathered by shard)
    on Beam's Dask runner: every row written, one shard per chunk."""
    distributed = pytest.importorskip("distributed")
    make_videos(tmp_path / "corpus", 5)
    out = tmp_path / "out"
    argv = ["--input", str(tmp_path / "corpus"), "--output", str(out), *TINY,
            "--shard-size", "4", "--batch-size", "3", "--decode-workers", "1",
            "--inference-accelerator", "type:nvidia-l4;count:1;install-nvidia-driver"]
    with distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=False,
                                  dashboard_address=None) as cluster:
        code = extract.run([*argv, "--runner", "DaskRunner",
                            f"--dask_client_address={cluster.scheduler_address}"])
    assert code == 0
    assert len(_rows(out)) == 5 and len(shards.list_shards(str(out))) == 2
