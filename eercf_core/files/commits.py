"""Commit records: a small JSON file beside each feature shard that says the shard is finished.

`part-X.parquet` is finished iff `part-X.commit.json` exists, parses, and agrees with the shard
file. The record is written atomically *after* the shard (`commit_shard`), so a writer killed
between the two leaves a shard without a record, which is unfinished: resume redoes its videos.
A record holds what resume, the completeness check, summaries and build-index's first pass need,
so none of them reads the shard's rows:

    {"format": "eercf.shard-commit", "record_version": 1, "shard": "part-X.parquet",
     "schema_version": 3, "rows": n, "bytes": file size, "crc32": zlib CRC-32 of the whole file
     (8 hex digits), "footer_crc32": CRC-32 of the Parquet footer (the last 8 + footer-length
     bytes), "model_id", "checkpoint_sha256", "dims": {...},
     "video_id": [n ids], "status": [n], "decode_quality": [n], "error": [n], "error_cause": [n],
     "warning": [n]}   (per-row lists; null where a row has no value)

Validating a record (`read_valid_record`) costs one small read, one stat and one read of the
footer, never the rows: a record is trusted when its size and footer checksum match the file,
so a shard replaced, truncated or rewritten after its record is redone. The whole-file CRC is
for deep checks (`verify_committed`, `eercf verify`); page checksums are verified wherever rows
are read (build-index).

Shards written before commit records existed (schema versions 1-2) are adopted on the first
rerun: fully read (every page checksum), then given a record (`adopt_legacy`, logged). A
version 3 shard without a valid record is never adopted: it is unfinished by definition.
"""
from __future__ import annotations

import json
import logging
import posixpath
import struct
import zlib
from dataclasses import dataclass
from typing import Any

import fsspec
import pyarrow as pa

from eercf_core.files import paths, shards
from eercf_core.files.atomic import write_json
from schemas import FeatureDims
from schemas.video_features import (
    BINARY_FEATURES_SINCE,
    META_CHECKPOINT_SHA256,
    META_DIMS,
    META_MODEL_ID,
)

log = logging.getLogger(__name__)

RECORD_FORMAT = "eercf.shard-commit"
RECORD_VERSION = 1
RECORD_SUFFIX = ".commit.json"
# Per-row columns copied into the record (None where a version 1 shard lacks one).
ROW_FIELDS = ("video_id", "status", "decode_quality", "error", "error_cause", "warning")


class InvalidRecord(Exception):
    """A commit record that is missing, unreadable or disagrees with its shard; `reason`
    says which."""

    def __init__(self, shard: str, reason: str):
        super().__init__(f"{shard}: {reason}")
        self.shard, self.reason = shard, reason


@dataclass(frozen=True)
class CommitRecord:
    """A parsed, validated commit record (see module docstring); `columns` maps each of
    `ROW_FIELDS` to its per-row list."""

    shard: str  # the shard's URL
    schema_version: int
    rows: int
    size: int
    crc32: int
    model_id: str
    checkpoint_sha256: str
    dims: FeatureDims
    columns: dict[str, list[Any]]

    @property
    def identity(self) -> tuple[FeatureDims, str, str]:
        return self.dims, self.model_id, self.checkpoint_sha256


def record_path(shard: str) -> str:
    """`<dir>/part-X.commit.json` for `<dir>/part-X.parquet`."""
    if not shard.endswith(shards.SHARD_SUFFIX):
        raise ValueError(f"{shard}: not a shard path (*{shards.SHARD_SUFFIX})")
    return shard[: -len(shards.SHARD_SUFFIX)] + RECORD_SUFFIX


def _footer_crc32(fs: fsspec.AbstractFileSystem, target: str, size: int) -> int:
    """CRC-32 of a Parquet file's footer (metadata + its length + magic), read from the end."""
    if size < 12:
        raise ValueError("too small to be a Parquet file")
    with fs.open(target, "rb") as handle:
        handle.seek(size - 8)
        tail = handle.read(8)
        length = struct.unpack("<i", tail[:4])[0]
        if tail[4:] != b"PAR1" or not 0 < length <= size - 12:
            raise ValueError("no Parquet footer at the end of the file")
        handle.seek(size - 8 - length)
        return zlib.crc32(handle.read(length + 8))


def _record_payload(shard: str, table: pa.Table, size: int, crc32: int, footer_crc32: int
                    ) -> dict[str, Any]:
    version = shards.schema_version(shard, table.schema)  # (also checks the eercf metadata)
    meta = table.schema.metadata
    dims = FeatureDims.from_meta(meta[META_DIMS])
    model_id = meta[META_MODEL_ID].decode()
    checkpoint_sha256 = meta[META_CHECKPOINT_SHA256].decode()
    columns = {name: (table.column(name).to_pylist() if name in table.column_names
                      else [None] * table.num_rows) for name in ROW_FIELDS}
    if "decode_quality" not in table.column_names:  # version 1: every frame decoded exactly
        columns["decode_quality"] = shards.decode_qualities(table)
    return {"format": RECORD_FORMAT, "record_version": RECORD_VERSION,
            "shard": posixpath.basename(shard), "schema_version": version,
            "rows": table.num_rows, "bytes": size, "crc32": f"{crc32:08x}",
            "footer_crc32": f"{footer_crc32:08x}", "model_id": model_id,
            "checkpoint_sha256": checkpoint_sha256, "dims": dims.to_dict(), **columns}


def write_record(shard: str, table: pa.Table, size: int, crc32: int) -> None:
    """Write the commit record of the finished shard file `shard` (atomically). `table` holds
    at least the schema (with its eercf metadata) and the `ROW_FIELDS` columns it has."""
    fs, target = paths.filesystem(shard)
    payload = _record_payload(shard, table, size, crc32, _footer_crc32(fs, target, size))
    write_json(record_path(shard), payload, indent=None)


def commit_shard(path: str, rows: list[dict], dims: FeatureDims, model_id: str,
                 checkpoint_sha256: str, metadata: dict[str, str] | None = None) -> None:
    """Write the shard `path` (shards.write_shard, the latest schema) and then its commit
    record; an old record is removed first, so no moment exists where a stale record vouches
    for a new file."""
    remove_record(path)
    written = shards.write_shard(path, rows, dims, model_id, checkpoint_sha256, metadata)
    write_record(path, written.table, written.size, written.crc32)


def remove_record(shard: str) -> None:
    """Delete the commit record of `shard` if there is one (the shard is then unfinished)."""
    fs, target = paths.filesystem(record_path(shard))
    if fs.exists(target):
        fs.rm(target)


def read_valid_record(shard: str) -> CommitRecord:
    """The commit record of `shard`, checked against the file without reading its rows: it
    parses, names this shard, its row lists have `rows` entries, and the file's size and footer
    CRC-32 are the recorded ones. InvalidRecord (with the reason) otherwise."""
    fs, target = paths.filesystem(record_path(shard))
    try:
        with fs.open(target, "rb") as handle:
            data = json.loads(handle.read())
    except FileNotFoundError:
        raise InvalidRecord(shard, "no commit record") from None
    except (OSError, ValueError) as exc:  # ValueError: truncated or garbled JSON / UTF-8
        raise InvalidRecord(shard, f"unreadable commit record ({exc})") from None
    try:
        if not isinstance(data, dict) or data.get("format") != RECORD_FORMAT:
            raise ValueError(f"not a {RECORD_FORMAT} record")
        if data["shard"] != posixpath.basename(shard):
            raise ValueError(f"record names shard {data['shard']!r}")
        rows = int(data["rows"])
        columns = {name: data[name] for name in ROW_FIELDS}
        if any(not isinstance(values, list) or len(values) != rows
               for values in columns.values()):
            raise ValueError(f"row lists do not all have {rows} entries")
        record = CommitRecord(
            shard=shard, schema_version=int(data["schema_version"]), rows=rows,
            size=int(data["bytes"]), crc32=int(data["crc32"], 16), model_id=str(data["model_id"]),
            checkpoint_sha256=str(data["checkpoint_sha256"]),
            dims=FeatureDims.from_dict(data["dims"]), columns=columns)
        footer = int(data["footer_crc32"], 16)
    except (KeyError, TypeError, ValueError) as exc:
        raise InvalidRecord(shard, f"bad commit record ({exc})") from None
    shard_fs, shard_target = paths.filesystem(shard)
    try:
        size = int(shard_fs.size(shard_target))
    except FileNotFoundError:
        raise InvalidRecord(shard, "commit record without its shard") from None
    if size != record.size:
        raise InvalidRecord(shard, f"shard is {size} bytes, its record says {record.size}")
    try:
        actual = _footer_crc32(shard_fs, shard_target, size)
    except (OSError, ValueError) as exc:
        raise InvalidRecord(shard, f"unreadable footer ({exc})") from None
    if actual != footer:
        raise InvalidRecord(shard, "the shard's footer is not the one its record was made for")
    return record


def adopt_legacy(shard: str) -> CommitRecord:
    """Give a shard written before commit records (schema version 1 or 2) its record: every page
    is read (checksums verified) and the whole file's CRC-32 computed first. Raises
    CorruptShardError when it is damaged, InvalidRecord when it is a version 3+ shard (whose
    missing record means it is unfinished)."""
    version = shards.shard_version(shard)
    if version >= BINARY_FEATURES_SINCE:
        raise InvalidRecord(shard, f"schema version {version} shard without a valid commit "
                                   "record (unfinished)")
    shards.verify_shard(shard)
    table = shards.read_shard(shard, columns=list(ROW_FIELDS))
    size, crc32 = shards.file_crc32(shard)
    write_record(shard, table, size, crc32)
    log.info("%s: written before commit records; fully verified and committed (later reruns "
             "read only its record)", shard)
    return read_valid_record(shard)


def verify_committed(shard: str) -> CommitRecord:
    """Deep check of one shard: a valid record, the whole file's CRC-32 equal to the recorded
    one, and every page checksum. Raises InvalidRecord or CorruptShardError naming the shard."""
    record = read_valid_record(shard)
    size, crc32 = shards.file_crc32(shard)
    if (size, crc32) != (record.size, record.crc32):
        raise shards.CorruptShardError(
            shard, f"whole-file CRC-32 {crc32:08x}, its commit record says {record.crc32:08x}")
    shards.verify_shard(shard)
    return record


def committed_shards(root: str) -> tuple[list[tuple[str, dict[str, list[Any]]]], list[str]]:
    """([(shard, its `row_columns`)] for every shard under `root` that counts, in shard order;
    [shards that do not count: version 3+ without a valid record]). Reads only commit records
    (O(shards)), and the small columns of shards written before records."""
    counted, uncommitted = [], []
    for shard in shards.list_shards(root):
        columns = row_columns(shard)
        if columns is None:
            uncommitted.append(shard)
        else:
            counted.append((shard, columns))
    return counted, uncommitted


def row_columns(shard: str) -> dict[str, list[Any]] | None:
    """The `ROW_FIELDS` lists of a shard for readers that must not change the output
    (summaries, completeness, build-index): from its valid commit record; for a shard written
    before records (schema 1-2) without one, read from its columns; None for a version 3+ shard
    without a valid record (unfinished: it does not count)."""
    try:
        return read_valid_record(shard).columns
    except InvalidRecord:
        if shards.shard_version(shard) >= BINARY_FEATURES_SINCE:
            return None
    table = shards.read_shard(shard, columns=list(ROW_FIELDS))
    columns = {name: (table.column(name).to_pylist() if name in table.column_names
                      else [None] * table.num_rows) for name in ROW_FIELDS}
    columns["decode_quality"] = shards.decode_qualities(table)
    return columns
