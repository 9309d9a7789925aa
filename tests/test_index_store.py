"""The fine store: round trip, random access by positional reads, incomplete stores refused."""
from __future__ import annotations

from pathlib import Path

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


def test_reads_equal_numpy_take_and_leave_no_mapped_pages(tmp_path):
    """`read` is np.take on the file (any order, repeats, runs, 2-D rows, a reused buffer) and
    maps nothing: the pages it read are not in the process's memory maps."""
    features = random_features(40)
    _write(tmp_path / "fine", features)
    store = FineStore(tmp_path / "fine")
    rng = np.random.default_rng(0)
    for rows in (np.array([7]), np.arange(40), np.array([3, 4, 5, 9, 9, 2, 39, 0]),
                 rng.integers(0, 40, (5, 6)), np.array([], dtype=np.int64)):
        for kind in KINDS:
            expected = np.take(np.load(tmp_path / "fine" / f"{kind}.npy"), rows, axis=0)
            got = store.read(kind, rows)
            assert got.dtype == expected.dtype
            np.testing.assert_array_equal(got, expected)
    buffer = np.empty((3, *store.arrays["patch"].shape[1:]), np.float16)
    assert store.read("patch", np.array([5, 1, 2]), out=buffer) is buffer
    np.testing.assert_array_equal(buffer, features["patch"][[5, 1, 2]])
    with pytest.raises(ValueError, match="out must be"):
        store.read("patch", np.array([5, 1]), out=buffer)
    with pytest.raises(IndexError):
        store.read("frame", np.array([-1]))
    # The memory maps in `arrays` were never touched: no page of the patch file is resident.
    patch_file = str(tmp_path / "fine" / "patch.npy")
    if not Path("/proc/self/smaps").exists():
        pytest.skip("no /proc/self/smaps on this system")
    with open("/proc/self/smaps") as smaps:
        text = smaps.read()
    resident = [line for entry in _smaps_entries(text) if entry[0].endswith(patch_file)
                for line in entry[1] if line.startswith("Rss:")]
    assert all(int(line.split()[1]) == 0 for line in resident), resident
    store.close()
    with pytest.raises(OSError, match="Bad file descriptor"):
        store.read("patch", np.array([1]))


def _smaps_entries(text):
    """(mapped path, its field lines) of each mapping in /proc/self/smaps."""
    entries = []
    for line in text.splitlines():
        head = line.split()
        if head and "-" in head[0] and len(head) >= 5 and not head[0].endswith(":"):
            entries.append((head[-1] if len(head) >= 6 else "", []))
        elif entries:
            entries[-1][1].append(line)
    return entries


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
