"""Feature-shard IO: write, validate, list and read the Parquet shards of `eercf extract`.

A shard holds one row per input video (ok or error) with the columns of
`schemas.video_features_schema`. Shards are written once, atomically: rows go to a hidden temp
file (`.<name>.tmp-<random>`) in the same directory, which is then renamed to `<name>.parquet`.
A shard is therefore complete iff a visible `*.parquet` file exists; a killed writer leaves only
hidden temp files, which `list_shards` ignores and `remove_temp_files` deletes.
Integrity: every page carries a CRC-32 (Parquet page checksums), verified on every read; a shard
that fails (bit flips, truncation) raises `CorruptShardError` naming the file. Shards written
before checksums existed still read (their pages have no CRC to verify).
Paths are fsspec URLs (local paths, file://, s3://, gs://, memory://, ...).
"""
from __future__ import annotations

import contextlib
import posixpath
import time
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from eercf_core.errors import UserInputError
from eercf_core.files import paths
from eercf_core.files.atomic import is_temp_name, open_atomic
from schemas import (
    COLUMN_OF_FEATURE,
    FEATURE_COLUMNS,
    SCHEMA_VERSION,
    STATUS_OK,
    FeatureDims,
    video_features_schema,
)
from schemas.video_features import (
    COLUMNS_SINCE,
    META_CHECKPOINT_SHA256,
    META_DIMS,
    META_MODEL_ID,
    META_SCHEMA_VERSION,
    SUPPORTED_SCHEMA_VERSIONS,
)

if TYPE_CHECKING:  # the core model module is only needed by features_from_table
    from eercf_core import VideoFeatures

SHARD_SUFFIX = ".parquet"
WRITER_KEY = "eercf.writer"  # optional footer metadata: the worker that wrote a shard (host:pid)
QUALITY_OF_V1_SHARDS = "exact"  # eercf_core.video.decode.QUALITY_EXACT, before the setting existed
CORRUPT_MARKER = ".corrupt-"  # a shard moved aside by resume: `<name>.parquet.corrupt-<time>`


class CorruptShardError(UserInputError):
    """A shard that cannot be read back intact (checksum mismatch, truncated or garbled file)."""

    def __init__(self, path: str, detail: str):
        super().__init__(f"{path}: corrupt or unreadable Parquet shard ({detail}); re-extract it "
                         "(`eercf extract` on the same --output redoes it)")
        self.path = path


_FIXED_COLUMNS = (*FEATURE_COLUMNS, "frame_mask")


def _fs_path(url: str) -> tuple[fsspec.AbstractFileSystem, str]:
    fs, path = paths.filesystem(url)
    return fs, path


def _fixed_list_column(
    rows: Sequence[dict], name: str, size: int, dtype: type[np.generic], field_type: pa.DataType
) -> pa.Array:
    """Stack per-row flat arrays into a FixedSizeListArray (versions 1-2) or a
    FixedSizeBinaryArray of each row's array bytes (version 3+); None rows are zero-filled.

    Zeros, not nulls: Arrow's Parquet reader (pyarrow <= 25, apache/arrow#35692) cannot read
    null fixed-size lists back, so error rows carry zero features and an all-False frame_mask;
    `status` says which rows are real.
    """
    values = np.zeros((len(rows), size), dtype=dtype)
    for i, row in enumerate(rows):
        item = row.get(name)
        if item is None:
            continue
        if isinstance(item, (bytes, bytearray, memoryview)):  # a version 3 row read back
            flat = np.frombuffer(item, dtype=np.dtype(dtype).newbyteorder("<"))
        else:
            flat = np.asarray(item).reshape(-1)
        if flat.size != size:
            raise ValueError(
                f"row {i} (video_id={row.get('video_id')!r}): column {name!r} has {flat.size} "
                f"values, the shard dims need {size}"
            )
        values[i] = flat.astype(dtype, copy=False)
    if pa.types.is_fixed_size_binary(field_type):
        little = values.astype(values.dtype.newbyteorder("<"), copy=False)
        return pa.FixedSizeBinaryArray.from_buffers(
            field_type, len(rows), [None, pa.py_buffer(little.tobytes())])
    return pa.FixedSizeListArray.from_arrays(
        pa.array(values.reshape(-1), type=field_type.value_type), size
    )


def rows_to_table(
    rows: Sequence[dict], dims: FeatureDims, model_id: str, checkpoint_sha256: str,
    version: int = SCHEMA_VERSION,
) -> pa.Table:
    """Build a validated Arrow table of `rows` (dicts keyed by schema field names).

    Feature columns are flat arrays (any float dtype, cast to float16) or None on error rows
    (stored as zeros); `frame_mask` is a bool array [T] or None (stored all False).
    `model_id`/`checkpoint_sha256` fill every row.
    `version` < SCHEMA_VERSION writes an older layout (tests of backward compatibility).
    Raises ValueError naming the offending row and column.
    """
    schema = video_features_schema(dims, model_id, checkpoint_sha256, version)
    sizes = dims.column_sizes()
    known = set(schema.names)
    arrays = []
    for i, row in enumerate(rows):
        unknown = set(row) - known
        if unknown:
            raise ValueError(f"row {i} (video_id={row.get('video_id')!r}): unknown columns "
                             f"{sorted(unknown)}; schema columns: {schema.names}")
    for field in schema:
        if field.name in _FIXED_COLUMNS:
            dtype = np.bool_ if field.name == "frame_mask" else np.float16
            arrays.append(
                _fixed_list_column(rows, field.name, sizes[field.name], dtype, field.type))
            continue
        column: list[Any]
        if field.name == "model_id":
            column = [model_id] * len(rows)
        elif field.name == "checkpoint_sha256":
            column = [checkpoint_sha256] * len(rows)
        else:
            column = [_plain(row.get(field.name)) for row in rows]
        try:
            arrays.append(pa.array(column, type=field.type))
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, OverflowError) as exc:
            raise ValueError(f"column {field.name!r}: {exc}") from exc
        if not field.nullable and arrays[-1].null_count:
            bad = column.index(None)
            raise ValueError(f"row {bad}: column {field.name!r} must not be null")
    return pa.Table.from_arrays(arrays, schema=schema)


def _plain(value: Any) -> Any:
    """numpy scalars/arrays -> Python values pyarrow accepts for scalar/list columns."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


class _Crc32Writer:
    """A write-only file wrapper that counts the bytes going through it and their zlib CRC-32
    (the whole-file checksum of a commit record, computed without reading the file back)."""

    def __init__(self, handle: Any):
        self.handle, self.size, self.crc = handle, 0, 0
        self.closed = False

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        self.crc = zlib.crc32(view, self.crc)
        self.size += len(view)
        self.handle.write(view)
        return len(view)

    def flush(self) -> None:
        self.handle.flush()

    def tell(self) -> int:
        return self.size

    def writable(self) -> bool:
        return True

    def close(self) -> None:  # the atomic writer owns the real handle
        self.closed = True


@dataclass(frozen=True)
class WrittenShard:
    """What `write_shard` wrote: the table (for its commit record), the file's size in bytes
    and the zlib CRC-32 of all its bytes."""

    table: pa.Table
    size: int
    crc32: int


def write_shard(
    path: str, rows: list[dict], dims: FeatureDims, model_id: str, checkpoint_sha256: str,
    metadata: dict[str, str] | None = None,
    version: int = SCHEMA_VERSION,
) -> WrittenShard:
    """Write `rows` to the Parquet shard `path` atomically (hidden temp name, then rename).

    `rows` use schema field names; features are flat float16 numpy arrays (None on error rows),
    `frame_mask` a bool array [T]. `metadata` adds footer key-values (e.g. `WRITER_KEY`).
    Parent directories are created. An existing shard at `path` is replaced. `version` as in
    `rows_to_table`. The shard is not finished until its commit record is written
    (eercf_core.files.commits.commit_shard does both).
    """
    table = rows_to_table(rows, dims, model_id, checkpoint_sha256, version)
    if metadata:
        table = table.replace_schema_metadata(
            {**table.schema.metadata, **{k.encode(): v.encode() for k, v in metadata.items()}})
    with open_atomic(path) as handle:
        counted = _Crc32Writer(handle)
        pq.write_table(table, counted, write_page_checksum=True,
                       **_parquet_options(table.schema))
    return WrittenShard(table, counted.size, counted.crc)


def _binary_columns(schema: pa.Schema) -> set[str]:
    return {f.name for f in schema if pa.types.is_fixed_size_binary(f.type)}


def _parquet_options(schema: pa.Schema) -> dict[str, Any]:
    """Writer options: zstd and dictionary encoding for the small columns; the fixed-size
    binary feature columns (schema version 3+) PLAIN and uncompressed, as float16 features
    barely compress (a few percent) and a dictionary of unique vectors only adds work
    (README, "Shard layout")."""
    binary = _binary_columns(schema)
    if not binary:
        return {"compression": "zstd"}
    paths = {}
    for field in schema:  # compression is keyed by Parquet column path
        path = f"{field.name}.list.element" if pa.types.is_list(field.type) else field.name
        paths[path] = "none" if field.name in binary else "zstd"
    return {"compression": paths,
            "use_dictionary": [p for p, codec in paths.items() if codec == "zstd"]}


def file_crc32(path: str, chunk_bytes: int = 8 << 20) -> tuple[int, int]:
    """(size in bytes, zlib CRC-32 of every byte) of a file, read in chunks."""
    fs, target = _fs_path(path)
    crc, size = 0, 0
    with fs.open(target, "rb") as handle:
        while chunk := handle.read(chunk_bytes):
            crc = zlib.crc32(chunk, crc)
            size += len(chunk)
    return size, crc


def schema_version(path: str, schema: pa.Schema) -> int:
    """The eercf schema version of a shard schema; ValueError naming `path` if unreadable."""
    meta = schema.metadata or {}
    version = meta.get(META_SCHEMA_VERSION)
    if version is None or META_DIMS not in meta:
        raise UserInputError(f"{path}: not an eercf feature shard (missing eercf.* metadata)")
    try:
        number = int(version.decode())
    except ValueError:
        raise UserInputError(f"{path}: bad eercf.schema_version metadata {version!r}") from None
    if number not in SUPPORTED_SCHEMA_VERSIONS:
        raise UserInputError(f"{path}: schema version {number}, this reader reads versions "
                             f"{list(SUPPORTED_SCHEMA_VERSIONS)} (writes {SCHEMA_VERSION}); "
                             "re-extract or use a matching eercf version")
    return number


def _check_schema(path: str, schema: pa.Schema) -> FeatureDims:
    meta = schema.metadata or {}
    version = schema_version(path, schema)
    try:
        dims = FeatureDims.from_meta(meta[META_DIMS])
    except ValueError as exc:
        raise UserInputError(f"{path}: bad eercf.dims metadata {meta[META_DIMS]!r}") from exc
    expected = video_features_schema(dims, version=version)
    for field in expected:
        if field.name not in schema.names:
            raise UserInputError(f"{path}: missing column {field.name!r}")
        actual = schema.field(field.name).type
        if actual != field.type:
            raise UserInputError(f"{path}: column {field.name!r} has type {actual}, expected "
                                 f"{field.type} for dims {dims}")
    return dims


@contextlib.contextmanager
def _parquet_source(path: str) -> Iterator[tuple[Any, bool]]:
    """(open file for pyarrow, whether pyarrow may read it from its thread pools).

    Local shards are opened as native Arrow files: all IO stays in C++. Other URLs go through
    an fsspec (Python) file object, which Arrow must read on the calling thread
    (use_threads=False). Threaded reads of a Python file leave clean-up work on Arrow's pools
    that takes the GIL after the read returned; if that work runs while the interpreter is
    exiting, the thread is torn down inside a C++ destructor and the process aborts
    ("terminate called without an active exception", exit 134: apache/arrow#33975, #34314).
    """
    fs, target = _fs_path(path)
    local = "file" in (fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,))
    with (pa.OSFile(target, "rb") if local else fs.open(target, "rb")) as handle:
        yield handle, local


@contextlib.contextmanager
def _open_parquet(path: str) -> Iterator[tuple[pq.ParquetFile, bool]]:
    """(ParquetFile with page checksum verification, threads allowed), errors naming `path`."""
    try:
        with _parquet_source(path) as (handle, threads):
            yield pq.ParquetFile(handle, page_checksum_verification=True), threads
    except (pa.ArrowException, OSError) as exc:
        raise CorruptShardError(path, " ".join(str(exc).split())) from exc


def read_shard(path: str, columns: list[str] | None = None) -> pa.Table:
    """Read a shard (all or some columns) after validating schema version, dims and columns.

    A requested column that a later schema version added is left out of an older shard's
    table (see `decode_qualities`). Page checksums of the columns read are verified. Raises
    CorruptShardError (a ValueError) naming the file when its bytes are damaged, ValueError
    naming it when it is not a valid shard of a readable version.
    """
    with _open_parquet(path) as (parquet, threads):
        schema = parquet.schema_arrow
        _check_schema(path, schema)
        if columns is not None:
            version = schema_version(path, schema)
            missing = [c for c in columns if c not in schema.names
                       and COLUMNS_SINCE.get(c, 0) <= version]
            if missing:
                raise UserInputError(f"{path}: unknown columns {missing}")
            columns = [c for c in columns if c in schema.names]
        return parquet.read(columns=columns, use_threads=threads)


def iter_shard_batches(path: str, columns: list[str] | None, batch_rows: int
                       ) -> Iterator[pa.RecordBatch]:
    """Stream `columns` (None: all) of a shard in record batches of at most `batch_rows` rows,
    page checksums verified; CorruptShardError naming the file on damaged bytes."""
    with _open_parquet(path) as (parquet, threads):
        _check_schema(path, parquet.schema_arrow)
        yield from parquet.iter_batches(batch_size=batch_rows, columns=columns,
                                        use_threads=threads)


def verify_shard(path: str, batch_rows: int = 64) -> None:
    """Read every page of a shard (streaming, bounded memory) so every checksum is checked;
    CorruptShardError naming the file when one fails."""
    for _ in iter_shard_batches(path, None, batch_rows):
        pass


def move_aside(path: str) -> str:
    """Rename a (corrupt) shard to `<name>.corrupt-<unix time>`, which no reader lists; returns
    the new path. Kept rather than deleted so the damage can be inspected."""
    fs, target = _fs_path(path)
    aside = f"{target}{CORRUPT_MARKER}{int(time.time())}"
    fs.mv(target, aside)
    return aside


def count_rows(root: str) -> int:
    """Rows (videos) in the finished shards under `root`, from the footers only; a shard whose
    footer cannot be read counts 0."""
    total = 0
    for path in list_shards(root):
        try:
            with _open_parquet(path) as (parquet, _):
                total += parquet.metadata.num_rows
        except CorruptShardError:
            continue
    return total


def shard_metadata(path: str) -> dict[str, str]:
    """The footer key-value metadata of a shard (eercf.* keys, WRITER_KEY when recorded)."""
    fs, target = _fs_path(path)
    try:
        with fs.open(target, "rb") as handle:
            meta = pq.read_schema(handle).metadata or {}
    except (pa.ArrowInvalid, OSError) as exc:
        raise CorruptShardError(path, str(exc)) from exc
    return {k.decode(): v.decode() for k, v in meta.items() if not k.startswith(b"ARROW:")}


def decode_qualities(table: pa.Table) -> list[str | None]:
    """Per-row decode quality of a shard table ("exact" | "fast"; None on rows that never
    decoded). Version 1 shards predate the setting: their frames were all decoded exactly."""
    if "decode_quality" in table.column_names:
        return table.column("decode_quality").to_pylist()
    return [QUALITY_OF_V1_SHARDS if status == STATUS_OK else None
            for status in table.column("status").to_pylist()]


def _footer_schema(path: str) -> pa.Schema:
    with _open_parquet(path) as (parquet, _):
        return parquet.schema_arrow


def shard_version(path: str) -> int:
    """The validated feature schema version of a shard, from its footer only."""
    schema = _footer_schema(path)
    _check_schema(path, schema)
    return schema_version(path, schema)


def shard_identity(path: str) -> tuple[FeatureDims, str, str]:
    """(dims, model_id, checkpoint_sha256) of a shard, from its footer only."""
    return identity_of_schema(path, _footer_schema(path))


def identity_of_schema(path: str, schema: pa.Schema) -> tuple[FeatureDims, str, str]:
    """(dims, model_id, checkpoint_sha256) of a validated shard schema (`path` names it in
    errors)."""
    dims = _check_schema(path, schema)
    meta = schema.metadata
    return dims, meta[META_MODEL_ID].decode(), meta[META_CHECKPOINT_SHA256].decode()


def list_shards(root: str) -> list[str]:
    """Completed shards (`*.parquet`, not hidden temp files) directly under `root`, sorted.

    Listed from the store itself, never from a cached listing (`paths.list_dir`): shards that
    other processes wrote (Beam and Dask workers) are seen. A missing root gives an empty list.
    """
    found = []
    for entry in paths.list_dir(root):
        name = posixpath.basename(entry.rstrip("/"))
        if name.endswith(SHARD_SUFFIX) and not name.startswith("."):
            found.append(posixpath.join(root.rstrip("/"), name))
    return sorted(found)


def remove_temp_files(root: str) -> int:
    """Delete temp files that a killed writer left under `root`; returns how many."""
    fs, _ = _fs_path(root)
    removed = 0
    for entry in paths.list_dir(root):
        name = posixpath.basename(entry.rstrip("/"))
        if is_temp_name(name):
            fs.rm(entry)
            removed += 1
    return removed


def fixed_column_array(column: pa.Array | pa.ChunkedArray, dtype: Any,
                       shape: Sequence[int]) -> np.ndarray:
    """One fixed-size shard column as a numpy array [rows, *shape] of `dtype`: a fixed-size
    binary column (schema version 3+; zero-copy over Arrow's buffer, read-only) or a fixed-size
    list column (versions 1-2, a copy)."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    rows = len(column)
    if pa.types.is_fixed_size_binary(column.type):
        width = column.type.byte_width
        data = column.buffers()[1]
        flat = np.frombuffer(data, dtype=np.dtype(dtype).newbyteorder("<"),
                             count=rows * width // np.dtype(dtype).itemsize,
                             offset=column.offset * width)
        return flat.reshape(rows, *shape)
    return column.flatten().to_numpy(zero_copy_only=False).reshape(rows, *shape)


def feature_arrays(rows: pa.Table | pa.RecordBatch, dims: FeatureDims) -> dict[str, np.ndarray]:
    """The fixed-size feature columns of `rows` as numpy arrays keyed by feature name
    (`schemas.COLUMN_OF_FEATURE`), stored dtype (float16, bool mask), shapes [n, *shape] with
    per-video shapes `dims.feature_shapes()`. Reads every schema version (list or binary
    columns); the arrays of binary columns may be read-only views."""
    return {name: fixed_column_array(rows.column(COLUMN_OF_FEATURE[name]),
                                     np.bool_ if name == "mask" else np.float16, shape)
            for name, shape in dims.feature_shapes().items()}


def features_from_table(table: pa.Table) -> tuple[list[str], VideoFeatures]:
    """(video_ids, VideoFeatures) of the ok rows of a shard table, features float32.

    Shapes: coarse [B,D], frame [B,T,D], context [B,T,D], patch [B,T*P,D], mask [B,T] bool.
    """
    import torch

    from eercf_core import VideoFeatures

    dims = _check_schema("<table>", table.schema)
    ok = table.filter(pc.equal(table.column("status"), STATUS_OK))
    tensors = {name: torch.from_numpy(np.ascontiguousarray(
        values if name == "mask" else values.astype(np.float32)))
        for name, values in feature_arrays(ok, dims).items()}
    return ok.column("video_id").to_pylist(), VideoFeatures(**tensors)
