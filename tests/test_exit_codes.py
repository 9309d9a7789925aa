"""No abort at interpreter exit (SIGABRT, "terminate called without an active exception", 134).

Cause (core dump of an aborted read_shard script, fixed in eercf_core.files.shards): a threaded read
of a shard opened as a Python (fsspec) file object leaves a DecodeRowGroups task on Arrow's CPU
pool that drops the last reference to a page reader after read() returned; its buffers are
Python bytes (arrow::py::PyBuffer), whose destructor calls PyGILState_Ensure. During interpreter
finalisation that thread is ended by pthread_exit (CPython 3.11 take_gil), whose forced unwind
through the noexcept destructor calls std::terminate. Local shards are now native Arrow files
and Python file objects are read on the calling thread only. Each check runs 20 fresh processes
(the abort was intermittent) and needs every exit code to be the expected one.
"""
from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.helpers import ROOT
from tests.index_fixtures import write_synthetic_shards

RUNS = 20
_READ_SCRIPT = """
import sys
from eercf_core.files import shards
table = shards.read_shard(sys.argv[1], columns=["video_id", "status"])
print(table.num_rows)
"""


def _expected_error_exit() -> int:
    try:
        from eercf_core.errors import EXIT_USER_ERROR
    except ImportError:  # before the exit-2 convention: an uncaught exception
        return 1
    return EXIT_USER_ERROR


def _run_many(command: list[str], runs: int = RUNS) -> list[subprocess.CompletedProcess]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with ThreadPoolExecutor(4) as pool:
        return list(pool.map(lambda _: subprocess.run(command, env=env, cwd=ROOT, text=True,
                                                      capture_output=True, timeout=600),
                             range(runs)))


@pytest.mark.slow
def test_build_index_into_unwritable_output_exits_with_the_error_code(tmp_path):
    write_synthetic_shards(tmp_path / "shards", 30, 10)
    blocker = tmp_path / "a-file"  # as root a read-only mode is no obstacle; a file in the path is
    blocker.write_text("not a directory")
    output = blocker / "index"
    results = _run_many([sys.executable, "-m", "pipelines.cli", "build-index", "--shards",
                         str(tmp_path / "shards"), "--output", str(output)])
    codes = [r.returncode for r in results]
    assert codes == [_expected_error_exit()] * RUNS, results[0].stderr[-2000:]
    assert all(str(blocker) in r.stderr for r in results)
    assert not any("terminate called" in r.stderr for r in results)


@pytest.mark.slow
def test_read_shard_script_exits_cleanly(tmp_path):
    write_synthetic_shards(tmp_path, 10, 10)
    results = _run_many([sys.executable, "-c", _READ_SCRIPT, str(tmp_path / "part-00000.parquet")])
    assert [r.returncode for r in results] == [0] * RUNS, results[0].stderr[-2000:]
    assert all(r.stdout.strip() == "10" for r in results)
