"""Shard IO: atomic write, schema validation, listing, identity, features back as float32."""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from eercf_core.files import shards
from schemas import SCHEMA_VERSION, FeatureDims, video_features_schema
from schemas.video_features import COLUMNS_SINCE

DIMS = FeatureDims(num_frames=3, num_patches=2, embed_dim=4)


def _rows(n_ok: int = 2, n_error: int = 1, seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    sizes = DIMS.column_sizes()
    rows = []
    for i in range(n_ok):
        row = {"video_id": f"ok{i}", "uri": f"/v/ok{i}.mp4", "status": "ok", "error": None,
               "frames_total": 30, "frames_decoded": 3, "frame_indices": np.array([0, 10, 20]),
               "frame_times": [0.0, 1.0, 2.0], "fps": 10.0, "duration": 3.0, "width": 8,
               "height": 6, "decode_seconds": 0.01,
               "frame_mask": np.array([True, True, i == 0])}
        for name in ("coarse_feature", "frame_features", "context_frame_features",
                     "patch_features"):
            row[name] = rng.standard_normal(sizes[name]).astype(np.float16)
        rows.append(row)
    for i in range(n_error):
        rows.append({"video_id": f"bad{i}", "uri": f"/v/bad{i}.mp4", "status": "error",
                     "error": "could not open: moov atom not found"})
    return rows


def test_roundtrip_and_identity(tmp_path):
    rows = _rows()
    path = str(tmp_path / "out" / "shard-a.parquet")
    shards.write_shard(path, rows, DIMS, "eercf-tiny", "abc123")
    table = shards.read_shard(path)
    assert table.num_rows == 3
    assert table.column("video_id").to_pylist() == ["ok0", "ok1", "bad0"]
    assert table.column("status").to_pylist() == ["ok", "ok", "error"]
    arrays = shards.feature_arrays(table, DIMS)
    assert not arrays["coarse"][2].any()
    assert arrays["mask"][2].tolist() == [False] * 3
    assert table.column("model_id").to_pylist() == ["eercf-tiny"] * 3
    assert shards.shard_identity(path) == (DIMS, "eercf-tiny", "abc123")
    patch = arrays["patch"][0].reshape(-1)
    np.testing.assert_array_equal(patch, rows[0]["patch_features"])
    assert shards.read_shard(path, columns=["video_id", "status"]).num_columns == 2


def test_features_from_table_ok_rows_only(tmp_path):
    import eercf_core

    if not hasattr(eercf_core, "VideoFeatures"):
        pytest.skip("core VideoFeatures not landed yet")
    rows = _rows(n_ok=2, n_error=2)
    path = str(tmp_path / "s.parquet")
    shards.write_shard(path, rows, DIMS, "m", "h")
    ids, features = shards.features_from_table(shards.read_shard(path))
    assert ids == ["ok0", "ok1"]
    t, p, d = DIMS.num_frames, DIMS.num_patches, DIMS.embed_dim
    assert tuple(features.coarse.shape) == (2, d)
    assert tuple(features.frame.shape) == (2, t, d)
    assert tuple(features.context.shape) == (2, t, d)
    assert tuple(features.patch.shape) == (2, t * p, d)
    assert features.mask.tolist() == [[True, True, True], [True, True, False]]
    assert str(features.patch.dtype) == "torch.float32"
    np.testing.assert_allclose(features.frame[1].numpy().reshape(-1),
                               rows[1]["frame_features"].astype(np.float32))


def test_write_rejects_bad_rows_and_leaves_nothing(tmp_path):
    rows = _rows()
    rows[1]["frame_features"] = np.zeros(5, dtype=np.float16)
    with pytest.raises(ValueError, match=r"ok1.*frame_features"):
        shards.write_shard(str(tmp_path / "x.parquet"), rows, DIMS, "m", "h")
    bad = _rows()
    bad[0]["colour"] = "red"
    with pytest.raises(ValueError, match="unknown columns"):
        shards.write_shard(str(tmp_path / "x.parquet"), bad, DIMS, "m", "h")
    assert list(tmp_path.iterdir()) == []


def test_list_shards_ignores_temp_and_other_files(tmp_path):
    for name in ("b.parquet", "a.parquet"):
        shards.write_shard(str(tmp_path / name), _rows(1, 0), DIMS, "m", "h")
    (tmp_path / ".c.parquet.tmp-123").write_bytes(b"half a file")
    (tmp_path / "summary.json").write_text("{}")
    assert shards.list_shards(str(tmp_path)) == [str(tmp_path / "a.parquet"),
                                                 str(tmp_path / "b.parquet")]
    assert shards.remove_temp_files(str(tmp_path)) == 1
    assert shards.list_shards(str(tmp_path / "missing")) == []


def test_memory_filesystem_urls():
    root = "memory://eercf-test-shards"
    shards.write_shard(f"{root}/s.parquet", _rows(), DIMS, "m", "h")
    assert shards.list_shards(root) == [f"{root}/s.parquet"]
    assert shards.read_shard(f"{root}/s.parquet").num_rows == 3


def test_read_rejects_foreign_and_mismatched_files(tmp_path):
    plain = tmp_path / "plain.parquet"
    pq.write_table(pa.table({"x": [1, 2]}), plain)
    with pytest.raises(ValueError, match=r"plain.parquet.*not an eercf feature shard"):
        shards.read_shard(str(plain))
    # right metadata, wrong fixed list size for the claimed dims
    schema = video_features_schema(DIMS, "m", "h")
    other = video_features_schema(FeatureDims(3, 2, 8), "m", "h")
    table = shards.rows_to_table([], FeatureDims(3, 2, 8), "m", "h").replace_schema_metadata(
        schema.metadata)
    lying = tmp_path / "lying.parquet"
    pq.write_table(table, lying)
    with pytest.raises(ValueError, match=r"lying.parquet.*coarse_feature"):
        shards.read_shard(str(lying))
    assert other.metadata[b"eercf.schema_version"] == str(SCHEMA_VERSION).encode()
    old = table.replace_schema_metadata({**other.metadata, b"eercf.schema_version": b"0"})
    stale = tmp_path / "stale.parquet"
    pq.write_table(old, stale)
    with pytest.raises(ValueError, match=r"stale.parquet.*schema version 0"):
        shards.read_shard(str(stale))
    (tmp_path / "junk.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(ValueError, match=r"junk.parquet"):
        shards.read_shard(str(tmp_path / "junk.parquet"))


def test_version_1_shards_are_read_and_count_as_exact(tmp_path):
    rows = [{**row, "decode_quality": "fast" if row["status"] == "ok" else None}
            for row in _rows()]
    current = shards.rows_to_table(rows, DIMS, "m", "h", version=2)
    assert shards.decode_qualities(current) == ["fast", "fast", None]
    # a version 1 shard: none of the version 2 columns, version 1 in the metadata
    v1 = current.drop_columns(list(COLUMNS_SINCE)).replace_schema_metadata(
        {**current.schema.metadata, b"eercf.schema_version": b"1"})
    pq.write_table(v1, tmp_path / "v1.parquet")
    table = shards.read_shard(str(tmp_path / "v1.parquet"))
    assert shards.decode_qualities(table) == ["exact", "exact", None]
    subset = shards.read_shard(str(tmp_path / "v1.parquet"),
                               columns=["video_id", "status", "decode_quality"])
    assert subset.column_names == ["video_id", "status"]
    ids, features = shards.features_from_table(table)
    assert ids == ["ok0", "ok1"] and features.coarse.shape == (2, 4)
    with pytest.raises(ValueError, match=r"v1.parquet.*unknown columns.*nope"):
        shards.read_shard(str(tmp_path / "v1.parquet"), columns=["video_id", "nope"])
    # a version 2 shard must have the column
    broken = current.drop_columns(["decode_quality"])  # (a version 2 table)
    pq.write_table(broken, tmp_path / "v2.parquet")
    with pytest.raises(ValueError, match=r"v2.parquet.*missing column 'decode_quality'"):
        shards.read_shard(str(tmp_path / "v2.parquet"))
