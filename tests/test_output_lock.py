"""The output lock (eercf_core.files.output_lock): refusal naming the holder, takeover of dead
holders'
locks, remote (fsspec) locks, and build-index's lock and stale temp clean-up."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import fsspec
import pytest

from eercf_core.files.output_lock import (
    LOCK_NAME,
    OutputLock,
    OutputLockedError,
    lock_beside,
    lock_inside,
)
from eercf_core.index import build_index
from tests.helpers import ROOT
from tests.index_fixtures import write_synthetic_shards

# A child that takes the lock, says so, then waits for stdin (or is killed).
_HOLDER = """
import sys
from eercf_core.files.output_lock import OutputLock
lock = OutputLock(sys.argv[1], "extract")
lock.acquire()
print("locked", flush=True)
sys.stdin.readline()
"""


def _start_holder(lock_path: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-c", _HOLDER, lock_path], env=env, cwd=ROOT,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_live_holder_refused_then_dead_holder_taken_over(tmp_path):
    lock_path = lock_inside(str(tmp_path / "out"))
    holder = _start_holder(lock_path)
    try:
        with pytest.raises(OutputLockedError) as refused:
            OutputLock(lock_path, "extract", str(tmp_path / "out")).acquire()
        message = str(refused.value)
        assert f"pid {holder.pid}" in message and socket.gethostname() in message
        assert "started 20" in message and str(tmp_path / "out") in message
    finally:
        holder.kill()  # dies holding the lock: the file stays, the kernel drops the flock
        holder.wait()
    assert json.loads(Path(lock_path).read_text())["pid"] == holder.pid
    with OutputLock(lock_path, "extract") as lock:
        assert json.loads(Path(lock_path).read_text())["pid"] == os.getpid()
        with pytest.raises(OutputLockedError):  # a second lock in this process is refused too
            OutputLock(lock_path, "extract").acquire()
    assert not Path(lock_path).exists()  # released cleanly: no file left
    lock.release()  # idempotent


def test_remote_lock_exclusive_stale_and_other_host(tmp_path):
    fs = fsspec.filesystem("memory")
    url = f"memory://lock-test-{os.getpid()}/out/{LOCK_NAME}"
    with OutputLock(url, "extract"), pytest.raises(OutputLockedError,
                                                   match=f"pid {os.getpid()}"):
        OutputLock(url, "extract").acquire()
    assert not fs.exists(url)
    # a leftover lock of a dead pid on this host is taken over
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    record = {"host": socket.gethostname(), "pid": int(dead.stdout), "job": "extract",
              "started": "2026-01-01T00:00:00+00:00"}
    fs.pipe(url, json.dumps(record).encode())
    with OutputLock(url, "extract"):
        assert json.loads(fs.cat(url))["pid"] == os.getpid()
    # another host's lock cannot be checked: refused, naming the file to delete
    fs.pipe(url, json.dumps({**record, "host": "elsewhere"}).encode())
    with pytest.raises(OutputLockedError, match=f"on host elsewhere.*delete {url}"):
        OutputLock(url, "extract").acquire()
    fs.rm(url)


def test_lock_paths():
    assert lock_inside("gs://b/feats/") == "gs://b/feats/.eercf.lock"
    assert lock_beside("/x/index") == "/x/.index.lock"
    assert lock_beside("index") == ".index.lock"


def test_build_index_locked_and_stale_temps_removed(tmp_path):
    write_synthetic_shards(tmp_path / "shards", 6, 3)
    out = tmp_path / "index"
    # a killed build left its temp (pid no longer runs); a live build's temp must survive
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f".index.tmp-{dead.pid}-0f1e2d3c"
    stale_trash = tmp_path / f".index.old.tmp-{dead.pid}-4b5a6978"
    stale_legacy = tmp_path / f".index.old-{dead.pid}"  # the name builds used before
    for folder in (stale, stale_trash, stale_legacy):
        (folder / "fine").mkdir(parents=True)
        (folder / "fine" / "coarse.npy").write_bytes(b"x" * 1000)
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        live_temp = tmp_path / f".index.tmp-{live.pid}-8c9d0e1f"
        live_temp.mkdir()
        holder = _start_holder(lock_beside(str(out)))
        try:
            with pytest.raises(OutputLockedError, match=f"pid {holder.pid}"):
                build_index([str(tmp_path / "shards")], str(out))
        finally:
            holder.kill()
            holder.wait()
        assert stale.exists()  # nothing touched while refused
        manifest = build_index([str(tmp_path / "shards")], str(out))
        assert manifest["num_videos"] == 6
        assert not stale.exists() and not stale_trash.exists() and not stale_legacy.exists()
        assert live_temp.exists()
    finally:
        live.kill()
        live.wait()
    assert not (tmp_path / ".index.lock").exists()


@pytest.mark.slow
def test_killed_build_index_temp_removed_by_next_run(tmp_path):
    """SIGKILL a real build-index mid-build; the next build removes its `.index.tmp-<pid>-...`."""
    write_synthetic_shards(tmp_path / "shards", 40, 4)
    out = tmp_path / "index"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "pipelines.cli", "build-index", "--shards",
                             str(tmp_path / "shards"), "--output", str(out), "--batch-rows", "1"],
                            env=env, cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while (not list(tmp_path.glob(f".index.tmp-{proc.pid}-*")) and proc.poll() is None
           and time.monotonic() < deadline):
        time.sleep(0.01)
    proc.kill()
    proc.wait()
    temps = list(tmp_path.glob(f".index.tmp-{proc.pid}-*"))
    assert len(temps) == 1, "the build should be killed while its temp directory exists"
    build_index([str(tmp_path / "shards")], str(out))
    assert not temps[0].exists() and (out / "manifest.json").exists()
