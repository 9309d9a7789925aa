"""`eercf build-index --runner ...`: the fine store filled by a Beam pipeline, one task per shard
(the Dask cluster case is in tests/test_dask.py)."""
from __future__ import annotations

import pytest

from eercf_core.index import build as build_module
from eercf_core.index.fill import FILL_MARKERS
from pipelines.commands import build_index
from tests.index_fixtures import tiny_index_corpus


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return tiny_index_corpus(tmp_path_factory.mktemp("corpus"))


def _files(root):
    return {p.relative_to(root): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_fill_on_a_beam_runner_is_byte_identical_to_the_local_build(corpus, tmp_path):
    argv = ["--shards", str(corpus["root"] / "shards"), "--workers", "1"]
    assert build_index.run([*argv, "--output", str(tmp_path / "local")]) == 0
    assert build_index.run([*argv, "--output", str(tmp_path / "beam"),
                            "--runner", "FnApiRunner"]) == 0
    local = _files(tmp_path / "local" / "fine")
    assert local and _files(tmp_path / "beam" / "fine") == local  # markers removed
    assert not any((tmp_path / "beam").rglob(FILL_MARKERS))


def test_a_lost_fill_task_fails_the_build_naming_the_shard(corpus, tmp_path, monkeypatch):
    """A task that ran (or was lost) without leaving its marker fails the build; nothing is
    written at the output."""
    def losing(tasks):
        for task in tasks[1:]:
            task.run()

    import faiss

    thread_settings: list[int] = []
    monkeypatch.setattr(faiss, "omp_set_num_threads", thread_settings.append)
    with pytest.raises(build_module.IncompleteFillError,
                       match=r"1 of 3 shards were not filled .*s0\.parquet"):
        build_module.build_index([str(corpus["root"] / "shards")], str(tmp_path / "index"),
                                 fill_runner=losing)
    assert not (tmp_path / "index").exists()
    # Tasks run in this process leave its threads alone: FAISS and torch can share one OpenMP
    # runtime, and a FAISS thread setting here once changed a later query's floats.
    assert thread_settings == []
    assert [p.name for p in tmp_path.iterdir() if not p.name.startswith(".")] == []


def test_a_runner_fill_needs_a_path_the_workers_share(corpus):
    with pytest.raises(ValueError, match="filesystem path they share"):
        build_module.build_index([str(corpus["root"] / "shards")], "s3://bucket/index",
                                 fill_runner=lambda tasks: None)


def test_beam_options_need_a_runner(corpus, tmp_path):
    with pytest.raises(SystemExit):
        build_index.run(["--shards", str(corpus["root"] / "shards"), "--output",
                         str(tmp_path / "x"), "--dask_npartitions", "3"])
