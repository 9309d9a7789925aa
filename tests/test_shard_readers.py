"""Version 3 shards read by pandas and DuckDB users with the one call the README documents
(section "Shard layout"): each fixed-size binary feature value holds one row's little-endian
array; `np.frombuffer` with the field metadata's dtype and shape gives the same arrays as
eercf_core.files.shards.feature_arrays."""
from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from eercf_core.files import shards
from schemas import COLUMN_OF_FEATURE, FeatureDims
from tests.index_fixtures import write_synthetic_shards

DIMS = FeatureDims(num_frames=4, num_patches=3, embed_dim=8)


@pytest.fixture(scope="module")
def output(tmp_path_factory):
    root = tmp_path_factory.mktemp("v3")
    write_synthetic_shards(root, 7, 4, DIMS, errors=(2,))  # 8 rows in 2 shards, one error row
    return root


def _expected(root) -> dict[str, dict[str, np.ndarray]]:
    """video_id -> feature name -> array, from eercf's own reader."""
    found: dict[str, dict[str, np.ndarray]] = {}
    for path in shards.list_shards(str(root)):
        table = shards.read_shard(path)
        arrays = shards.feature_arrays(table, DIMS)
        for i, video_id in enumerate(table.column("video_id").to_pylist()):
            found[video_id] = {name: values[i] for name, values in arrays.items()}
    return found


def _dtype_and_shape(path: str, column: str) -> tuple[str, list[int]]:
    field = pq.read_schema(path).field(column)
    return (field.metadata[b"eercf.dtype"].decode(),
            json.loads(field.metadata[b"eercf.shape"]))


def test_pandas_reads_the_same_features(output):
    import pandas as pd

    expected = _expected(output)
    path = shards.list_shards(str(output))[0]
    df = pd.read_parquet(path)  # the README's pandas call
    assert len(df) == 4
    for name, column in COLUMN_OF_FEATURE.items():
        dtype, shape = _dtype_and_shape(path, column)
        values = np.stack([np.frombuffer(b, dtype) for b in df[column]]).reshape(len(df), *shape)
        assert values.dtype == (np.bool_ if name == "mask" else np.float16)
        for video_id, row in zip(df["video_id"], values):
            np.testing.assert_array_equal(row, expected[video_id][name])


def test_duckdb_reads_the_same_features_from_a_glob(output):
    import duckdb

    expected = _expected(output)
    path = shards.list_shards(str(output))[0]
    dtype, shape = _dtype_and_shape(path, "patch_features")
    rows = duckdb.sql(f"SELECT video_id, patch_features FROM '{output}/*.parquet' "  # README
                      "ORDER BY video_id").fetchall()
    assert [video_id for video_id, _ in rows] == sorted(expected)
    for video_id, blob in rows:
        patch = np.frombuffer(blob, dtype).reshape(shape)
        np.testing.assert_array_equal(patch, expected[video_id]["patch"])
    assert shape == [DIMS.num_frames * DIMS.num_patches, DIMS.embed_dim]
    masks = duckdb.sql(f"SELECT frame_mask FROM '{output}/*.parquet'").fetchall()
    assert all(np.frombuffer(m, "bool").shape == (DIMS.num_frames,) for (m,) in masks)
