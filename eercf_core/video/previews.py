"""Video previews: small JPEGs made at extraction, kept beside the index for result pages.

Extraction (`eercf extract`, schema version 2) stores per ok row:
  preview_jpeg        the middle valid sampled frame, at most THUMB_SIZE px square (a few KB)
  preview_strip_jpeg  every valid sampled frame, STRIP_CELL px square each, left to right in slot
                      order (valid slots are a prefix of the T slots: cell t shows slot t)
made from the frames the decoder already produced (resized and centre-cropped to the model's
input size), so no second decode. Version 1 shards and `--no-previews` runs have none.

`eercf build-index` copies them into `<index>/previews/` (PreviewStoreWriter), row i = video i of
the index, so a result page reads any video's preview by row without the source videos (which may
be remote or gone):
  thumb.bin, strip.bin   the JPEG bytes of every row, concatenated
  offsets.npy            int64 [N+1, 2]: row i of kind j is bytes offsets[i, j]:offsets[i+1, j]
                         (empty = no preview)
  previews.json          counts and bytes; written last, so its presence means complete
"""
from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from eercf_core.files.atomic import write_json

log = logging.getLogger(__name__)

THUMB_SIZE = 128  # px, longest side of the middle-frame preview
STRIP_CELL = 48  # px, side of one frame in the strip
THUMB_QUALITY = 80
STRIP_QUALITY = 70
PREVIEW_COLUMNS = ("preview_jpeg", "preview_strip_jpeg")
KINDS = ("thumb", "strip")  # store files, in PREVIEW_COLUMNS order
STORE_DIR = "previews"
META = "previews.json"
OFFSETS = "offsets.npy"


def _jpeg(image: np.ndarray, size: int, quality: int) -> bytes:
    """uint8 [H, W, 3] -> JPEG bytes, downscaled (bicubic) so the longest side is <= size."""
    from PIL import Image

    picture = Image.fromarray(image)
    if max(picture.size) > size:
        scale = size / max(picture.size)
        picture = picture.resize((max(1, round(picture.width * scale)),
                                  max(1, round(picture.height * scale))), Image.Resampling.BICUBIC)
    buffer = io.BytesIO()
    picture.save(buffer, format="JPEG", quality=quality, optimize=True)
    return buffer.getvalue()


def encode_previews(frames: np.ndarray, mask: np.ndarray) -> dict[str, bytes | None]:
    """The preview columns of one video: {"preview_jpeg": ..., "preview_strip_jpeg": ...}.

    frames uint8 [T, S, S, 3] RGB, mask bool [T]. Both are None when no frame is valid.
    """
    valid = np.flatnonzero(np.asarray(mask, dtype=bool))
    if valid.size == 0:
        return dict.fromkeys(PREVIEW_COLUMNS)
    middle = frames[valid[valid.size // 2]]
    cell = min(STRIP_CELL, frames.shape[1])
    from PIL import Image

    cells = [np.asarray(Image.fromarray(frames[t]).resize((cell, cell), Image.Resampling.BICUBIC))
             if frames.shape[1] != cell else frames[t] for t in valid]
    strip = np.concatenate(cells, axis=1)
    return {"preview_jpeg": _jpeg(middle, THUMB_SIZE, THUMB_QUALITY),
            "preview_strip_jpeg": _jpeg(strip, strip.shape[1], STRIP_QUALITY)}


class PreviewStoreWriter:
    """Appends rows (in index order) of preview bytes into a new preview directory."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        # open for the writer's lifetime; close() closes them
        self._files = [open(self.directory / f"{kind}.bin", "wb") for kind in KINDS]  # noqa: SIM115
        self._offsets: list[list[int]] = [[0, 0]]
        self.with_preview = 0

    def append(self, thumb: bytes | None, strip: bytes | None) -> None:
        """Add the next row; None (or b"") = this video has no preview of that kind."""
        ends = []
        for handle, payload, start in zip(self._files, (thumb, strip), self._offsets[-1]):
            payload = payload or b""
            handle.write(payload)
            ends.append(start + len(payload))
        self._offsets.append(ends)
        self.with_preview += bool(thumb)

    def close(self) -> dict:
        """Flush, write offsets and previews.json (marks the store complete); returns its facts."""
        for handle in self._files:
            handle.close()
        offsets = np.asarray(self._offsets, dtype=np.int64)
        np.save(self.directory / OFFSETS, offsets)
        rows = len(offsets) - 1
        meta = {"num_videos": rows, "with_preview": self.with_preview,
                "bytes": {kind: int(offsets[-1, j]) for j, kind in enumerate(KINDS)},
                "bytes_per_video_with_preview": {
                    kind: round(int(offsets[-1, j]) / self.with_preview, 1)
                    if self.with_preview else 0.0 for j, kind in enumerate(KINDS)}}
        write_json(self.directory / META, meta)  # last: marks the store complete
        return meta


class PreviewStore:
    """Read-only random access to an index's previews by video row."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        if not (self.directory / META).is_file():
            raise ValueError(f"{self.directory}: incomplete preview store (no {META})")
        self.meta = json.loads((self.directory / META).read_text())
        self.offsets = np.load(self.directory / OFFSETS, mmap_mode="r")
        self.num_videos = int(self.meta["num_videos"])
        if self.offsets.shape != (self.num_videos + 1, len(KINDS)):
            raise ValueError(f"{self.directory / OFFSETS}: shape {self.offsets.shape}, expected "
                             f"{(self.num_videos + 1, len(KINDS))}")
        self._data: dict[str, np.memmap | None] = {}
        for j, kind in enumerate(KINDS):
            path = self.directory / f"{kind}.bin"
            size = path.stat().st_size if path.is_file() else -1
            if size != int(self.offsets[-1, j]):
                raise ValueError(f"{path}: {size} bytes, the offsets say "
                                 f"{int(self.offsets[-1, j])}")
            self._data[kind] = np.memmap(path, dtype=np.uint8, mode="r") if size else None

    def __len__(self) -> int:
        return self.num_videos

    def get(self, row: int, kind: str = "thumb") -> bytes | None:
        """The JPEG bytes of video `row` ("thumb" or "strip"), None when it has no preview."""
        if not 0 <= row < self.num_videos:
            raise IndexError(f"preview row {row} out of range [0, {self.num_videos})")
        j = KINDS.index(kind)
        start, end = int(self.offsets[row, j]), int(self.offsets[row + 1, j])
        data = self._data[kind]
        return bytes(data[start:end]) if data is not None and end > start else None


def open_previews(index_dir: str | Path) -> PreviewStore | None:
    """The preview store of an index directory, or None for an index built without one."""
    directory = Path(index_dir) / STORE_DIR
    if not directory.exists():
        return None
    return PreviewStore(directory)


def write_preview_store(shards: Iterable[str], video_ids: list[str], directory: str | Path
                        ) -> dict:
    """Copy the ok rows' previews of `shards` into a preview store, row i = video_ids[i].

    `video_ids` are the ok rows in shard order (as build-index indexes them); a mismatch fails.
    Shards of schema version 1 contribute rows without preview. Returns the store's facts plus
    the feature schema versions seen.
    """
    import pyarrow.compute as pc

    from eercf_core.files.shards import read_shard, shard_version
    from schemas import STATUS_OK
    from schemas.video_features import COLUMNS_SINCE

    writer = PreviewStoreWriter(directory)
    versions: set[int] = set()
    row = 0
    for shard in shards:
        version = shard_version(shard)
        versions.add(version)
        has_previews = version >= COLUMNS_SINCE[PREVIEW_COLUMNS[0]]
        table = read_shard(shard, columns=["video_id", "status",
                                           *(PREVIEW_COLUMNS if has_previews else ())])
        table = table.filter(pc.equal(table.column("status"), STATUS_OK))
        ids = table.column("video_id").to_pylist()
        if ids != video_ids[row:row + len(ids)]:
            raise ValueError(f"{shard}: video ids differ from the indexed order at row {row}; "
                             "were the shards changed during build-index?")
        columns = ([table.column(c).to_pylist() for c in PREVIEW_COLUMNS] if has_previews
                   else [[None] * len(ids)] * 2)
        for thumb, strip in zip(*columns):
            writer.append(thumb, strip)
        row += len(ids)
    if row != len(video_ids):
        raise ValueError(f"preview store: {row} rows from the shards, {len(video_ids)} indexed")
    meta = writer.close()
    if meta["with_preview"] < len(video_ids):
        log.info("previews: %d of %d videos have one (version 1 shards or --no-previews have none)",
                 meta["with_preview"], len(video_ids))
    return {**meta, "path": STORE_DIR, "feature_schema_versions": sorted(versions)}

