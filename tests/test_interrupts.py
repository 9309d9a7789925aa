"""Ctrl-C / SIGTERM during `eercf extract` with decode workers blocked in system calls: every
process of the run ends, one line instead of a traceback, exit 128 + signal, shards intact."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from eercf_core.files import shards
from pipelines.commands import extract
from tests.blocking_inputs import SilentServer, make_fifo, process_group_members
from tests.helpers import ROOT
from tests.helpers import make_videos as _make_videos
from tests.test_extract import TINY, _rows


@pytest.mark.slow
@pytest.mark.parametrize(("signum", "to_group"), [(signal.SIGTERM, False), (signal.SIGINT, True)],
                         ids=["sigterm-to-job", "ctrl-c-to-group"])
def test_signal_with_blocked_workers_stops_every_process(tmp_path, signum, to_group):
    videos = _make_videos(tmp_path / "corpus", 2, seconds=1.0)
    out = tmp_path / "out"
    assert extract.run(["--input", str(tmp_path / "corpus"), "--output", str(out), *TINY,
                        "--shard-size", "1", "--decode-workers", "1"]) == 0
    before = {path: Path(path).read_bytes() for path in shards.list_shards(str(out))}
    assert len(before) == 2

    server = SilentServer()
    fifo = make_fifo(tmp_path / "inputs" / "pipe.mp4")
    manifest = tmp_path / "inputs" / "manifest.jsonl"
    entries = [{"video_id": str(v.relative_to(tmp_path / "corpus")), "uri": str(v)} for v in videos]
    entries += [{"video_id": "fifo", "uri": str(fifo)},
                {"video_id": "silent-server", "uri": server.url()}]
    manifest.write_text("".join(json.dumps(e) + "\n" for e in entries))
    # The two pending videos form one chunk (--shard-size 2), decoded side by side.
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    log_path = tmp_path / "stderr.txt"
    with open(log_path, "wb") as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-m", "pipelines.cli", "extract", "--input", str(manifest),
             "--output", str(out), *TINY, "--shard-size", "2", "--decode-workers", "2",
             "--per-video-timeout", "600"],
            env=env, cwd=ROOT, start_new_session=True, stdout=subprocess.DEVNULL, stderr=stderr)
    try:
        assert server.accepted.wait(300), "no decode worker reached the silent server"
        time.sleep(0.5)  # both workers are in their blocking calls now
        assert len(process_group_members(proc.pid)) >= 3  # the job and its two decode workers
        if to_group:
            os.killpg(proc.pid, signum)
        else:
            os.kill(proc.pid, signum)
        code = proc.wait(120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        server.close()
    text = log_path.read_text()
    assert code == 128 + signum, text[-3000:]
    assert "eercf extract: interrupted; 2 videos done in" in text and "rerun to resume" in text
    assert "Traceback" not in text, text[-3000:]
    deadline = time.monotonic() + 10
    while process_group_members(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert process_group_members(proc.pid) == []
    # the shards written before are intact, nothing half-written, the lock released
    assert {path: Path(path).read_bytes() for path in shards.list_shards(str(out))} == before
    for path in before:
        shards.verify_shard(path)
    assert sorted(_rows(out)) == sorted(e["video_id"] for e in entries[:2])
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]
