"""pipelines/beam/shard_sink.py: chunk planning, WriteShardsFn, resume scan, --retry-errors,
summary."""
from __future__ import annotations

import json
import logging

import numpy as np
import pytest

from eercf_core.files import commits, shards
from eercf_core.files.inputs import VideoRef
from eercf_core.progress import Progress
from pipelines.beam.shard_sink import (
    WriteShardsFn,
    count_row,
    drop_error_rows,
    plan_chunks,
    scan_output,
    shard_name,
    summarize,
)
from tests.index_fixtures import DIMS, random_features

MODEL, SHA = "tiny/eercf/T4", "ab" * 32


def ok_row(video_id: str, seed: int = 0) -> dict:
    """A complete ok row with random float16 features of DIMS."""
    f = random_features(1, DIMS, seed=seed, padded=False)
    return {"video_id": video_id, "uri": f"/v/{video_id}.mp4", "status": "ok",
            "coarse_feature": f["coarse"][0].reshape(-1),
            "frame_features": f["frame"][0].reshape(-1),
            "context_frame_features": f["context"][0].reshape(-1),
            "patch_features": f["patch"][0].reshape(-1), "frame_mask": f["mask"][0]}


def error_row(video_id: str, error: str) -> dict:
    return {"video_id": video_id, "uri": f"/v/{video_id}.mp4", "status": "error", "error": error}


def _writer(output, total: int) -> WriteShardsFn:
    fn = WriteShardsFn(str(output), DIMS, MODEL, SHA, total, progress_seconds=3600.0)
    fn.setup()
    fn.start_bundle()
    return fn


def _ids(path: str) -> list[str]:
    return shards.read_shard(path, columns=["video_id"]).column("video_id").to_pylist()


def test_plan_chunks_names_are_deterministic_and_order_free():
    refs = [VideoRef(f"v{i}", f"/v/{i}.mp4") for i in range(5)]
    chunks = plan_chunks(refs, 2)
    assert [[r.video_id for r in c] for _, c in chunks] == [["v0", "v1"], ["v2", "v3"], ["v4"]]
    assert chunks[0][0] == shard_name(["v1", "v0"])  # a name depends on the id set only
    assert chunks[0][0].startswith("part-") and chunks[0][0].endswith(shards.SHARD_SUFFIX)
    assert len({name for name, _ in chunks}) == 3
    with pytest.raises(ValueError, match="--shard-size must be >= 1"):
        plan_chunks(refs, 0)


def test_write_shards_fn_writes_a_shard_once_all_its_rows_arrived(tmp_path):
    fn = _writer(tmp_path, total=3)
    assert list(fn.process(("part-a.parquet", 2, ok_row("v0")))) == []
    assert list(fn.process(("part-b.parquet", 1, error_row("v2", "/v/v2.mp4: bad")))) == [
        f"{tmp_path}/part-b.parquet"]
    [path] = fn.process(("part-a.parquet", 2, ok_row("v1", seed=1)))
    assert path == f"{tmp_path}/part-a.parquet"
    assert _ids(path) == ["v0", "v1"]
    assert shards.shard_identity(path) == (DIMS, MODEL, SHA)
    fn.finish_bundle()  # nothing left over: nothing more written
    assert sorted(shards.list_shards(str(tmp_path))) == [f"{tmp_path}/part-a.parquet",
                                                        f"{tmp_path}/part-b.parquet"]
    assert (fn.progress.done, fn.progress.failed) == (3, 1)
    assert fn.progress.amounts["frames"] == 2 * DIMS.num_frames


def test_write_shards_fn_flushes_an_incomplete_shard_under_its_rows_name(tmp_path, caplog):
    fn = _writer(tmp_path, total=3)
    assert list(fn.process(("part-x.parquet", 3, ok_row("v0")))) == []
    assert list(fn.process(("part-x.parquet", 3, ok_row("v1")))) == []
    with caplog.at_level(logging.WARNING, logger="pipelines.beam.shard_sink"):
        fn.finish_bundle()  # written, not emitted (no output at bundle end)
    [flushed] = shards.list_shards(str(tmp_path))
    assert flushed == f"{tmp_path}/{shard_name(['v0', 'v1'])}"
    assert _ids(flushed) == ["v0", "v1"]
    assert "incomplete at bundle end (2/3 rows)" in caplog.text
    assert fn.buffers == {}


def test_scan_output_and_retry_errors(tmp_path):
    commits.commit_shard(str(tmp_path / "part-1.parquet"), [ok_row("v0"), error_row("v1", "x")],
                         DIMS, MODEL, SHA)
    commits.commit_shard(str(tmp_path / "part-2.parquet"), [error_row("v2", "y")], DIMS, MODEL,
                         SHA)
    done = scan_output(str(tmp_path), DIMS, MODEL, SHA)
    assert {k: v[0] for k, v in done.items()} == {"v0": "ok", "v1": "error", "v2": "error"}

    assert drop_error_rows(done, DIMS, MODEL, SHA) == 2
    [left] = shards.list_shards(str(tmp_path))  # the all-error shard is deleted
    assert _ids(left) == ["v0"]
    rescanned = scan_output(str(tmp_path), DIMS, MODEL, SHA)
    assert {k: v[0] for k, v in rescanned.items()} == {"v0": "ok"}

    with pytest.raises(ValueError, match=r"holds features of model .*use a different --output"):
        scan_output(str(tmp_path), DIMS, "another/model/T4", SHA)


def test_summarize_groups_errors_by_cause_and_writes_summary_json(tmp_path):
    rows = [ok_row("v0"),
            {**error_row("a", "/v/a.mp4: moov atom not found"), "error_cause": "corrupt container"},
            {**error_row("b", "/v/b.mp4: moov atom not found"), "error_cause": "corrupt container"},
            {**error_row("c", "timed out after 5 s"), "error_cause": "timeout"}]
    commits.commit_shard(str(tmp_path / "part-1.parquet"), rows, DIMS, MODEL, SHA)
    summary = summarize(str(tmp_path), extra={"model_id": MODEL})
    assert summary["videos"] == 4 and summary["shards"] == 1
    assert summary["by_status"] == {"error": 3, "ok": 1}
    by_cause = summary["errors_by_cause"]
    assert list(by_cause) == ["corrupt container", "timeout"]  # most frequent first
    assert by_cause["corrupt container"]["count"] == 2 and by_cause["timeout"]["count"] == 1
    assert json.loads((tmp_path / "summary.json").read_text()) == summary


def test_progress_line_counts_videos_frames_and_failures():
    progress = Progress("extract", total=4, every=3600.0, started=0.0)
    count_row(progress, {"status": "ok", "frame_mask": np.array([True, True, False])})
    count_row(progress, {"status": "error"})
    line = progress.line()
    assert line.startswith("extract: 2/4 videos (50%)")
    assert "1 failed" in line and "frames/s" in line and "eta " in line
    assert progress.amounts["frames"] == 2
