"""`eercf extract`: inputs, the Beam pipeline end to end, parity, resume (incl. SIGKILL)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from eercf_core.files import shards
from eercf_core.files.inputs import VideoRef, read_inputs
from eercf_core.video.decode import DecodeOptions, decode_video
from eercf_core.video.previews import PREVIEW_COLUMNS, encode_previews
from pipelines.commands import extract
from tests.helpers import ROOT, make_videos, shard_features

TINY = ["--model", "eercf-tiny", "--random-init", "--seed", "0", "--device", "cpu"]


def _rows(output: Path) -> dict[str, dict]:
    rows = {}
    for path in shards.list_shards(str(output)):
        for row in shards.read_shard(path).to_pylist():
            assert row["video_id"] not in rows, f"duplicate row {row['video_id']}"
            rows[row["video_id"]] = row
    return rows


# ----------------------------------------------------------------------------------- inputs
def test_inputs_glob_dir_and_relative_ids(tmp_path):
    make_videos(tmp_path / "corpus", 4)
    (tmp_path / "corpus" / "notes.txt").write_text("not a video")
    by_dir = read_inputs([str(tmp_path / "corpus")])
    assert [r.video_id for r in by_dir] == ["sub0/clip0.mp4", "sub0/clip2.avi",
                                            "sub1/clip1.webm", "sub1/clip3.mp4"]
    by_glob = read_inputs([str(tmp_path / "corpus" / "*" / "*.mp4")])
    assert [r.video_id for r in by_glob] == ["sub0/clip0.mp4", "sub1/clip3.mp4"]
    listed = read_inputs([str(tmp_path / "corpus/sub0/clip0.mp4"),
                          str(tmp_path / "corpus/sub1/clip1.webm")])
    assert [r.video_id for r in listed] == ["sub0/clip0.mp4", "sub1/clip1.webm"]


def test_manifests_and_duplicates(tmp_path):
    (tmp_path / "m.tsv").write_text("video_id\turi\tcaption\na\tx/a.mp4\thi\nb\t/abs/b.mp4\tyo\n")
    refs = read_inputs([str(tmp_path / "m.tsv")])
    assert refs == [VideoRef("a", str(tmp_path / "x/a.mp4")), VideoRef("b", "/abs/b.mp4")]
    (tmp_path / "m.jsonl").write_text('{"video_id": "a", "uri": "s3://bucket/a.mp4"}\n')
    assert read_inputs([str(tmp_path / "m.jsonl")]) == [VideoRef("a", "s3://bucket/a.mp4")]
    (tmp_path / "dup.csv").write_text("video_id,uri\na,1.mp4\na,2.mp4\n")
    with pytest.raises(ValueError, match=r"duplicate video_id.*'a'"):
        read_inputs([str(tmp_path / "dup.csv")])
    (tmp_path / "bad.csv").write_text("id,path\na,1.mp4\n")
    with pytest.raises(ValueError, match=r"bad.csv:1: header must name"):
        read_inputs([str(tmp_path / "bad.csv")])
    (tmp_path / "bad.jsonl").write_text('{"video_id": "a", "uri": "1.mp4"}\n{oops\n')
    with pytest.raises(ValueError, match=r"bad.jsonl:2"):
        read_inputs([str(tmp_path / "bad.jsonl")])
    with pytest.raises(FileNotFoundError, match=r"nope.mp4"):
        read_inputs([str(tmp_path / "nope.mp4")])


# --------------------------------------------------------------------------------- pipeline
def test_pipeline_parity_resume_and_retry(tmp_path, tiny_model, capsys):
    paths = make_videos(tmp_path / "corpus", 5)
    broken = tmp_path / "corpus" / "sub0" / "broken.mp4"
    broken.write_bytes(b"\x00\x01garbage" * 100)
    out = tmp_path / "out"
    argv = ["--input", str(tmp_path / "corpus"), "--output", str(out), *TINY,
            "--shard-size", "2", "--batch-size", "3", "--decode-workers", "2"]
    assert extract.run(argv) == 0
    rows = _rows(out)
    assert len(rows) == 6
    bad = rows["sub0/broken.mp4"]
    assert bad["status"] == "error" and "broken.mp4" in bad["error"]
    assert bad["decode_quality"] is None
    assert {r["decode_quality"] for r in rows.values() if r["status"] == "ok"} == {"fast"}
    assert "invalid" in bad["error"].lower()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["by_status"] == {"error": 1, "ok": 5}
    assert "extract summary" in capsys.readouterr().out

    # parity: the shard's features equal eercf_core on the same decoded frames (fp16 tolerance)
    ids, features = shards.features_from_table(
        _concat([shards.read_shard(p) for p in shards.list_shards(str(out))]))
    order = {vid: i for i, vid in enumerate(ids)}
    for path in paths[:3]:
        vid = str(path.relative_to(tmp_path / "corpus"))
        decoded = decode_video(str(path), DecodeOptions(image_size=tiny_model.image_size))
        direct = tiny_model.encode_video(decoded.frames[None], decoded.mask[None])
        i = order[vid]
        for name in ("coarse", "frame", "context", "patch"):
            np.testing.assert_allclose(getattr(features, name)[i].numpy(),
                                       getattr(direct, name)[0].numpy(), atol=2e-3, rtol=1e-2)
        assert features.mask[i].tolist() == decoded.mask.tolist()
        assert rows[vid]["frame_times"] == decoded.frame_times
        # previews (schema v2) are made from the same decoded frames
        assert {k: rows[vid][k] for k in PREVIEW_COLUMNS} == encode_previews(decoded.frames,
                                                                             decoded.mask)
    assert bad["preview_jpeg"] is None and bad["preview_strip_jpeg"] is None

    # resume: nothing to do, nothing duplicated
    before = sorted(shards.list_shards(str(out)))
    assert extract.run(argv) == 0
    assert sorted(shards.list_shards(str(out))) == before
    # --retry-errors redoes the error row (now fixed), keeps one row per video
    broken.write_bytes(paths[0].read_bytes())
    assert extract.run(argv + ["--retry-errors", "--decode-quality", "exact"]) == 0
    rows = _rows(out)
    assert len(rows) == 6 and rows["sub0/broken.mp4"]["status"] == "ok"
    # the redone video says how it was decoded: the directory now mixes settings, visibly
    assert rows["sub0/broken.mp4"]["decode_quality"] == "exact"
    assert sum(r["decode_quality"] == "fast" for r in rows.values()) == 5

    # another model's output directory is refused
    with pytest.raises(ValueError, match="holds features of model"):
        extract.run(argv[:4] + ["--model", "eercf-tiny", "--random-init", "--seed", "1"])


def test_num_frames_follows_the_model_and_a_different_value_is_refused(tmp_path, capsys):
    import eercf_core as ec

    checkpoint = tmp_path / "t4.pt"
    ec.save_model(ec.create_model("eercf-tiny", head="eercf", seed=0, num_frames=4),
                  str(checkpoint))
    make_videos(tmp_path / "corpus", 1)
    out = tmp_path / "out"
    argv = ["--input", str(tmp_path / "corpus"), "--model", str(checkpoint), "--device", "cpu",
            "--decode-workers", "1"]
    with pytest.raises(SystemExit) as refused:
        extract.run([*argv, "--output", str(out), "--num-frames", "8"])
    assert refused.value.code == 2
    message = capsys.readouterr().err
    assert "--num-frames 8" in message and "T=4" in message
    assert not out.exists()  # refused before reading the output, decoding or writing anything

    # Without --num-frames (and with the old `--out` spelling) the model's T=4 is used.
    assert extract.run([*argv, "--out", str(out)]) == 0
    (row,) = _rows(out).values()
    assert row["status"] == "ok" and len(row["frame_mask"]) == 4


def _concat(tables):
    import pyarrow as pa

    return pa.concat_tables(tables)


@pytest.mark.slow
def test_robustness_corpus_one_row_per_file(tmp_path, shared_videos):
    files = sorted(p for p in (shared_videos / "robustness").iterdir() if p.suffix != ".tsv")
    assert len(files) == 30
    out = tmp_path / "out"
    argv = ["--input", *map(str, files), "--output", str(out), *TINY,
            "--per-video-timeout", "60", "--shard-size", "8", "--batch-size", "8"]
    assert extract.run(argv) == 0
    rows = _rows(out)
    assert sorted(rows) == sorted(p.name for p in files)
    dims = shards.shard_identity(shards.list_shards(str(out))[0])[0]
    sizes = dims.column_sizes()
    ok = [r for r in rows.values() if r["status"] == "ok"]
    assert len(ok) >= 25  # PyAV opens all but the truncated, corrupt and fuzzed files
    features = shard_features(out)
    for row in ok:
        assert len(features[row["video_id"]]) == 4  # coarse, frame, context, patch
        for name, values in features[row["video_id"]].items():
            assert values.shape == (sizes[name],) and np.isfinite(values).all(), row["video_id"]
        assert any(row["frame_mask"]) and len(row["frame_times"]) == sum(row["frame_mask"])
    for row in rows.values():
        if row["status"] == "error":
            assert row["video_id"] in row["error"] and len(row["error"]) > len(row["uri"]) + 10
    # the broken files of the corpus (MANIFEST.tsv) get a cause that says what is wrong
    assert {v: r["error_cause"] for v, r in rows.items() if r["status"] == "error"} == {
        "decord__corrupted.mp4": "corrupt bitstream", "gomp4__sample_qt.mp4": "corrupt bitstream",
        "libwebm__invalid_vp9_bitstream-bug_1416.webm": "corrupt bitstream"}
    assert not [v for v, r in rows.items() if r["warning"]]  # no false "partly decoded"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["errors_by_cause"]["corrupt bitstream"]["count"] == 3


@pytest.mark.slow
def test_sigkill_then_resume_matches_uninterrupted_run(tmp_path):
    make_videos(tmp_path / "corpus", 16, seconds=6.0)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}

    def command(out: Path) -> list[str]:
        return [sys.executable, "-m", "pipelines.cli", "extract", "--input",
                str(tmp_path / "corpus"), "--output", str(out), *TINY, "--shard-size", "2",
                "--batch-size", "2", "--decode-workers", "1"]

    reference = tmp_path / "reference"
    subprocess.run(command(reference), env=env, check=True, capture_output=True, cwd=ROOT)

    out = tmp_path / "killed"
    proc = subprocess.Popen(command(out), env=env, cwd=ROOT, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while not shards.list_shards(str(out)) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done_at_kill = len(shards.list_shards(str(out)))
    assert 0 < done_at_kill < 8, "the kill should land mid-way"
    subprocess.run(command(out), env=env, check=True, capture_output=True, cwd=ROOT)

    got, want = _rows(out), _rows(reference)
    assert sorted(got) == sorted(want) and len(got) == 16
    for vid, row in want.items():
        assert got[vid]["status"] == row["status"]
        np.testing.assert_array_equal(np.asarray(got[vid]["coarse_feature"]),
                                      np.asarray(row["coarse_feature"]))
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # temp files cleaned
