"""Schema of the video-feature Parquet shards written by `eercf extract`.

One row per input video, ok or error. Feature columns are fixed-size float16 lists whose sizes
depend on the model (D = embedding dim, T = frames per video, P = patches per frame). On error
rows they hold zeros and `frame_mask` is all False (not nulls: pyarrow <= 25 cannot read null
fixed-size lists back from Parquet, apache/arrow#35692); `status` says which rows are real. The
dims, model identity and schema version are also stored in the Parquet
key-value metadata (keys below) so a reader can check a shard without reading rows.

Version history:
  1: first version.
  2: `decode_quality` column ("exact" | "fast", eercf_core.video.decode; null on rows that never
     decoded); `error_cause` (a short, stable cause on error rows:
     eercf_core.video.error_causes.CAUSES;
     the `error` column keeps the detail), `container_duration` (seconds the container declares,
     null when it does not say; compare with `duration`, what could be read) and `warning` (null,
     or e.g. "partly decoded: ..." on ok rows); `preview_jpeg` / `preview_strip_jpeg` (binary,
     null on error rows and when extraction ran with --no-previews): a small JPEG of the middle
     sampled frame and a strip of all sampled frames (eercf_core.video.previews). Readers accept
     version 1 shards, whose frames were all decoded "exact" and which have no previews.
  3: the fixed-size feature columns (`coarse_feature`, `frame_features`, `context_frame_features`,
     `patch_features`, `frame_mask`) are fixed-size binary (Parquet FIXED_LEN_BYTE_ARRAY), one
     value per row holding the row's little-endian array bytes, instead of fixed-size lists:
     a list column stores repetition/definition levels per value, which made a full read of a
     ViT-B/32 shard ~10x slower (README, "Shard layout"). Each such field carries its element
     type and per-video shape in the field metadata (`eercf.dtype`: "float16" | "bool",
     `eercf.shape`: JSON list), so a reader needs nothing else:
         np.frombuffer(column.combine_chunks().buffers()[1], dtype)  (then reshape)
     Every reader accepts versions 1-3; a folder may mix them. Each shard also gets a commit
     record beside it (eercf_core.files.commits).
"""
from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from dataclasses import fields as dataclass_fields
from typing import Any

import pyarrow as pa

SCHEMA_VERSION = 3
SUPPORTED_SCHEMA_VERSIONS = (1, 2, 3)
BINARY_FEATURES_SINCE = 3  # the first version whose fixed-size columns are fixed-size binary
# columns added after version 1 -> the version that added them (older shards lack them)
COLUMNS_SINCE = {"decode_quality": 2, "error_cause": 2, "container_duration": 2, "warning": 2,
                 "preview_jpeg": 2, "preview_strip_jpeg": 2}
STATUS_OK = "ok"
STATUS_ERROR = "error"

# Parquet key-value metadata keys (bytes values, utf-8 text).
META_SCHEMA_VERSION = b"eercf.schema_version"
META_DIMS = b"eercf.dims"  # FeatureDims.to_meta(): JSON {"num_frames", "num_patches", "embed_dim"}
META_MODEL_ID = b"eercf.model_id"
META_CHECKPOINT_SHA256 = b"eercf.checkpoint_sha256"
# Field metadata of the fixed-size binary columns (version 3+).
FIELD_DTYPE = b"eercf.dtype"  # numpy dtype name of the elements: "float16" | "bool"
FIELD_SHAPE = b"eercf.shape"  # JSON list: the per-video shape, e.g. [12, 512]

# The one feature-name <-> shard-column mapping: `VideoFeatures` field (and fine-store array)
# name -> fixed-size list column. Shapes per video are `FeatureDims.feature_shapes()`.
COLUMN_OF_FEATURE = {
    "coarse": "coarse_feature",            # [D]      L2-normalised coarse video vector v (recall)
    "frame": "frame_features",             # [T*D]    L2-normalised raw CLIP frame features f
    "context": "context_frame_features",   # [T*D]    L2-normalised temporal-head frame outputs ĥ
    "patch": "patch_features",             # [T*P*D]  L2-normalised projected patch tokens p
    "mask": "frame_mask",                  # [T]      bool, True for real (not padded) frames
}
FEATURE_OF_COLUMN = {column: name for name, column in COLUMN_OF_FEATURE.items()}
# The float16 feature columns (every fixed-size column except the bool frame mask).
FEATURE_COLUMNS = tuple(c for c in COLUMN_OF_FEATURE.values() if c != "frame_mask")


@dataclass(frozen=True)
class FeatureDims:
    """Feature dimensions: T frames per video, P patches per frame, D embedding width."""

    num_frames: int
    num_patches: int
    embed_dim: int

    def feature_shapes(self) -> dict[str, tuple[int, ...]]:
        """Per-video shape of each feature, keyed as `COLUMN_OF_FEATURE`."""
        t, p, d = self.num_frames, self.num_patches, self.embed_dim
        return {"coarse": (d,), "frame": (t, d), "context": (t, d), "patch": (t * p, d),
                "mask": (t,)}

    def column_sizes(self) -> dict[str, int]:
        """Values per row of each fixed-size shard column."""
        return {COLUMN_OF_FEATURE[name]: math.prod(shape)
                for name, shape in self.feature_shapes().items()}

    # The one serialisation of dims: a {"num_frames", "num_patches", "embed_dim"} mapping, used by
    # the index manifest and the fine store's store.json as is and, JSON-encoded, by the shard
    # metadata.
    def to_dict(self) -> dict[str, int]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FeatureDims:
        """Inverse of `to_dict`; ValueError naming the missing or bad key."""
        try:
            return cls(**{f.name: int(data[f.name]) for f in dataclass_fields(cls)})
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"bad feature dims {data!r}: {exc!r}") from None

    def to_meta(self) -> bytes:
        return json.dumps(self.to_dict()).encode()

    @classmethod
    def from_meta(cls, raw: bytes) -> FeatureDims:
        """Inverse of `to_meta`; also reads the "T,P,D" text of shards written before it."""
        text = raw.decode()
        if not text.lstrip().startswith("{"):
            t, p, d = (int(x) for x in text.split(","))
            return cls(t, p, d)
        try:
            return cls.from_dict(json.loads(text))
        except json.JSONDecodeError as exc:
            raise ValueError(f"bad feature dims {text!r}: {exc}") from None


def _fixed_fields(dims: FeatureDims, version: int) -> list[pa.Field]:
    """The five fixed-size columns: float16/bool lists (versions 1-2) or fixed-size binary with
    dtype and shape in the field metadata (version 3+)."""
    shapes = dims.feature_shapes()
    out = []
    for name, column in COLUMN_OF_FEATURE.items():
        is_mask = column == "frame_mask"
        size = math.prod(shapes[name])
        if version < BINARY_FEATURES_SINCE:
            out.append(pa.field(column, pa.list_(pa.bool_() if is_mask else pa.float16(), size)))
            continue
        dtype = "bool" if is_mask else "float16"
        out.append(pa.field(column, pa.binary(size * (1 if is_mask else 2)), metadata={
            FIELD_DTYPE: dtype.encode(), FIELD_SHAPE: json.dumps(list(shapes[name])).encode()}))
    return out


def video_features_schema(
    dims: FeatureDims, model_id: str = "", checkpoint_sha256: str = "",
    version: int = SCHEMA_VERSION,
) -> pa.Schema:
    """The Arrow schema of a feature shard for the given dims, model identity and version."""
    if version not in SUPPORTED_SCHEMA_VERSIONS:
        raise ValueError(f"unknown feature schema version {version}; known: "
                         f"{SUPPORTED_SCHEMA_VERSIONS}")
    fields = [
        pa.field("video_id", pa.string(), nullable=False),
        pa.field("uri", pa.string(), nullable=False),
        pa.field("status", pa.string(), nullable=False),  # "ok" | "error"
        pa.field("error", pa.string()),  # human-readable reason on error rows
        pa.field("error_cause", pa.string()),  # short stable cause on error rows (version 2)
        # decode facts (null where decoding never got that far)
        pa.field("frames_total", pa.int64()),  # frames the container reports
        pa.field("frames_decoded", pa.int32()),  # frames actually decoded to get the samples
        pa.field("frame_indices", pa.list_(pa.int64())),  # sampled source frame indices
        pa.field("frame_times", pa.list_(pa.float64())),  # their timestamps, seconds
        pa.field("fps", pa.float64()),
        pa.field("duration", pa.float64()),  # seconds that could be read (packet timestamps)
        pa.field("container_duration", pa.float64()),  # seconds the container declares (v2)
        pa.field("warning", pa.string()),  # e.g. "partly decoded: ..." on ok rows (version 2)
        pa.field("width", pa.int32()),
        pa.field("height", pa.int32()),
        pa.field("decode_seconds", pa.float64()),
        pa.field("decode_quality", pa.string()),  # "exact" | "fast" (eercf_core.video.decode)
        pa.field("model_id", pa.string(), nullable=False),
        pa.field("checkpoint_sha256", pa.string(), nullable=False),
        *_fixed_fields(dims, version),
        # small JPEG of the middle sampled frame (eercf_core.video.previews)
        pa.field("preview_jpeg", pa.binary()),
        # JPEG strip of the valid sampled frames left to right, slot t at x = t * height
        pa.field("preview_strip_jpeg", pa.binary()),
    ]
    fields = [f for f in fields if COLUMNS_SINCE.get(f.name, 1) <= version]
    meta = {
        META_SCHEMA_VERSION: str(version).encode(),
        META_DIMS: dims.to_meta(),
        META_MODEL_ID: model_id.encode(),
        META_CHECKPOINT_SHA256: checkpoint_sha256.encode(),
    }
    return pa.schema(fields, metadata=meta)

