"""Every job on object storage, against a real S3 server (moto's ThreadedMotoServer on a
loopback port, endpoint and credentials from the environment as a user sets them): the path
layer, storage options, uncached listings, buckets that are never created, one-line storage
errors, the conditional-write lock, evaluate and indexes at URLs, and (slow) multi-worker
extract, kill -9 + rerun and the Dask runner writing to S3."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from eercf_core.errors import UserInputError
from eercf_core.files import paths, shards
from eercf_core.files.output_lock import LOCK_NAME, OutputLock, OutputLockedError
from pipelines.cli import main
from tests.helpers import ROOT
from tests.s3_fixtures import S3, s3_fixture, s3_server, start_server, use_endpoint  # noqa: F401
from tests.test_evaluate import _files

pytest.importorskip("moto")
pytest.importorskip("s3fs")


def _one_line_error(capsys, command: str) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    errors = [line for line in err if line.startswith(f"eercf {command}: error:")]
    assert len(errors) == 1, err
    assert "Traceback" not in "\n".join(err)
    return errors[0]


# --- the path layer -------------------------------------------------------------------------

def test_local_paths_and_urls(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert paths.is_local("a/b") and paths.is_local("file:///x") and paths.is_url("s3://b/k")
    assert paths.protocol("gs://b/x") == "gs" and paths.protocol("/x") == "file"
    assert paths.absolute("out") == str(tmp_path / "out")
    assert paths.absolute("s3://b/out") == "s3://b/out"
    assert paths.local_path("file:///tmp/x") == "/tmp/x" and paths.local_path("s3://b") is None
    with pytest.raises(UserInputError, match=r"s3://b/idx: must be a local path \(why\)"):
        paths.require_local("s3://b/idx", "why")
    assert paths.bucket_of("s3://bucket/a/b") == "bucket" and paths.bucket_of("/a") is None
    assert paths.join("s3://b/x/", "y", "z") == "s3://b/x/y/z"


def test_storage_options_from_env_and_flag(monkeypatch):
    monkeypatch.setattr(paths, "_options", None)
    monkeypatch.setenv(paths.STORAGE_OPTIONS_ENV, '{"s3": {"anon": false, "key": "a"}}')
    merged = paths.configure('{"s3": {"key": "b"}, "timeout": 5}')
    assert merged == {"s3": {"anon": False, "key": "b"}, "timeout": 5}
    assert paths.storage_options("s3") == {"timeout": 5, "anon": False, "key": "b"}
    assert paths.storage_options("gs") == {"timeout": 5}  # flat options: every remote protocol
    assert paths.storage_options("file") == {}
    assert json.loads(os.environ[paths.STORAGE_OPTIONS_ENV]) == merged  # workers inherit it
    with pytest.raises(UserInputError, match="--storage-options: not valid JSON"):
        paths.configure("{nope")
    with pytest.raises(UserInputError, match="--storage-options: must be a JSON object"):
        paths.configure("[1]")
    monkeypatch.setattr(paths, "_options", None)


def test_bad_storage_options_flag_is_a_usage_error(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv(paths.STORAGE_OPTIONS_ENV, raising=False)
    ranked, gt = _files(tmp_path)
    code = main(["evaluate", "--ranked", ranked, "--ground-truth", gt, "--output",
                 str(tmp_path / "e"), "--storage-options", "{bad"])
    assert code == 2
    assert "--storage-options: not valid JSON" in _one_line_error(capsys, "evaluate")
    monkeypatch.setattr(paths, "_options", None)


# --- listings, buckets, errors ---------------------------------------------------------------

def test_listing_sees_what_other_processes_wrote(s3: S3):
    root = s3.url("feats")
    fs, _ = paths.filesystem(root)
    fs.pipe_file(f"{s3.bucket}/feats/part-a.parquet", b"x")
    assert shards.list_shards(root) == [s3.url("feats", "part-a.parquet")]
    fs.ls(f"{s3.bucket}/feats")  # fills this process's listing cache
    s3.client().put_object(Bucket=s3.bucket, Key="feats/part-b.parquet", Body=b"y")  # elsewhere
    assert [p.rsplit("/", 1)[1] for p in shards.list_shards(root)] == [
        "part-a.parquet", "part-b.parquet"]


def test_a_missing_bucket_is_refused_and_never_created(s3: S3, tmp_path, capsys):
    ranked, gt = _files(tmp_path)
    before = s3.buckets()
    typo = f"{s3.bucket}-typo"
    code = main(["evaluate", "--ranked", ranked, "--ground-truth", gt,
                 "--output", f"s3://{typo}/eval"])
    assert code == 2
    line = _one_line_error(capsys, "evaluate")
    assert f"bucket '{typo}' does not exist" in line and "never creates buckets" in line
    code = main(["build-index", "--shards", s3.url("feats"), "--output", f"s3://{typo}/idx"])
    assert code == 2 and f"'{typo}'" in _one_line_error(capsys, "build-index")
    assert s3.buckets() == before


def test_wrong_credentials_are_one_line_exit_2(s3: S3, tmp_path, capsys, monkeypatch):
    import moto.settings

    ranked, gt = _files(tmp_path)
    monkeypatch.setattr(moto.settings, "INITIAL_NO_AUTH_ACTION_COUNT", 0)  # check every key
    code = main(["evaluate", "--ranked", ranked, "--ground-truth", gt,
                 "--output", s3.url("eval")])
    monkeypatch.setattr(moto.settings, "INITIAL_NO_AUTH_ACTION_COUNT", float("inf"))
    assert code == 2
    line = _one_line_error(capsys, "evaluate")
    assert s3.url("eval") in line and "was refused" in line and "credentials" in line
    assert s3.keys() == []


def test_an_unreachable_store_is_one_line_exit_1(tmp_path, capsys, monkeypatch):
    server, endpoint = start_server()
    use_endpoint(monkeypatch, endpoint)
    monkeypatch.setattr(paths, "_options", None)
    S3(endpoint, "eercf-stopped").client().create_bucket(Bucket="eercf-stopped")
    server.stop()
    ranked, gt = _files(tmp_path)
    options = json.dumps({"s3": {"config_kwargs": {"retries": {"max_attempts": 1},
                                                   "connect_timeout": 1}}})
    code = main(["evaluate", "--ranked", ranked, "--ground-truth", gt,
                 "--output", "s3://eercf-stopped/eval", "--storage-options", options])
    assert code == 1
    line = _one_line_error(capsys, "evaluate")
    assert "s3://eercf-stopped/eval" in line and "could not be reached" in line
    os.environ.pop(paths.STORAGE_OPTIONS_ENV, None)
    monkeypatch.setattr(paths, "_options", None)


def test_remote_files_are_fetched_once_and_refetched_when_replaced(s3: S3):
    s3.client().put_object(Bucket=s3.bucket, Key="models/w.bin", Body=b"one")
    url = s3.url("models", "w.bin")
    first = paths.fetch(url)
    assert Path(first).read_bytes() == b"one" and paths.fetch(url) == first
    assert first.startswith(os.environ[paths.CACHE_DIR_ENV])
    s3.client().put_object(Bucket=s3.bucket, Key="models/w.bin", Body=b"two!")
    second = paths.fetch(url)
    assert second != first and Path(second).read_bytes() == b"two!"
    with pytest.raises(FileNotFoundError, match=r"not found: s3://.*/models/none.bin"):
        paths.fetch(s3.url("models", "none.bin"))


# --- the lock -------------------------------------------------------------------------------

def _dead_pid() -> int:
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    return int(done.stdout)


def test_twenty_racing_takeovers_of_a_stale_lock_admit_one(s3: S3):
    import socket

    url = s3.url("out", LOCK_NAME)
    stale = {"host": socket.gethostname(), "pid": _dead_pid(), "job": "extract",
             "started": "2026-01-01T00:00:00+00:00"}
    for trial in range(3):
        s3.client().put_object(Bucket=s3.bucket, Key=f"out/{LOCK_NAME}",
                               Body=json.dumps(stale).encode())
        barrier = threading.Barrier(20)
        won: list[OutputLock] = []
        refused: list[str] = []

        def race(barrier: threading.Barrier = barrier, won: list[OutputLock] = won,
                 refused: list[str] = refused) -> None:
            lock = OutputLock(url, "extract")
            barrier.wait()
            try:
                lock.acquire()
                won.append(lock)
            except OutputLockedError as exc:
                refused.append(str(exc))

        threads = [threading.Thread(target=race) for _ in range(20)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(won) == 1 and len(refused) == 19, (trial, refused[:2])
        assert f"pid {os.getpid()}" in refused[0]
        won[0].release()
        assert s3.keys("out/") == []


def test_release_never_deletes_a_lock_that_is_not_its_own(s3: S3):
    url = s3.url("out", LOCK_NAME)
    lock = OutputLock(url, "extract")
    lock.acquire()
    s3.client().put_object(Bucket=s3.bucket, Key=f"out/{LOCK_NAME}", Body=b'{"pid": 1}')
    lock.release()  # compare-and-delete: the other run's lock stays
    assert s3.keys("out/") == [f"out/{LOCK_NAME}"]


# --- jobs end to end ------------------------------------------------------------------------

def test_evaluate_writes_to_s3(s3: S3, tmp_path):
    ranked, gt = _files(tmp_path)
    assert main(["evaluate", "--ranked", ranked, "--ground-truth", gt,
                 "--output", s3.url("eval")]) == 0
    assert s3.keys("eval/") == ["eval/metrics.json", "eval/metrics.md", "eval/recall_at_k.png"]
    fs, _ = paths.filesystem(s3.url())
    payload = json.loads(fs.cat_file(f"{s3.bucket}/eval/metrics.json"))
    assert payload["reranked"]["R@1"] == 50.0
    assert payload["plots"] == [s3.url("eval", "recall_at_k.png")]
    assert not Path("s3:").exists() and not (ROOT / "s3:").exists()


@pytest.fixture
def tiny_corpus_shards(tmp_path, tiny_model) -> tuple[Path, Path]:
    """Shards of 4 generated videos by the tiny model, and its queries file."""
    from tests.index_fixtures import tiny_index_corpus

    corpus = tiny_index_corpus(tmp_path / "corpus")
    return Path(corpus["shards"]), Path(corpus["queries"])


@pytest.mark.slow  # ~30-60 s: builds an index, loads the tiny model several times
def test_index_on_s3_build_query_search_report_evaluate(s3: S3, tmp_path, capsys):
    from tests.index_fixtures import tiny_index_corpus

    corpus = tiny_index_corpus(tmp_path / "corpus")
    root = corpus["root"]
    fs, _ = paths.filesystem(s3.url())
    fs.put_file(corpus["checkpoint"], f"{s3.bucket}/models/model.pt")
    model = s3.url("models", "model.pt")  # a checkpoint at a URL, fetched into the cache
    for shard in sorted((root / "shards").iterdir()):  # shards (and records) in the bucket too
        fs.put_file(str(shard), f"{s3.bucket}/shards/{shard.name}")
    index = s3.url("idx")
    assert main(["build-index", "--shards", s3.url("shards"), "--output", index]) == 0
    keys = s3.keys("idx/")
    assert "idx/manifest.json" in keys and "idx/recall.faiss" in keys
    manifest = json.loads(fs.cat_file(f"{s3.bucket}/idx/manifest.json"))
    assert manifest["num_videos"] == 30 and manifest["num_error_rows"] == 1
    assert not any(LOCK_NAME in k or ".lock" in k for k in s3.keys(""))  # lock released
    assert main(["build-index", "--shards", str(root / "shards"), "--output", index]) == 2
    assert "already exists" in _one_line_error(capsys, "build-index")

    ranked = s3.url("out", "ranked.tsv")
    assert main(["query", "--index", index, "--queries", str(corpus["queries"]),
                 "--model", model, "--output", ranked, "--top-n", "5"]) == 0
    local = tmp_path / "local.tsv"
    assert main(["query", "--index", str(root / "index"), "--queries", str(corpus["queries"]),
                 "--model", corpus["checkpoint"], "--output", str(local), "--top-n", "5"]) == 0
    assert fs.cat_file(f"{s3.bucket}/out/ranked.tsv").decode() == local.read_text()
    cache = Path(os.environ[paths.CACHE_DIR_ENV])
    assert len(list((cache / "indexes").iterdir())) == 1  # fetched once, reused
    assert len(list((cache / "files").iterdir())) == 1  # the checkpoint, fetched once

    capsys.readouterr()
    assert main(["search", "--index", index, "--model", model, CAPTION_QUERY]) == 0
    assert "vid" in capsys.readouterr().out

    truth = tmp_path / "gt.tsv"
    truth.write_text("".join(f"q{i}\tvid{i:02d}\n" for i in range(3)))
    queries = tmp_path / "q3.tsv"
    queries.write_text("".join(line + "\n" for line in
                               corpus["queries"].read_text().splitlines()[1:4]))
    ranked3 = s3.url("out", "ranked3.tsv")
    assert main(["query", "--index", index, "--queries", str(queries), "--model", model,
                 "--output", ranked3, "--top-n", "5"]) == 0
    assert main(["evaluate", "--ranked", ranked3, "--ground-truth", str(truth), "--index", index,
                 "--output", s3.url("eval")]) == 0
    assert main(["report", "--ranked", ranked3, "--queries", str(queries), "--index", index,
                 "--evaluation", s3.url("eval"), "--output", s3.url("report")]) == 0
    report = s3.keys("report/")
    assert "report/index.html" in report and any(k.startswith("report/assets/") for k in report)

    # a half-uploaded index (no manifest) is never used
    s3.client().delete_object(Bucket=s3.bucket, Key="idx/manifest.json")
    assert main(["search", "--index", index, "--model", model, CAPTION_QUERY]) == 2
    assert "incomplete index directory" in _one_line_error(capsys, "search")
    assert main(["search", "--index", s3.url("nothing"), "--model", model, CAPTION_QUERY]) == 2
    assert "index directory not found" in _one_line_error(capsys, "search")


CAPTION_QUERY = "a red square moves left"


# --- extract on S3 with other writers (slow: real decode + model, worker processes) -----------

def _s3_rows(url: str) -> dict[str, list[str]]:
    """video_id -> the shards holding it, read back from the store."""
    found: dict[str, list[str]] = {}
    for shard in shards.list_shards(url):
        for video_id in shards.read_shard(shard, columns=["video_id"]).column(
                "video_id").to_pylist():
            found.setdefault(video_id, []).append(shard)
    return found


def _extract_argv(corpus: Path, output: str) -> list[str]:
    from tests.test_extract import TINY

    return ["extract", "--input", str(corpus), "--output", output, *TINY, "--shard-size", "2",
            "--batch-size", "2", "--decode-workers", "1"]


def _summary(store: S3, prefix: str) -> dict:
    fs, _ = paths.filesystem(store.url())
    return json.loads(fs.cat_file(f"{store.bucket}/{prefix}/summary.json"))


@pytest.mark.slow
def test_extract_with_two_worker_processes_to_s3(s3: S3, tmp_path):
    from tests.helpers import make_videos

    make_videos(tmp_path / "corpus", 6)
    out = s3.url("feats")
    code = main([*_extract_argv(tmp_path / "corpus", out), "--direct_num_workers", "2",
                 "--direct_running_mode", "multi_processing"])
    assert code == 0
    rows = _s3_rows(out)
    assert len(rows) == 6 and all(len(where) == 1 for where in rows.values())
    summary = _summary(s3, "feats")
    assert summary["completeness"]["complete"] and summary["completeness"]["missing"] == 0


@pytest.mark.slow
def test_extract_on_a_dask_cluster_to_s3(s3: S3, tmp_path):
    distributed = pytest.importorskip("distributed")
    from tests.helpers import make_videos

    make_videos(tmp_path / "corpus", 5)
    out = s3.url("feats")
    # worker processes start here, after the fixture set AWS_ENDPOINT_URL: they inherit it
    with distributed.LocalCluster(n_workers=2, dashboard_address=None) as cluster:
        code = main([*_extract_argv(tmp_path / "corpus", out), "--runner", "DaskRunner",
                     f"--dask_client_address={cluster.scheduler_address}"])
    assert code == 0
    rows = _s3_rows(out)
    assert len(rows) == 5 and all(len(where) == 1 for where in rows.values())


@pytest.mark.slow
def test_sigkill_then_rerun_on_s3_has_no_duplicate_and_no_loss(s3: S3, tmp_path):
    import signal
    import time

    from tests.helpers import make_videos

    make_videos(tmp_path / "corpus", 12, seconds=6.0)
    out = s3.url("feats")
    command = [sys.executable, "-m", "pipelines.cli", *_extract_argv(tmp_path / "corpus", out)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(command, env=env, cwd=ROOT, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while not shards.list_shards(out) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done_at_kill = len(shards.list_shards(out))
    assert 0 < done_at_kill < 6, "the kill should land mid-way"
    assert f"feats/{LOCK_NAME}" in s3.keys("feats/")  # the killed run's lock is left behind
    rerun = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert "took over the stale lock" in rerun.stderr
    rows = _s3_rows(out)
    assert len(rows) == 12 and all(len(where) == 1 for where in rows.values())
    assert not [k for k in s3.keys("feats/") if k.rsplit("/", 1)[1].startswith(".")]


@pytest.mark.slow
def test_an_outage_mid_extract_is_one_line_and_a_rerun_completes(tmp_path, monkeypatch):
    import time

    from tests.helpers import make_videos

    server, endpoint = start_server()
    use_endpoint(monkeypatch, endpoint)
    monkeypatch.setattr(paths, "_options", None)
    store = S3(endpoint, f"eercf-outage-{os.getpid()}")
    store.client().create_bucket(Bucket=store.bucket)
    make_videos(tmp_path / "corpus", 12, seconds=6.0)
    out = store.url("feats")
    options = json.dumps({"s3": {"config_kwargs": {"retries": {"max_attempts": 1},
                                                   "connect_timeout": 1}}})
    command = [sys.executable, "-m", "pipelines.cli", *_extract_argv(tmp_path / "corpus", out),
               "--storage-options", options]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(command, env=env, cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while not shards.list_shards(out) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    server.stop()  # the store goes away mid-run
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 1, err[-3000:]
    lines = err.strip().splitlines()
    assert lines[-1].startswith("eercf extract: error: "), lines[-5:]
    assert out in lines[-1] and "could not be reached" in lines[-1]
    assert sum(line.startswith("eercf extract: error:") for line in lines) == 1

    server, endpoint = start_server()  # the store is back (moto keeps the bucket's objects)
    use_endpoint(monkeypatch, endpoint)
    try:
        rerun = subprocess.run(command, env={**os.environ, "PYTHONPATH": str(ROOT)}, cwd=ROOT,
                               capture_output=True, text=True)
        assert rerun.returncode == 0, rerun.stderr[-3000:]
        rows = _s3_rows(out)
        assert len(rows) == 12 and all(len(where) == 1 for where in rows.values())
    finally:
        server.stop()


@pytest.mark.slow  # decodes videos and trains a few steps of the tiny model
def test_train_writes_to_s3_and_resumes_from_it(s3: S3, tmp_path):
    from eercf_core.files.inputs import write_manifest
    from tests.helpers import make_videos

    videos = make_videos(tmp_path / "corpus", 4)
    ids = [f"v{i}" for i in range(len(videos))]
    manifest = tmp_path / "manifest.tsv"
    write_manifest(str(manifest), [(v, str(p)) for v, p in zip(ids, videos)])
    captions = tmp_path / "captions.tsv"
    captions.write_text("".join(f"{v}\tclip number {i} brightens\n" for i, v in enumerate(ids)))
    argv = ["train", "--manifest", str(manifest), "--captions", str(captions), "--steps", "2",
            "--batch-size", "2", "--workers", "1", "--device", "cpu", "--checkpoint-every", "1",
            "--output", s3.url("run")]
    assert main(argv) == 0
    keys = s3.keys("run/")
    assert {"run/model.pt", "run/train_summary.json", "run/train_log.jsonl"} <= set(keys)
    fs, _ = paths.filesystem(s3.url())
    summary = json.loads(fs.cat_file(f"{s3.bucket}/run/train_summary.json"))
    assert summary["model"] == s3.url("run", "model.pt") and summary["steps"] == 2
    assert "run/train_state.pt" in keys
    # another machine (an empty cache) resumes from the state the URL holds: nothing left to do
    os.environ[paths.CACHE_DIR_ENV] = str(tmp_path / "other-cache")
    assert main([*argv, "--resume"]) == 0
    assert list((tmp_path / "other-cache" / "train").glob("*/train_state.pt"))
    summary = json.loads(fs.cat_file(f"{s3.bucket}/run/train_summary.json"))
    assert summary["steps"] == 2


@pytest.mark.slow  # renders and encodes videos
def test_synth_writes_to_s3_and_demo_says_it_is_local(s3: S3):
    assert main(["synth", "--output", s3.url("corpus"), "--num-train", "2", "--num-test", "2",
                 "--workers", "1"]) == 0
    keys = s3.keys("corpus/")
    assert "corpus/corpus.json" in keys and len([k for k in keys if "/videos/" in k]) == 4
    fs, _ = paths.filesystem(s3.url())
    manifest = fs.cat_file(f"{s3.bucket}/corpus/test_manifest.tsv").decode().splitlines()
    assert all(line.split("\t")[1].startswith(s3.url("corpus", "videos/test/"))
               for line in manifest[1:])  # the manifest points at the uploaded videos
    assert main(["demo", "--output", s3.url("demo")]) == 2  # a local showcase, said so


@pytest.mark.slow
def test_query_on_a_dask_cluster_from_an_index_on_s3(s3: S3, tmp_path):
    distributed = pytest.importorskip("distributed")
    from tests.index_fixtures import tiny_index_corpus

    corpus = tiny_index_corpus(tmp_path / "corpus")
    root = corpus["root"]
    fs, _ = paths.filesystem(s3.url())
    fs.put_file(corpus["checkpoint"], f"{s3.bucket}/models/model.pt")
    assert main(["build-index", "--shards", str(root / "shards"), "--output", s3.url("idx")]) == 0
    local = tmp_path / "local.tsv"
    assert main(["query", "--index", str(root / "index"), "--queries", str(corpus["queries"]),
                 "--model", corpus["checkpoint"], "--output", str(local), "--top-n", "5",
                 "--batch-size", "2"]) == 0  # the blocks the cluster run ranks
    # worker processes start after the fixture set the endpoint and the cache dir: inherited
    with distributed.LocalCluster(n_workers=2, dashboard_address=None) as cluster:
        code = main(["query", "--index", s3.url("idx"), "--queries", str(corpus["queries"]),
                     "--model", s3.url("models", "model.pt"), "--output",
                     s3.url("out", "ranked.tsv"), "--top-n", "5", "--batch-size", "2",
                     "--runner", "DaskRunner",
                     f"--dask_client_address={cluster.scheduler_address}"])
    assert code == 0
    assert fs.cat_file(f"{s3.bucket}/out/ranked.tsv").decode() == local.read_text()
    cache = Path(os.environ[paths.CACHE_DIR_ENV])
    assert len(list((cache / "indexes").iterdir())) == 1  # one copy per machine
    assert s3.keys("out/") == ["out/ranked.tsv", "out/ranked.tsv.meta.json"]  # parts removed
