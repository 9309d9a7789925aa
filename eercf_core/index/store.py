"""Memory-mapped fine-feature store: what the rerank needs, one row per indexed video.

Layout of a store directory (row i = video i of the index, float16 as in the shards):
  coarse.npy   [N, D]      coarse vectors v (also in the recall index; kept for exact S_V)
  frame.npy    [N, T, D]   raw CLIP frame features f
  context.npy  [N, T, D]   temporal-head frame outputs ĥ
  patch.npy    [N, T*P, D] patch tokens p (~96 % of the bytes)
  mask.npy     [N, T]      bool frame mask
  store.json   dims, row count, codecs; written last, so its presence means the store is complete

With a fine codec (`eercf_core.index.codecs`, `--fine-codec`) a kind is stored as codes instead:
  {kind}.codes.npy  [N, rows, code_size] uint8 (rows = T or T*P)   and   {kind}.codec (FAISS file)
store.json records each codec's factory string, file, code size and sha256; a missing, corrupt or
mismatched codec file is refused when the store is opened.

Files are standard `.npy` (any reader can `np.load(path, mmap_mode="r")` them). The store reads
rows with positional reads (`os.preadv`) into the caller's buffer: reading video i touches only
its rows (random access, no scan), a corpus larger than RAM works (the rows come through the page
cache), and a query worker's resident set stays at its buffers' size however many rows it has
read. (Through a memory map, every page read stays in the reader's RSS until the kernel reclaims
it: a worker that reranked for a while over a 1M-video store showed gigabytes of RSS.) The writer
fills preallocated files in order, in bounded memory.
"""
from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from eercf_core.errors import UserInputError
from eercf_core.files.atomic import write_json
from eercf_core.index.codecs import CODED_KINDS, VectorCodec
from schemas import COLUMN_OF_FEATURE, FeatureDims

if TYPE_CHECKING:
    import torch

    from eercf_core.model.features import VideoFeatures

STORE_META = "store.json"
KINDS = tuple(COLUMN_OF_FEATURE)  # coarse, frame, context, patch, mask


def _shapes(dims: FeatureDims, n: int) -> dict[str, tuple[int, ...]]:
    return {kind: (n, *shape) for kind, shape in dims.feature_shapes().items()}


def bytes_per_video(dims: FeatureDims, code_sizes: dict[str, int] | None = None) -> int:
    """Bytes one video takes in the store (all five arrays); code_sizes: bytes per vector of
    the kinds stored as codes (the others are float16)."""
    code_sizes = code_sizes or {}
    total = 0
    for kind, shape in _shapes(dims, 1).items():
        vectors = int(np.prod(shape[1:-1]))
        per_vector = (code_sizes[kind] if kind in code_sizes
                      else shape[-1] * (1 if kind == "mask" else 2))
        total += vectors * per_vector
    return total


def _file_of(kind: str, coded: bool) -> str:
    return f"{kind}.codes.npy" if coded else f"{kind}.npy"


def _stored_shape(shape: tuple[int, ...], codec: VectorCodec | None) -> tuple[int, ...]:
    return shape if codec is None else (*shape[:-1], codec.code_size)


class _NpyRows:
    """Rows of one `.npy` file addressed by offset: its shape, dtype, data offset and bytes per
    row (from `header`, the file opened with np.load(mmap_mode="r")) and an open descriptor."""

    def __init__(self, path: Path, header: np.ndarray, flags: int) -> None:
        assert isinstance(header, np.memmap), f"{path}: not memory-mapped"
        self.path, self.shape, self.dtype = path, header.shape, header.dtype
        self.offset = int(header.offset)
        self.row_bytes = int(np.prod(self.shape[1:], dtype=np.int64)) * self.dtype.itemsize
        self.fd = os.open(path, flags)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1  # a read or write after close fails with EBADF


class _RowFile(_NpyRows):
    """Rows of one preallocated `.npy` file, written with `os.pwrite` at their offsets.

    Not a writable memory map: its dirty pages count in the writing process's resident set until
    written back (a 6 GB float16 store at 10k ViT-B/32 videos showed a 7.4 GB peak RSS), while
    positional writes go through the page cache and leave the process at its buffers' size."""

    def __init__(self, path: Path) -> None:
        super().__init__(path, np.load(path, mmap_mode="r"), os.O_WRONLY)

    def write(self, first_row: int, values: np.ndarray) -> None:
        """Write rows [first_row, first_row + len(values)) (values of this file's row shape)."""
        assert self.fd >= 0, f"{self.path}: closed"
        data = np.ascontiguousarray(values, dtype=self.dtype).reshape(-1).view(np.uint8).data
        position = self.offset + first_row * self.row_bytes
        while data:
            written = os.pwrite(self.fd, data, position)
            data, position = data[written:], position + written


class _RowReader(_NpyRows):
    """Rows of one `.npy` file read with positional reads (`os.preadv`) into a buffer: the
    rows come through the page cache and never count in the reader's resident set."""

    def __init__(self, path: Path, header: np.ndarray) -> None:
        super().__init__(path, header, os.O_RDONLY)

    def take(self, rows: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """Rows `rows` (any shape R, any order, repeats allowed) as [*R, *row shape], like
        `np.take(array, rows, axis=0, out=out)`; runs of consecutive rows are one read."""
        flat = rows.reshape(-1)
        if flat.size and (int(flat.min()) < 0 or int(flat.max()) >= self.shape[0]):
            raise IndexError(f"{self.path}: rows out of range [0, {self.shape[0]})")
        shape = (*rows.shape, *self.shape[1:])
        result = np.empty(shape, self.dtype) if out is None else out
        if result.shape != shape or result.dtype != self.dtype or not result.flags.c_contiguous:
            raise ValueError(f"{self.path}: out must be a contiguous {self.dtype} array of shape "
                             f"{shape}, got {result.dtype} {result.shape}")
        if not flat.size or not self.row_bytes:
            return result
        target = memoryview(result.reshape(-1).view(np.uint8).data)
        starts = np.flatnonzero(np.diff(flat, prepend=flat[0] - 2) != 1)
        ends = np.append(starts[1:], flat.size)
        for first, last, row in zip(starts.tolist(), ends.tolist(), flat[starts].tolist()):
            _read_exactly(self.fd, target[first * self.row_bytes:last * self.row_bytes],
                          self.offset + row * self.row_bytes, self.path)
        return result


def _read_exactly(fd: int, target: memoryview, position: int, path: Path) -> None:
    while target:
        count = os.preadv(fd, [target], position)
        if count <= 0:
            raise UserInputError(f"{path}: truncated fine-store file (no bytes at offset "
                                 f"{position})")
        target, position = target[count:], position + count


def _open_rows(directory: Path, codecs: Mapping[str, object]) -> dict[str, _RowFile]:
    return {kind: _RowFile(directory / _file_of(kind, kind in codecs)) for kind in KINDS}


def _write_rows(files: Mapping[str, _RowFile], first_row: int, dims: FeatureDims,
                codecs: Mapping[str, VectorCodec],
                batch: int, values_by_kind: tuple[np.ndarray, ...]) -> None:
    """Check `batch` rows of every kind (in KINDS order) against the store's shapes, encode the
    coded kinds, and write them at row `first_row` of their files."""
    expected = _shapes(dims, batch)
    for kind, values in zip(KINDS, values_by_kind):
        if values.shape != expected[kind]:
            raise ValueError(f"fine store: {kind} rows have shape {values.shape[1:]}, the "
                             f"store expects {expected[kind][1:]}")
        codec = codecs.get(kind)
        if codec is not None:
            values = codec.encode(values.reshape(-1, dims.embed_dim)).reshape(
                batch, *files[kind].shape[1:])
        files[kind].write(first_row, values)


class FineStoreWriter:
    """Writes `num_videos` rows, in order, into a new store directory (bounded memory).

    `codecs`: trained codecs of the kinds to store as codes ({kind: VectorCodec}); the codec
    files are written at once, the codes as rows are appended.
    """

    def __init__(self, directory: str | Path, num_videos: int, dims: FeatureDims,
                 codecs: dict[str, VectorCodec] | None = None) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.dims, self.num_videos, self.written = dims, num_videos, 0
        self.codecs = dict(codecs or {})
        unknown = set(self.codecs) - set(CODED_KINDS)
        if unknown:
            raise ValueError(f"fine store: no codec possible for {sorted(unknown)}")
        self.codec_meta = {kind: {"factory": codec.factory, "file": f"{kind}.codec",
                                  "code_size": codec.code_size,
                                  "sha256": codec.save(self.directory / f"{kind}.codec")}
                           for kind, codec in self.codecs.items()}
        # A zero-row .npy cannot be memory-mapped; allocate at least one row, record the count.
        rows = max(1, num_videos)
        for kind, shape in _shapes(dims, rows).items():  # header + sparse preallocation
            created = np.lib.format.open_memmap(
                self.directory / _file_of(kind, kind in self.codecs), mode="w+",
                dtype=(np.bool_ if kind == "mask" else np.uint8 if kind in self.codecs
                       else np.float16),
                shape=_stored_shape(shape, self.codecs.get(kind)))
            del created  # unmapped: rows are written with pwrite (_RowFile)
        self._files = _open_rows(self.directory, self.codecs)

    def append(self, coarse: np.ndarray, frame: np.ndarray, context: np.ndarray,
               patch: np.ndarray, mask: np.ndarray) -> None:
        """Append B rows: coarse [B,D], frame/context [B,T,D], patch [B,T*P,D], mask [B,T]."""
        batch = coarse.shape[0]
        if self.written + batch > self.num_videos:
            raise ValueError(f"fine store {self.directory}: more rows than the {self.num_videos} "
                             "announced")
        _write_rows(self._files, self.written, self.dims, self.codecs, batch,
                    (coarse, frame, context, patch, mask))
        self.written += batch

    def filled_elsewhere(self) -> None:
        """Flush and release the preallocated arrays so that other processes fill disjoint row
        slices (`FineStoreSlice`); `close()` then writes store.json as if this writer had
        written every row (the caller checks that every slice was filled)."""
        self._close_files()
        self.written = self.num_videos

    def close(self) -> None:
        """Flush the arrays and write store.json (marks the store complete)."""
        if self.written != self.num_videos:
            raise ValueError(f"fine store {self.directory}: wrote {self.written} of "
                             f"{self.num_videos} rows")
        self._close_files()
        meta = {"num_videos": self.num_videos, "dims": self.dims.to_dict(), "dtype": "float16",
                "codecs": self.codec_meta, "bytes_per_video": self.bytes_per_video}
        write_json(self.directory / STORE_META, meta)

    def _close_files(self) -> None:
        for file in self._files.values():
            file.close()
        self._files.clear()

    @property
    def bytes_per_video(self) -> int:
        return bytes_per_video(self.dims, {k: c.code_size for k, c in self.codecs.items()})

    def describe(self, codec_record: dict | None = None) -> dict:
        """The manifest's fine_store record: dtype, codec spec, codecs, bytes per video and
        (`codec_record`) codec training and fidelity facts."""
        return {"dtype": "float16", "codec": "fp16", **(codec_record or {}),
                "codecs": self.codec_meta, "bytes_per_video": self.bytes_per_video}


class FineStoreSlice:
    """Rows [start, start + count) of a store that a FineStoreWriter preallocated (and saved the
    codecs of), opened read-write in another process: the parallel fill of build-index writes
    disjoint slices of the same files. `codecs`: {kind: (file name, factory, sha256)}."""

    def __init__(self, directory: str | Path, dims: FeatureDims, start: int, count: int,
                 codecs: dict[str, tuple[str, str, str]]) -> None:
        self.directory, self.dims = Path(directory), dims
        self.start, self.count, self.written = start, count, 0
        self.codecs = {kind: VectorCodec.load(self.directory / name, factory, dims.embed_dim,
                                              kind, sha256)
                       for kind, (name, factory, sha256) in codecs.items()}
        self._files = _open_rows(self.directory, self.codecs)

    def append(self, coarse: np.ndarray, frame: np.ndarray, context: np.ndarray,
               patch: np.ndarray, mask: np.ndarray) -> None:
        """Write the next B rows of the slice (shapes as FineStoreWriter.append)."""
        batch = coarse.shape[0]
        if self.written + batch > self.count:
            raise ValueError(f"fine store {self.directory}: more rows than the slice's "
                             f"{self.count} (rows {self.start}..)")
        _write_rows(self._files, self.start + self.written, self.dims, self.codecs, batch,
                    (coarse, frame, context, patch, mask))
        self.written += batch

    def close(self) -> None:
        """Flush; ValueError unless exactly `count` rows were written."""
        if self.written != self.count:
            raise ValueError(f"fine store {self.directory}: slice at row {self.start} got "
                             f"{self.written} of {self.count} rows")
        for file in self._files.values():
            file.close()
        self._files.clear()


class FineStore:
    """Read-only view of a store directory: rows are read with positional reads (`read`);
    `arrays` holds read-only memory maps of the same files (shapes, whole-array numpy views)."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        meta_path = self.directory / STORE_META
        if not meta_path.is_file():
            raise UserInputError(f"{self.directory}: not a complete fine-feature store (no "
                                 f"{STORE_META}; was build-index interrupted?)")
        try:
            meta = json.loads(meta_path.read_text())
            self.num_videos = int(meta["num_videos"])
            self.dims = FeatureDims.from_dict(meta["dims"])
            self.codec_meta: dict[str, dict] = dict(meta.get("codecs", {}))
            files = {kind: (info["file"], info["factory"], info["sha256"])
                     for kind, info in self.codec_meta.items() if kind in CODED_KINDS}
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise UserInputError(f"{meta_path}: unreadable fine-store metadata: {exc!r}") from None
        if len(files) != len(self.codec_meta):
            raise UserInputError(f"{meta_path}: codecs for unknown kinds {sorted(self.codec_meta)}")
        self.codecs = {kind: VectorCodec.load(self.directory / name, factory, self.dims.embed_dim,
                                              kind, sha256)
                       for kind, (name, factory, sha256) in files.items()}
        for kind, codec in self.codecs.items():
            if codec.code_size != self.codec_meta[kind]["code_size"]:
                raise UserInputError(f"{self.directory / self.codec_meta[kind]['file']}: codec "
                                     f"makes {codec.code_size}-byte codes, the store holds "
                                     f"{self.codec_meta[kind]['code_size']}-byte codes")
        expected = _shapes(self.dims, max(1, self.num_videos))
        self.arrays: dict[str, np.ndarray] = {}
        for kind in KINDS:
            path = self.directory / _file_of(kind, kind in self.codecs)
            try:
                array = np.load(path, mmap_mode="r")
            except (OSError, ValueError) as exc:
                raise UserInputError(f"{path}: unreadable fine-store file: {exc}") from exc
            shape = _stored_shape(expected[kind], self.codecs.get(kind))
            if array.shape != shape:
                raise UserInputError(f"{path}: shape {array.shape}, expected {shape}")
            self.arrays[kind] = array
        self._rows = {kind: _RowReader(self.directory / _file_of(kind, kind in self.codecs),
                                       array) for kind, array in self.arrays.items()}

    def close(self) -> None:
        """Close the files (reads after this fail with OSError)."""
        for reader in self._rows.values():
            reader.close()

    def __del__(self) -> None:
        if hasattr(self, "_rows"):  # absent when __init__ refused the directory
            self.close()

    def __len__(self) -> int:
        return self.num_videos

    @property
    def bytes_per_video(self) -> int:
        return bytes_per_video(self.dims, {k: c.code_size for k, c in self.codecs.items()})

    def codec(self, kind: str) -> VectorCodec | None:
        """The codec of a kind stored as codes, None for a float16 kind."""
        return self.codecs.get(kind)

    def read_float(self, kind: str, rows: np.ndarray) -> torch.Tensor:
        """float32 [len(rows), ...] vectors of a feature kind (decoded if stored as codes)."""
        import torch
        codec = self.codecs.get(kind)
        stored = self.read(kind, rows)
        return torch.from_numpy(stored).float() if codec is None else codec.decode_torch(stored)

    def read(self, kind: str, rows: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """Raw stored rows of one kind: [len(rows), ...] float16 (bool for mask; uint8 codes
        [len(rows), vectors, code_size] for a kind stored as codes).

        `out`, if given, is filled and returned (reusing a buffer avoids page-faulting fresh
        memory on every call, which costs more than the copy itself).
        """
        return self._rows[kind].take(np.asarray(rows, dtype=np.int64), out)

    def gather(self, rows: np.ndarray | torch.Tensor
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(frame, context, patch, mask) of `rows` (any shape R, e.g. [Q, k]) as torch tensors:
        float32 [*R, T, D], [*R, T, D], [*R, T*P, D] and bool [*R, T]."""
        import torch
        rows = np.asarray(rows.cpu() if isinstance(rows, torch.Tensor) else rows, dtype=np.int64)
        flat = rows.reshape(-1)
        if flat.size and (flat.min() < 0 or flat.max() >= self.num_videos):
            raise IndexError(f"fine store rows out of range [0, {self.num_videos})")
        frame, context, patch, mask = (
            self._gathered(kind, flat, rows.shape)
            for kind in ("frame", "context", "patch", "mask"))
        return frame, context, patch, mask

    def _gathered(self, kind: str, flat: np.ndarray, shape: tuple[int, ...]) -> torch.Tensor:
        import torch
        values = (torch.from_numpy(self.read(kind, flat)) if kind == "mask"
                  else self.read_float(kind, flat))
        return values.reshape(*shape, *values.shape[1:])

    def features(self, rows: np.ndarray | slice) -> VideoFeatures:
        """`ec.VideoFeatures` (float32) of `rows` (an index array or a slice)."""
        from eercf_core.model.features import VideoFeatures

        if isinstance(rows, slice):
            rows = np.arange(self.num_videos)[rows]
        coarse = self.read_float("coarse", rows)
        frame, context, patch, mask = self.gather(rows)
        return VideoFeatures(coarse=coarse, frame=frame, context=context, patch=patch, mask=mask)
