"""The memory-mapped fine store: round trip, random access, incomplete stores refused."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from eercf_core.index.store import FineStore, FineStoreWriter, bytes_per_video
from tests.index_fixtures import DIMS, random_features

KINDS = ("coarse", "frame", "context", "patch", "mask")


def _write(path, features, chunk=7):
    n = len(features["coarse"])
    writer = FineStoreWriter(path, n, DIMS)
    for begin in range(0, n, chunk):
        writer.append(*(features[k][begin:begin + chunk] for k in KINDS))
    writer.close()


def test_round_trip_and_gather(tmp_path):
    features = random_features(20)
    _write(tmp_path / "fine", features)
    store = FineStore(tmp_path / "fine")
    assert len(store) == 20 and store.dims == DIMS
    assert isinstance(store.arrays["patch"], np.memmap)  # memory-mapped, not loaded
    rows = np.array([[3, 0, 19], [5, 5, 1]])
    frame, _context, patch, mask = store.gather(rows)
    assert frame.shape == (2, 3, 4, 16) and patch.shape == (2, 3, 12, 16)
    assert mask.shape == (2, 3, 4)
    assert frame.dtype == torch.float32 and mask.dtype == torch.bool
    np.testing.assert_array_equal(patch.numpy(), features["patch"][rows].astype(np.float32))
    np.testing.assert_array_equal(mask.numpy(), features["mask"][rows])
    video = store.features(slice(2, 6))
    np.testing.assert_array_equal(video.context.numpy(),
                                  features["context"][2:6].astype(np.float32))
    with pytest.raises(IndexError):
        store.gather(np.array([20]))


def test_bytes_per_video():
    t, p, d = DIMS.num_frames, DIMS.num_patches, DIMS.embed_dim
    assert bytes_per_video(DIMS) == 2 * (d + 2 * t * d + t * p * d) + t
    from schemas import FeatureDims
    # method §12 (v, f, ĥ, p) + mask
    assert bytes_per_video(FeatureDims(12, 49, 512)) == 627_712 + 12


def test_incomplete_store_refused(tmp_path):
    features = random_features(10)
    writer = FineStoreWriter(tmp_path / "fine", 10, DIMS)
    writer.append(*(features[k][:4] for k in KINDS))
    with pytest.raises(ValueError, match="wrote 4 of 10"):
        writer.close()
    with pytest.raises(ValueError, match="not a complete fine-feature store"):
        FineStore(tmp_path / "fine")
    with pytest.raises(ValueError, match="more rows"):
        writer.append(*(features[k] for k in KINDS))
