"""Two `eercf extract` runs on one --output with different --shard-size: the second is refused
while the first runs (naming it), the first finishes alone, a later rerun re-emits nothing."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from eercf_core.files import shards
from eercf_core.files.output_lock import OutputLockedError
from pipelines.commands import extract
from tests.blocking_inputs import SilentServer
from tests.helpers import ROOT
from tests.helpers import make_videos as _make_videos
from tests.test_extract import TINY, _rows


@pytest.mark.slow
def test_second_run_on_one_output_is_refused_and_nothing_is_duplicated(tmp_path):
    videos = _make_videos(tmp_path / "corpus", 5, seconds=1.0)
    server = SilentServer()  # holds the first run mid-way: one of its workers waits on it
    manifest = tmp_path / "manifest.jsonl"
    entries = [{"video_id": f"v{i}", "uri": str(v)} for i, v in enumerate(videos)]
    entries.append({"video_id": "slow", "uri": server.url()})
    manifest.write_text("".join(json.dumps(e) + "\n" for e in entries))
    out = tmp_path / "out"

    def argv(shard_size: int) -> list[str]:
        return ["--input", str(manifest), "--output", str(out), *TINY, "--shard-size",
                str(shard_size), "--decode-workers", "2"]

    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    first = subprocess.Popen([sys.executable, "-m", "pipelines.cli", "extract", *argv(2)],
                             env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             text=True)
    try:
        assert server.accepted.wait(300), "the first run never started decoding"
        written = shards.list_shards(str(out))
        with pytest.raises(OutputLockedError) as refused:
            extract.run(argv(3))
        assert f"pid {first.pid}" in str(refused.value) and "eercf extract" in str(refused.value)
        assert shards.list_shards(str(out)) == written  # the refused run wrote nothing
        server.close()  # the blocked video fails now; the first run finishes on its own
        output, _ = first.communicate(timeout=300)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    assert first.returncode == 0, output[-3000:]

    # a rerun with another chunking has nothing left to do and re-emits no id
    assert extract.run(argv(3)) == 0
    rows = _rows(out)  # raises on a duplicate id
    assert sorted(rows) == sorted(e["video_id"] for e in entries)
    assert rows["slow"]["status"] == "error"
    assert sum(shards.read_shard(p, ["video_id"]).num_rows
               for p in shards.list_shards(str(out))) == len(entries)
