"""Shard integrity: page checksums verified on read; damaged shards are refused by name
(build-index) or moved aside and redone (extract's resume); old shards without checksums read."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from eercf_core.files import shards
from eercf_core.index import build_index
from pipelines.beam.shard_sink import scan_output
from tests.index_fixtures import DIMS, write_synthetic_shards

MODEL, SHA = "synthetic", "0" * 64


def _column_chunk_range(path: Path, column: str) -> tuple[int, int]:
    """[start, end) bytes of a column chunk's pages (dictionary page included), row group 0."""
    meta = pq.ParquetFile(path).metadata.row_group(0)
    for i in range(meta.num_columns):
        chunk = meta.column(i)
        if chunk.path_in_schema.split(".")[0] == column:
            start = chunk.dictionary_page_offset or chunk.data_page_offset
            return start, start + chunk.total_compressed_size
    raise KeyError(column)


def _flip_bit(path: Path, offset: int, bit: int = 3) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 1 << bit
    path.write_bytes(bytes(data))


def _data_page_offset(path: Path, column: str) -> int:
    """A byte inside the last data page of `column` (past its page header), not the footer."""
    start, end = _column_chunk_range(path, column)
    return end - max(8, (end - start) // 10)


def test_bit_flips_in_data_pages_are_refused_by_name(tmp_path):
    write_synthetic_shards(tmp_path, 8, 8)
    shard = tmp_path / "part-00000.parquet"
    original = shards.read_shard(str(shard))
    assert pq.ParquetFile(shard).metadata.num_rows == 8
    rng = np.random.default_rng(0)
    pristine = shard.read_bytes()
    columns = ["video_id", "coarse_feature", "frame_features", "patch_features", "frame_mask"]
    detected = 0
    for trial in range(30):  # single-bit flips anywhere in the column chunks (headers included)
        start, end = _column_chunk_range(shard, columns[trial % len(columns)])
        shard.write_bytes(pristine)
        _flip_bit(shard, int(rng.integers(start, end)), int(rng.integers(0, 8)))
        try:
            table = shards.read_shard(str(shard))
        except shards.CorruptShardError as exc:
            message = str(exc)
        else:
            message = ""
        if message:
            assert str(shard) in message and "corrupt" in message
            detected += 1
            continue
        assert table.equals(original), f"trial {trial}: a flip was read back as other data"
    # Schema v3 stores features PLAIN and uncompressed: a flip in a page header field that no
    # reader uses (e.g. statistics) is harmless; every other flip is caught (checked above).
    assert detected >= 20

    shard.write_bytes(pristine)
    _flip_bit(shard, _data_page_offset(shard, "patch_features"))
    with pytest.raises(shards.CorruptShardError, match=r"part-00000\.parquet: corrupt .*CRC"):
        shards.verify_shard(str(shard))
    with pytest.raises(shards.CorruptShardError, match="CRC"):
        list(shards.iter_shard_batches(str(shard), ["patch_features"], 2))
    # the columns resume reads are intact, so this one-column read still succeeds
    assert shards.read_shard(str(shard), columns=["video_id"]).num_rows == 8


def test_shards_without_checksums_still_read(tmp_path):
    """Shards written before page checksums (plain write_table) read and verify as before."""
    write_synthetic_shards(tmp_path / "new", 4, 4)
    new = tmp_path / "new" / "part-00000.parquet"
    table = shards.read_shard(str(new))
    old = tmp_path / "old" / "part-00000.parquet"
    old.parent.mkdir()
    pq.write_table(table, old, compression="zstd")
    assert shards.read_shard(str(old)).equals(table)
    shards.verify_shard(str(old))
    assert build_index([str(old.parent)], str(tmp_path / "index"))["num_videos"] == 4


def test_build_index_refuses_a_damaged_shard_by_name(tmp_path):
    write_synthetic_shards(tmp_path / "shards", 12, 4)
    bad = tmp_path / "shards" / "part-00001.parquet"
    _flip_bit(bad, _data_page_offset(bad, "context_frame_features"))
    with pytest.raises(shards.CorruptShardError,
                       match=r"part-00001\.parquet: corrupt or unreadable Parquet shard"):
        build_index([str(tmp_path / "shards")], str(tmp_path / "index"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shards"]  # no index, no temp


def test_resume_moves_a_damaged_shard_aside_and_redoes_its_videos(tmp_path, caplog):
    """Shards from before commit records are fully verified on their first rerun."""
    ids, _ = write_synthetic_shards(tmp_path, 9, 3, version=2)
    bad = tmp_path / "part-00001.parquet"
    _flip_bit(bad, _data_page_offset(bad, "frame_features"))
    done = scan_output(str(tmp_path), DIMS, MODEL, SHA)
    assert sorted(done) == sorted(ids[:3] + ids[6:])  # the middle shard's videos are pending
    assert not bad.exists()
    aside = [p.name for p in tmp_path.iterdir() if shards.CORRUPT_MARKER in p.name]
    assert len(aside) == 1 and aside[0].startswith("part-00001.parquet.corrupt-")
    assert "part-00001.parquet: corrupt" in caplog.text and "extracted again" in caplog.text
    assert len(shards.list_shards(str(tmp_path))) == 2
