"""An index directory as `eercf build-index` writes it, opened and validated for querying.

  manifest.json    model identity, dims, counts, schema version, index type and parameters
                   (written last: a directory without it is incomplete)
  recall.faiss     the FAISS recall index over the coarse vectors (row i = video i)
  video_ids.json   row -> video_id (JSON list: every reader understands it)
  video_ids.arrow  the same ids as one Arrow IPC string column, memory-mapped by `open_index`
                   (`VideoIds`: ids are read when a row is asked for, not parsed into a list)
  fine/            the fine-feature store (rows read by offset) (`eercf_core.index.store`)
"""
from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import overload

import faiss
import numpy as np
import pyarrow as pa

from eercf_core.errors import UserInputError
from eercf_core.files import paths
from eercf_core.index import recall
from eercf_core.index.store import FineStore, bytes_per_video
from schemas import SCHEMA_VERSION, FeatureDims

INDEX_SCHEMA_VERSION = 1
MANIFEST = "manifest.json"
RECALL_FILE = "recall.faiss"
IDS_FILE = "video_ids.json"
IDS_ARROW = "video_ids.arrow"
STORE_DIR = "fine"


@dataclass
class IndexDirectory:
    path: Path
    manifest: dict
    index: faiss.Index
    video_ids: Sequence[str]
    store: FineStore

    @property
    def dims(self) -> FeatureDims:
        return FeatureDims.from_dict(self.manifest["dims"])

    def check_model(self, model_id: str, checkpoint_sha256: str) -> None:
        """Refuse a model other than the one that made the indexed features."""
        built = (self.manifest["model_id"], self.manifest["checkpoint_sha256"])
        if built != (model_id, checkpoint_sha256):
            raise UserInputError(
                f"{self.path}: index was built from features of model {built[0]!r} (checkpoint "
                f"sha256 {built[1][:12]}…), but the query model is {model_id!r} (sha256 "
                f"{checkpoint_sha256[:12]}…); query with the extracting model or rebuild")


def make_manifest(*, model_id: str, checkpoint_sha256: str, dims: FeatureDims, num_videos: int,
                  num_error_rows: int, shards: list[str], index_info: dict,
                  build_seconds: dict[str, float], decode_quality: dict[str, int],
                  fine_store: dict | None = None) -> dict:
    """The manifest.json payload of a complete index directory (what `read_manifest` checks).

    decode_quality: ok videos per decode quality of their frames (two keys: mixed settings).
    fine_store: the store's record (codec, codecs, fidelity; default a float16 store)."""
    return {
        "index_schema_version": INDEX_SCHEMA_VERSION,
        "feature_schema_version": SCHEMA_VERSION,
        "model_id": model_id,
        "checkpoint_sha256": checkpoint_sha256,
        "dims": dims.to_dict(),
        "num_videos": num_videos,
        "num_error_rows": num_error_rows,
        "decode_quality": decode_quality,
        "shards": shards,
        "index": index_info,
        "fine_store": {"path": STORE_DIR, **(fine_store or {
            "dtype": "float16", "codec": "fp16", "bytes_per_video": bytes_per_video(dims)})},
        "build_seconds": build_seconds,
    }


def read_manifest(path: str | Path) -> dict:
    """The manifest of an index directory; ValueError if missing, unreadable or another version."""
    path = Path(path)
    manifest_path = path / MANIFEST
    if not path.is_dir():
        raise UserInputError(f"{path}: index directory not found")
    if not manifest_path.is_file():
        raise UserInputError(f"{path}: incomplete index directory (no {MANIFEST}; build-index was "
                             "interrupted or this is not an index)")
    try:
        manifest = json.loads(manifest_path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise UserInputError(f"{manifest_path}: unreadable manifest: {exc}") from None
    if manifest.get("index_schema_version") != INDEX_SCHEMA_VERSION:
        raise UserInputError(f"{manifest_path}: index schema version "
                             f"{manifest.get('index_schema_version')}, expected "
                             f"{INDEX_SCHEMA_VERSION}")
    return manifest


def read_video_ids(path: str | Path) -> list[str]:
    """Row -> video_id map of an index directory; ValueError if missing or unreadable."""
    ids_path = paths.join(os.fspath(path), IDS_FILE)  # a local path or a URL (read in place)
    try:
        with paths.storage_errors(ids_path, "read the video id map"), \
                paths.open_file(ids_path, "rb") as handle:
            return json.loads(handle.read())
    except (OSError, json.JSONDecodeError) as exc:
        raise UserInputError(f"{ids_path}: unreadable video id map: {exc}") from None


def write_video_ids(directory: str | Path, ids: list[str]) -> None:
    """The id map in both forms: `video_ids.json` and `video_ids.arrow` (row i = video i)."""
    from eercf_core.files.atomic import local_temp_path, write_json

    directory = Path(directory)
    write_json(directory / IDS_FILE, ids, indent=None)
    schema = pa.schema([("video_id", pa.string())])
    with local_temp_path(directory / IDS_ARROW) as temp, pa.OSFile(str(temp), "wb") as sink, \
            pa.ipc.new_file(sink, schema) as writer:
        for begin in range(0, len(ids), 1 << 20):
            writer.write_batch(pa.record_batch([pa.array(ids[begin:begin + (1 << 20)],
                                                         pa.string())], schema=schema))


class VideoIds(Sequence[str]):
    """Row -> video_id from a memory-mapped `video_ids.arrow`: O(1) anonymous memory whatever the
    corpus size; `take(rows)` for many rows at once."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            source = pa.memory_map(str(self.path), "r")
            self._ids = pa.ipc.open_file(source).read_all().column("video_id")
        except (OSError, pa.ArrowInvalid, KeyError) as exc:
            raise UserInputError(f"{self.path}: unreadable video id map: {exc}") from None

    def __len__(self) -> int:
        return len(self._ids)

    @overload
    def __getitem__(self, row: int) -> str: ...

    @overload
    def __getitem__(self, row: slice) -> list[str]: ...

    def __getitem__(self, row: int | slice) -> str | list[str]:
        if isinstance(row, slice):
            return self._ids[row].to_pylist()
        value = self._ids[int(row)].as_py()
        assert isinstance(value, str)
        return value

    def __iter__(self) -> Iterator[str]:
        for chunk in self._ids.chunks:
            yield from chunk.to_pylist()

    def __eq__(self, other: object) -> bool:
        if isinstance(other, (list, tuple, VideoIds)):
            return len(self) == len(other) and list(self) == list(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def take(self, rows: np.ndarray) -> list[str]:
        """The ids of `rows` (any int array, flattened), in that order."""
        flat = np.ascontiguousarray(rows, dtype=np.int64).ravel()
        # from_buffers, not pa.array: pa.array imports pandas when it is installed (+58 MB RSS
        # in every query worker) to check whether its argument is a pandas object.
        indices = pa.Array.from_buffers(pa.int64(), flat.size, [None, pa.py_buffer(flat)])
        return self._ids.take(indices).to_pylist()


def open_video_ids(path: str | Path) -> Sequence[str]:
    """The id map of an index directory: memory-mapped `VideoIds` when `video_ids.arrow` exists,
    else (directories built before it) the JSON list."""
    arrow = Path(path) / IDS_ARROW
    return VideoIds(arrow) if arrow.is_file() else read_video_ids(path)


def open_index(path: str | Path, nprobe: int | None = None) -> IndexDirectory:
    """Open and cross-check every part of an index directory: a local path, or a URL whose
    index is fetched once into the local cache (`eercf_core.index.remote`)."""
    from eercf_core.index.remote import local_index  # remote imports this module

    path = local_index(path)
    manifest = read_manifest(path)
    index = recall.load(path / RECALL_FILE, nprobe)
    video_ids = open_video_ids(path)
    store = FineStore(path / STORE_DIR)
    recorded = manifest.get("fine_store", {}).get("codecs", {})
    if recorded != store.codec_meta:
        raise ValueError(f"{path}: the manifest's fine codecs {recorded} differ from the store's "
                         f"{store.codec_meta} ({path / STORE_DIR})")
    n = manifest["num_videos"]
    if not (index.ntotal == len(video_ids) == len(store) == n):
        raise UserInputError(f"{path}: inconsistent index directory: manifest says {n} videos, "
                             f"recall index {index.ntotal}, id map {len(video_ids)}, fine store "
                             f"{len(store)}")
    return IndexDirectory(path, manifest, index, video_ids, store)
