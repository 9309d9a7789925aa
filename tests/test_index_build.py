"""eercf build-index from synthetic shards: counts, manifest, identity refusal, no half output."""
from __future__ import annotations

import json

import numpy as np
import pytest

from eercf_core.index import build_index as build_index_dir
from eercf_core.index import open_index
from pipelines import build_index
from tests.index_fixtures import write_synthetic_shards


def test_build_counts_errors_and_stores_rows(tmp_path):
    ids, features = write_synthetic_shards(tmp_path / "shards", 25, per_shard=6, errors=(3, 17))
    assert build_index.run(["--shards", str(tmp_path / "shards"), "--output",
                            str(tmp_path / "idx")]) == 0
    manifest = json.loads((tmp_path / "idx" / "manifest.json").read_text())
    assert manifest["num_videos"] == 25 and manifest["num_error_rows"] == 2
    assert manifest["model_id"] == "synthetic" and manifest["index"]["factory"] == "Flat"
    assert manifest["dims"] == {"num_frames": 4, "num_patches": 3, "embed_dim": 16}
    index = open_index(tmp_path / "idx")
    assert index.video_ids == ids
    np.testing.assert_array_equal(index.store.read("patch", np.arange(25)), features["patch"])
    np.testing.assert_array_equal(index.store.read("mask", np.arange(25)), features["mask"])
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_ivf_factory_records_recall(tmp_path):
    write_synthetic_shards(tmp_path / "shards", 300, per_shard=100)
    manifest = build_index_dir([str(tmp_path / "shards" / "*.parquet")], str(tmp_path / "idx"),
                                 factory="IVF8,Flat", nprobe=2, recall_sample=50, recall_check_k=10)
    info = manifest["index"]
    assert info["nlist"] == 8 and info["nprobe"] == 2 and not info["exact"]
    assert 0.0 < info["recall_vs_exact"]["recall"] <= 1.0
    from eercf_core.index.recall import _ivf
    assert _ivf(open_index(tmp_path / "idx").index).nprobe == 2  # persisted in the index file


def test_mixed_models_refused_and_nothing_written(tmp_path):
    write_synthetic_shards(tmp_path / "a", 5, per_shard=5, model_id="model-a")
    write_synthetic_shards(tmp_path / "b", 5, per_shard=5, model_id="model-b", seed=1)
    (tmp_path / "b" / "part-00000.parquet").rename(tmp_path / "a" / "part-00001.parquet")
    with pytest.raises(ValueError, match="shards from different models"):
        build_index.run(["--shards", str(tmp_path / "a"), "--output", str(tmp_path / "idx")])
    assert not (tmp_path / "idx").exists()


def test_duplicates_existing_output_and_empty_input(tmp_path):
    write_synthetic_shards(tmp_path / "a", 4, per_shard=4)
    write_synthetic_shards(tmp_path / "b", 4, per_shard=4)
    with pytest.raises(ValueError, match="duplicate video_id 'v00000'"):
        build_index_dir([str(tmp_path / "a"), str(tmp_path / "b")], str(tmp_path / "idx"))
    assert not list(tmp_path.glob(".idx*"))
    build_index_dir([str(tmp_path / "a")], str(tmp_path / "idx"))
    with pytest.raises(ValueError, match="already exists"):
        build_index_dir([str(tmp_path / "a")], str(tmp_path / "idx"))
    build_index_dir([str(tmp_path / "b")], str(tmp_path / "idx"), overwrite=True)
    with pytest.raises(ValueError, match="no such shard"):
        build_index_dir([str(tmp_path / "missing")], str(tmp_path / "idx2"))


def test_manifest_counts_videos_per_decode_quality(tmp_path, caplog):
    write_synthetic_shards(tmp_path / "s", 5, per_shard=5, decode_quality="exact")
    write_synthetic_shards(tmp_path / "f", 3, per_shard=4, id_prefix="f", decode_quality="fast",
                           errors=(1,))
    (tmp_path / "f" / "part-00000.parquet").rename(tmp_path / "s" / "part-00001.parquet")
    manifest = build_index_dir([str(tmp_path / "s")], str(tmp_path / "idx"))
    assert manifest["decode_quality"] == {"exact": 5, "fast": 3}  # ok rows only
    assert "mix decode qualities" in caplog.text
    on_disk = json.loads((tmp_path / "idx" / "manifest.json").read_text())
    assert on_disk["decode_quality"] == {"exact": 5, "fast": 3}
