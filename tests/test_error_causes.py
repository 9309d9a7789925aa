"""Error rows carry a short, stable cause; partly decoded files are flagged; summary.json groups
errors by cause (eercf_core.video.error_causes)."""
from __future__ import annotations

import errno
import json
import os

import numpy as np
import pyarrow.parquet as pq
import pytest

from eercf_core.files import shards
from eercf_core.video import error_causes
from eercf_core.video.decode import DecodeError, DecodeOptions, decode_job, decode_video
from eercf_core.video.isolation import IsolatedPool
from eercf_core.video.writer import write_video
from pipelines.beam.shard_sink import summarize
from pipelines.commands import extract
from schemas import FeatureDims
from schemas.video_features import COLUMNS_SINCE
from tests.test_extract import TINY


def _clip(path, seconds: int = 10, fps: int = 8):
    rng = np.random.default_rng(1)
    frames = rng.integers(0, 255, (1, 32, 32, 3)) + np.arange(seconds * fps)[:, None, None, None]
    return write_video(path, frames.clip(0, 255).astype(np.uint8), fps=fps)


def _truncated(path, source):
    data = source.read_bytes()
    path.write_bytes(data[:len(data) // 2])
    return path


def _hostile(folder):
    """A FIFO, an empty file, two text files, random bytes, a truncated MP4 and MKV, a good clip."""
    folder.mkdir(parents=True)
    os.mkfifo(folder / "pipe.mp4")
    (folder / "empty.mp4").write_bytes(b"")
    (folder / "notes.mp4").write_text("hello\n" * 50)
    (folder / "readme.mkv").write_text("just text\n" * 80)
    (folder / "noise.mp4").write_bytes(np.random.default_rng(0).bytes(4000))
    good = _clip(folder / "good.mkv")
    _truncated(folder / "cut.mkv", good)
    _truncated(folder / "cut.mp4", _clip(folder.parent / "whole.mp4"))


def test_local_file_checks_before_opening(tmp_path):
    os.mkfifo(tmp_path / "fifo.mp4")
    (tmp_path / "empty.mp4").write_bytes(b"")
    (tmp_path / "dir.mp4").mkdir()
    check = error_causes.check_local_file
    assert check(str(tmp_path / "fifo.mp4"))[0] == error_causes.NOT_REGULAR_FILE
    assert check(str(tmp_path / "dir.mp4"))[0] == error_causes.NOT_REGULAR_FILE
    assert check(str(tmp_path / "empty.mp4"))[0] == error_causes.EMPTY_FILE
    assert check(str(tmp_path / "missing.mp4"))[0] == error_causes.FILE_NOT_FOUND
    assert check("s3://bucket/x.mp4") is None  # remote: not checked
    with pytest.raises(DecodeError, match="not a regular file") as info:
        decode_video(f"file://{tmp_path / 'fifo.mp4'}")  # returns at once: the FIFO is not opened
    assert info.value.cause == error_causes.NOT_REGULAR_FILE


def test_decoder_causes_in_a_pool(tmp_path):
    _hostile(tmp_path / "in")
    names = sorted(os.listdir(tmp_path / "in"))
    jobs = [(str(tmp_path / "in" / n), DecodeOptions(image_size=32)) for n in names]
    with IsolatedPool(decode_job, workers=2, timeout=15) as pool:
        outcomes = {names[o.index]: o for o in pool.imap_unordered(jobs)}
    causes = {n: error_causes.outcome_cause(o.cause) for n, o in outcomes.items() if not o.ok}
    assert causes == {"pipe.mp4": "not a regular file", "empty.mp4": "empty file",
                      "notes.mp4": "not a video", "readme.mkv": "not a video",
                      "noise.mp4": "not a video", "cut.mp4": "corrupt container"}
    assert outcomes["pipe.mp4"].seconds < 10  # said up front, not after a time-out
    good, cut = outcomes["good.mkv"].value, outcomes["cut.mkv"].value
    assert good.warning is None and good.container_duration == pytest.approx(10.0, abs=0.2)
    assert cut.container_duration == pytest.approx(10.0, abs=0.2) and cut.duration < 6
    assert cut.warning.startswith("partly decoded: ")


def test_ffmpeg_memory_error_is_a_corrupt_bitstream():
    import av

    fake = av.error.MemoryError(errno.ENOMEM, "Cannot allocate memory")
    assert error_causes.exception_cause(fake, True, "/x.mp4") == error_causes.CORRUPT_BITSTREAM
    assert error_causes.exception_cause(MemoryError(), True, "/x.mp4") == error_causes.OUT_OF_MEMORY


def test_pool_causes():
    from eercf_core.video import isolation

    assert error_causes.outcome_cause(isolation.TIMEOUT) == "timeout"
    assert error_causes.outcome_cause(isolation.CRASHED) == "decoder crashed"
    assert error_causes.outcome_cause(None) == "decode error"
    assert error_causes.classify_message("/a/b.mp4: timed out after 120 s (worker killed)") == \
        "timeout"
    assert error_causes.classify_message(
        "/x.mp4: MemoryError: [Errno 12] Cannot allocate memory") == "corrupt bitstream"


def test_extract_rows_and_summary_group_by_cause(tmp_path):
    _hostile(tmp_path / "in")
    out = tmp_path / "out"
    assert extract.run(["--input", str(tmp_path / "in"), "--output", str(out), *TINY,
                        "--per-video-timeout", "30", "--decode-workers", "2",
                        "--shard-size", "3"]) == 0
    rows = {r["video_id"]: r for p in shards.list_shards(str(out))
            for r in shards.read_shard(p).to_pylist()}
    assert {v: r["error_cause"] for v, r in rows.items() if r["status"] == "error"} == {
        "pipe.mp4": "not a regular file", "empty.mp4": "empty file", "notes.mp4": "not a video",
        "readme.mkv": "not a video", "noise.mp4": "not a video", "cut.mp4": "corrupt container"}
    assert all(r["uri"] in r["error"] for r in rows.values() if r["status"] == "error")
    assert rows["cut.mkv"]["status"] == "ok" and rows["cut.mkv"]["warning"].startswith(
        "partly decoded")
    assert rows["cut.mkv"]["duration"] < rows["cut.mkv"]["container_duration"] - 4
    assert rows["good.mkv"]["warning"] is None

    summary = json.loads((out / "summary.json").read_text())
    groups = summary["errors_by_cause"]
    assert {c: g["count"] for c, g in groups.items()} == {
        "not a video": 3, "corrupt container": 1, "empty file": 1, "not a regular file": 1}
    assert next(iter(groups)) == "not a video"  # most frequent first
    assert all(str(tmp_path) in e for e in groups["not a video"]["examples"])
    assert summary["warnings"] == {"partly decoded": {"count": 1, "examples": ["cut.mkv"]}}
    assert summary["model_weights"]["random_init"] is True


def test_summary_of_version_1_shards_groups_by_cause_from_text(tmp_path):
    dims = FeatureDims(2, 1, 4)
    rows = [{"video_id": f"v{i}", "uri": f"/data/dir{i}/v{i}.mp4", "status": "error",
             "error": f"/data/dir{i}/v{i}.mp4: timed out after 120 s (worker killed)"}
            for i in range(9)]
    rows.append({"video_id": "ok", "uri": "/data/ok.mp4", "status": "ok", "error": None})
    table = shards.rows_to_table(rows, dims, "m", "h", version=2)  # as v1: no v2 columns
    v1 = table.drop_columns(list(COLUMNS_SINCE)).replace_schema_metadata(
        {**table.schema.metadata, b"eercf.schema_version": b"1"})
    pq.write_table(v1, tmp_path / "part-a.parquet")
    summary = summarize(str(tmp_path))
    assert summary["errors_by_cause"] == {"timeout": {"count": 9, "examples": [
        r["error"] for r in rows[:3]]}}
    assert summary["warnings"] == {} and summary["by_status"] == {"error": 9, "ok": 1}
