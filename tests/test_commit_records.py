"""Commit records: a shard counts as done only with a valid record beside it; records make resume,
completeness and summaries O(shards); old (v2) outputs are adopted once; bit flips are caught
where rows are read (build-index, deep verification)."""
from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from eercf_core.files import commits, shards
from eercf_core.index import build_index
from pipelines.beam.completeness import check_complete
from pipelines.beam.resume import scan_output, summarize
from tests.index_fixtures import DIMS, write_synthetic_shards
from tests.test_shard_integrity import _data_page_offset, _flip_bit

MODEL, SHA = "synthetic", "0" * 64
ROOT = Path(__file__).resolve().parents[1]


def _done(root: Path) -> list[str]:
    return sorted(scan_output(str(root), DIMS, MODEL, SHA))


def test_committed_shards_are_done_from_their_records_alone(tmp_path):
    ids, _ = write_synthetic_shards(tmp_path, 9, 3, errors=(4,))
    record = json.loads((tmp_path / "part-00000.commit.json").read_text())
    assert record["shard"] == "part-00000.parquet" and record["rows"] == 3
    assert record["schema_version"] == 3 and record["video_id"] == ids[:3]
    assert record["bytes"] == (tmp_path / "part-00000.parquet").stat().st_size
    assert _done(tmp_path) == sorted([*ids, "bad4"])
    # the rows are not read: a shard whose data pages are damaged still counts as done here
    # (build-index and `eercf verify` catch it, below)
    bad = tmp_path / "part-00001.parquet"
    _flip_bit(bad, _data_page_offset(bad, "frame_features"))
    assert _done(tmp_path) == sorted([*ids, "bad4"])
    assert check_complete(str(tmp_path), ids).ok
    summary = summarize(str(tmp_path))
    assert summary["by_status"] == {"error": 1, "ok": 9} and summary["shards"] == 4
    with pytest.raises(shards.CorruptShardError, match=r"part-00001\.parquet: corrupt"):
        build_index([str(tmp_path)], str(tmp_path / "index"))
    with pytest.raises(shards.CorruptShardError, match=r"part-00001\.parquet: corrupt.*CRC-32"):
        commits.verify_committed(str(bad))
    commits.verify_committed(str(tmp_path / "part-00000.parquet"))


def _break_record(path: Path, how: str) -> None:
    record = path.with_name(path.name.replace(".parquet", ".commit.json"))
    if how == "missing":
        record.unlink()
    elif how == "truncated":
        record.write_bytes(record.read_bytes()[:-40])
    elif how == "other size":
        data = json.loads(record.read_text())
        data["bytes"] += 1
        record.write_text(json.dumps(data))
    elif how == "other file":  # the shard replaced by another of the same size after the record
        data = bytearray(path.read_bytes())
        footer_len = int.from_bytes(data[-8:-4], "little")
        data[-8 - footer_len + 20] ^= 0x01  # a byte inside the footer
        path.write_bytes(bytes(data))
    elif how == "other shard":
        other = json.loads(record.with_name("part-00000.commit.json").read_text())
        record.write_text(json.dumps(other))
    elif how == "wrong row count":
        data = json.loads(record.read_text())
        data["video_id"] = data["video_id"][:-1]
        record.write_text(json.dumps(data))


@pytest.mark.parametrize("how", ["missing", "truncated", "other size", "other file",
                                 "other shard", "wrong row count"])
def test_a_shard_without_a_valid_record_is_redone_never_trusted(tmp_path, caplog, how):
    ids, _ = write_synthetic_shards(tmp_path, 9, 3)
    shard = tmp_path / "part-00001.parquet"
    _break_record(shard, how)
    assert not check_complete(str(tmp_path), ids).ok  # it does not count as output either
    with caplog.at_level(logging.WARNING):
        assert _done(tmp_path) == sorted(ids[:3] + ids[6:])
    assert not shard.exists() and "extracted again" in caplog.text
    assert not shard.with_name("part-00001.commit.json").exists()
    assert len(shards.list_shards(str(tmp_path))) == 2


def test_kill_9_between_shard_and_record_leaves_nothing_done(tmp_path):
    """A writer killed (SIGKILL) after the shard's rename, before its record: not done."""
    script = (
        "import os, sys\n"
        "from eercf_core.files import commits\n"
        "from tests.index_fixtures import write_synthetic_shards\n"
        "commits.write_record = lambda *a, **k: os.kill(os.getpid(), 9)\n"
        "write_synthetic_shards(__import__('pathlib').Path(sys.argv[1]), 3, 3)\n")
    run = subprocess.run([sys.executable, "-c", script, str(tmp_path)], cwd=ROOT,
                         env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True)
    assert run.returncode == -9, run.stderr
    assert [p.name for p in tmp_path.iterdir()] == ["part-00000.parquet"]  # shard, no record
    assert not check_complete(str(tmp_path), ["v00000"]).ok
    assert summarize(str(tmp_path))["uncommitted_shards"] == [str(tmp_path / "part-00000.parquet")]
    assert _done(tmp_path) == []
    assert shards.list_shards(str(tmp_path)) == []


def test_version_2_outputs_are_verified_once_and_committed(tmp_path, caplog):
    ids, _ = write_synthetic_shards(tmp_path, 6, 3, version=2, errors=(1,))
    assert not list(tmp_path.glob("*.commit.json"))
    with caplog.at_level(logging.INFO, logger="eercf_core.files.commits"):
        assert _done(tmp_path) == sorted([*ids, "bad1"])
    assert caplog.text.count("fully verified and committed") == 3  # 7 rows, 3 per shard
    assert len(list(tmp_path.glob("*.commit.json"))) == 3
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="eercf_core.files.commits"):
        assert _done(tmp_path) == sorted([*ids, "bad1"])  # now from the records alone
    assert "fully verified" not in caplog.text
    assert shards.shard_version(str(tmp_path / "part-00000.parquet")) == 2
    assert check_complete(str(tmp_path), ids).ok


def test_a_mixed_v2_v3_folder_builds_one_index(tmp_path):
    write_synthetic_shards(tmp_path / "s", 4, 2, id_prefix="new", seed=1)
    write_synthetic_shards(tmp_path / "t", 4, 2, version=2, id_prefix="old")
    for path in (tmp_path / "t").iterdir():  # one folder: v3 shards + records, v2 shards
        path.rename(tmp_path / "s" / path.name.replace("part-", "part-old-"))
    manifest = build_index([str(tmp_path / "s")], str(tmp_path / "index"))
    assert manifest["num_videos"] == 8


def test_v3_feature_columns_are_fixed_size_binary_with_dtype_and_shape(tmp_path):
    import pyarrow.parquet as pq

    _, features = write_synthetic_shards(tmp_path, 2, 2)
    table = pq.read_table(tmp_path / "part-00000.parquet")  # plain pyarrow, no eercf code
    field = table.schema.field("patch_features")
    dtype = field.metadata[b"eercf.dtype"].decode()
    shape = json.loads(field.metadata[b"eercf.shape"])
    # the one documented call (README, "Shard layout")
    patch = np.frombuffer(table["patch_features"].combine_chunks().buffers()[1], dtype)
    patch = patch.reshape(table.num_rows, *shape)
    np.testing.assert_array_equal(patch, features["patch"][:2])
    mask_field = table.schema.field("frame_mask")
    assert mask_field.metadata[b"eercf.dtype"] == b"bool"


def test_eercf_verify_names_corrupt_and_uncommitted_shards(tmp_path, capsys):
    from pipelines.commands import verify

    write_synthetic_shards(tmp_path / "out", 9, 3)
    assert verify.run([str(tmp_path / "out"), "--workers", "2"]) == 0
    assert "all 3 shards intact and committed" in capsys.readouterr().out
    bad = tmp_path / "out" / "part-00001.parquet"
    _flip_bit(bad, _data_page_offset(bad, "patch_features"))
    (tmp_path / "out" / "part-00002.commit.json").unlink()
    assert verify.run([str(tmp_path / "out"), "--workers", "2"]) == 1
    out = capsys.readouterr().out
    assert "2 of 3 shards are corrupt or uncommitted" in out
    assert "part-00001.parquet: corrupt" in out and "CRC-32" in out
    assert "part-00002.parquet: no commit record: unfinished" in out
    assert "part-00000" not in out
    with pytest.raises(ValueError, match="no feature shards"):
        verify.run([str(tmp_path / "empty")])


def test_a_rerun_with_nothing_to_do_does_not_load_the_model(tmp_path, monkeypatch, caplog):
    from pipelines.commands import extract
    from tests.helpers import make_videos

    make_videos(tmp_path / "corpus", 2)
    argv = ["--input", str(tmp_path / "corpus"), "--output", str(tmp_path / "out"), "--model",
            "eercf-tiny", "--random-init", "--seed", "0", "--device", "cpu",
            "--decode-workers", "1"]
    assert extract.run(argv) == 0
    cache = json.loads((tmp_path / "out" / "model_identity.json").read_text())
    assert cache["key"]["random_init"] and cache["model_id"].startswith("eercf-tiny")

    def refuse(spec):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(extract, "_load_model", refuse)
    with caplog.at_level(logging.INFO):
        assert extract.run(argv) == 0
    assert "2 already in" in caplog.text and "0 to do" in caplog.text
    # another seed is other weights: not the cached identity, so the model must be loaded
    with pytest.raises(AssertionError, match="the model was loaded"):
        extract.run([*argv[:-2], "--seed", "1", "--decode-workers", "1"])


def test_the_launcher_watches_commit_records_for_progress(tmp_path, caplog):
    from pipelines.beam.watch_progress import WatchProgress

    write_synthetic_shards(tmp_path / "before", 2, 2)
    watch = WatchProgress(str(tmp_path), total=7, every=3600)
    for path in (tmp_path / "before").iterdir():  # committed before the watch: not counted
        path.rename(tmp_path / path.name.replace("part-", "part-old-"))
    watch.seen |= set(shards.list_shards(str(tmp_path)))
    write_synthetic_shards(tmp_path / "new", 5, 2, errors=(0, 3), id_prefix="n")
    for path in (tmp_path / "new").iterdir():
        path.rename(tmp_path / path.name)
    (tmp_path / "part-00003.commit.json").unlink()  # (a shard written but not yet committed)
    with caplog.at_level(logging.INFO, logger="pipelines.beam.watch_progress"):
        assert watch.poll() == 3  # part-00000..2 of the new ones (6 rows: 4 ok, 2 errors)
        assert watch.poll() == 0
    assert "extract: 6/7 videos (86%)" in caplog.text and "2 failed" in caplog.text
    with watch:  # the thread starts and stops cleanly
        pass
    assert not watch.thread.is_alive()


def test_the_extract_command_imports_neither_torch_nor_beam_until_there_is_work():
    code = ("import sys; import pipelines.commands.extract; "
            "print(sorted(m for m in ('torch', 'apache_beam', 'open_clip') if m in sys.modules))")
    run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT)}, check=True)
    assert run.stdout.strip() == "[]"
