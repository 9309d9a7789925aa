"""Memory-mapped fine-feature store: what the rerank needs, one row per indexed video.

Layout of a store directory (row i = video i of the index, float16 as in the shards):
  coarse.npy   [N, D]      coarse vectors v (also in the recall index; kept for exact S_V)
  frame.npy    [N, T, D]   raw CLIP frame features f
  context.npy  [N, T, D]   temporal-head frame outputs ĥ
  patch.npy    [N, T*P, D] patch tokens p (~96 % of the bytes)
  mask.npy     [N, T]      bool frame mask
  store.json   dims, row count; written last, so its presence means the store is complete

Files are standard `.npy` opened with `np.load(mmap_mode="r")`: reading video i touches only its
rows (random access, no scan), and a corpus larger than RAM works because the OS pages rows in and
out. The writer fills preallocated files in order, in bounded memory.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from eercf_core.atomic import write_json
from schemas import COLUMN_OF_FEATURE, FeatureDims

if TYPE_CHECKING:
    from eercf_core.features import VideoFeatures

STORE_META = "store.json"
KINDS = tuple(COLUMN_OF_FEATURE)  # coarse, frame, context, patch, mask


def _shapes(dims: FeatureDims, n: int) -> dict[str, tuple[int, ...]]:
    return {kind: (n, *shape) for kind, shape in dims.feature_shapes().items()}


def bytes_per_video(dims: FeatureDims) -> int:
    """Bytes one video takes in the store (all five arrays)."""
    return sum(int(np.prod(s[1:])) * (1 if k == "mask" else 2)
               for k, s in _shapes(dims, 1).items())


class FineStoreWriter:
    """Writes `num_videos` rows, in order, into a new store directory (bounded memory)."""

    def __init__(self, directory: str | Path, num_videos: int, dims: FeatureDims) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.dims, self.num_videos, self.written = dims, num_videos, 0
        # A zero-row .npy cannot be memory-mapped; allocate at least one row, record the count.
        rows = max(1, num_videos)
        self._arrays = {
            kind: np.lib.format.open_memmap(self.directory / f"{kind}.npy", mode="w+",
                                            dtype=np.bool_ if kind == "mask" else np.float16,
                                            shape=shape)
            for kind, shape in _shapes(dims, rows).items()}

    def append(self, coarse: np.ndarray, frame: np.ndarray, context: np.ndarray,
               patch: np.ndarray, mask: np.ndarray) -> None:
        """Append B rows: coarse [B,D], frame/context [B,T,D], patch [B,T*P,D], mask [B,T]."""
        batch = coarse.shape[0]
        if self.written + batch > self.num_videos:
            raise ValueError(f"fine store {self.directory}: more rows than the {self.num_videos} "
                             "announced")
        rows = slice(self.written, self.written + batch)
        for kind, values in zip(KINDS, (coarse, frame, context, patch, mask)):
            target = self._arrays[kind]
            if values.shape[1:] != target.shape[1:]:
                raise ValueError(f"fine store: {kind} rows have shape {values.shape[1:]}, the "
                                 f"store expects {target.shape[1:]}")
            target[rows] = values
        self.written += batch

    def close(self) -> None:
        """Flush the arrays and write store.json (marks the store complete)."""
        if self.written != self.num_videos:
            raise ValueError(f"fine store {self.directory}: wrote {self.written} of "
                             f"{self.num_videos} rows")
        for array in self._arrays.values():
            array.flush()
        self._arrays.clear()
        meta = {"num_videos": self.num_videos, "dims": self.dims.to_dict(), "dtype": "float16",
                "bytes_per_video": bytes_per_video(self.dims)}
        write_json(self.directory / STORE_META, meta)


class FineStore:
    """Read-only, memory-mapped view of a store directory."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        meta_path = self.directory / STORE_META
        if not meta_path.is_file():
            raise ValueError(f"{self.directory}: not a complete fine-feature store (no "
                             f"{STORE_META}; was build-index interrupted?)")
        try:
            meta = json.loads(meta_path.read_text())
            self.num_videos = int(meta["num_videos"])
            self.dims = FeatureDims.from_dict(meta["dims"])
        except (OSError, ValueError, KeyError) as exc:
            raise ValueError(f"{meta_path}: unreadable fine-store metadata: {exc!r}") from None
        expected = _shapes(self.dims, max(1, self.num_videos))
        self.arrays: dict[str, np.ndarray] = {}
        for kind in KINDS:
            path = self.directory / f"{kind}.npy"
            try:
                array = np.load(path, mmap_mode="r")
            except (OSError, ValueError) as exc:
                raise ValueError(f"{path}: unreadable fine-store file: {exc}") from exc
            if array.shape != expected[kind]:
                raise ValueError(f"{path}: shape {array.shape}, expected {expected[kind]}")
            self.arrays[kind] = array

    def __len__(self) -> int:
        return self.num_videos

    def read(self, kind: str, rows: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """Raw stored rows (float16, or bool for mask) of one kind: [len(rows), ...].

        `out`, if given, is filled and returned (reusing a buffer avoids page-faulting fresh
        memory on every call, which costs more than the copy itself).
        """
        return np.take(self.arrays[kind], np.asarray(rows, dtype=np.int64), axis=0, out=out)

    def gather(self, rows: np.ndarray | torch.Tensor
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(frame, context, patch, mask) of `rows` (any shape R, e.g. [Q, k]) as torch tensors:
        float32 [*R, T, D], [*R, T, D], [*R, T*P, D] and bool [*R, T]."""
        rows = np.asarray(rows.cpu() if isinstance(rows, torch.Tensor) else rows, dtype=np.int64)
        flat = rows.reshape(-1)
        if flat.size and (flat.min() < 0 or flat.max() >= self.num_videos):
            raise IndexError(f"fine store rows out of range [0, {self.num_videos})")
        frame, context, patch, mask = (
            self._gathered(kind, flat, rows.shape)
            for kind in ("frame", "context", "patch", "mask"))
        return frame, context, patch, mask

    def _gathered(self, kind: str, flat: np.ndarray, shape: tuple[int, ...]) -> torch.Tensor:
        values = torch.from_numpy(self.read(kind, flat))
        values = values if kind == "mask" else values.float()
        return values.reshape(*shape, *values.shape[1:])

    def features(self, rows: np.ndarray | slice) -> VideoFeatures:
        """`ec.VideoFeatures` (float32) of `rows` (an index array or a slice)."""
        from eercf_core.features import VideoFeatures

        if isinstance(rows, slice):
            rows = np.arange(self.num_videos)[rows]
        coarse = torch.from_numpy(self.read("coarse", rows)).float()
        frame, context, patch, mask = self.gather(rows)
        return VideoFeatures(coarse=coarse, frame=frame, context=context, patch=patch, mask=mask)
