"""FAISS recall index: type by size, S_V as inner product with W_g folded in, IVF recall check."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from eercf_core.index import recall
from eercf_core.scoring.scores import ScoreParams, coarse_scores, recall_queries


def _unit(rng, n, d):
    x = rng.standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_default_factory_by_size():
    assert recall.default_factory(1000) == "Flat"
    assert recall.default_factory(100_000).startswith("IVF1024")


def test_flat_search_equals_coarse_score(tmp_path):
    rng = np.random.default_rng(0)
    coarse = _unit(rng, 200, 16)
    text = torch.from_numpy(_unit(rng, 5, 16))
    params = ScoreParams(torch.tensor(100.0), torch.eye(16) + 0.2 * torch.randn(16, 16),
                         torch.eye(4))
    index = recall.build(coarse)
    recall.save(index, tmp_path / "r.faiss")
    index = recall.load(tmp_path / "r.faiss")
    scores, rows = recall.search(index, recall_queries(text, params).numpy(), 10)
    dense = coarse_scores(text, torch.from_numpy(coarse), params)
    top = torch.topk(dense, 10)
    np.testing.assert_array_equal(rows, top.indices.numpy())
    np.testing.assert_allclose(scores, top.values.numpy(), rtol=1e-5, atol=1e-4)


def test_ivf_recall_vs_exact_and_full_rows():
    rng = np.random.default_rng(1)
    coarse = _unit(rng, 3000, 16)
    index = recall.build(coarse, "IVF32,Flat", nprobe=32)  # all lists probed: exact
    queries = _unit(rng, 20, 16)
    assert recall.recall_vs_exact(index, coarse, queries, 50) == pytest.approx(1.0)
    recall.set_nprobe(index, 1)
    assert recall.recall_vs_exact(index, coarse, queries, 50) < 1.0
    _, rows = recall.search(index, queries, 200)  # more than one list holds: re-searched
    assert (rows >= 0).all()


def test_bad_factory_and_missing_file(tmp_path):
    with pytest.raises(ValueError, match="index_factory"):
        recall.build(np.zeros((10, 8), np.float32), "NoSuchIndex")
    with pytest.raises(ValueError, match="missing"):
        recall.load(tmp_path / "absent.faiss")


def test_default_factory_compresses_at_a_million():
    assert recall.default_factory(999_999).endswith(",Flat")
    assert recall.default_factory(1_000_000) == "IVF4096,SQ8"


def test_held_out_queries_are_not_corpus_members():
    rng = np.random.default_rng(2)
    coarse = _unit(rng, 500, 16)
    queries = recall.held_out_queries(coarse, 100, seed=0)
    assert queries.shape == (100, 16) and queries.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(queries, axis=1), 1.0, rtol=1e-5)
    assert (queries @ coarse.T).max() < 0.999  # no query is (a copy of) a corpus vector


@pytest.mark.parametrize("factory", ["IVF32,Flat", "HNSW8"])
def test_tune_picks_smallest_parameter_reaching_target(factory):
    rng = np.random.default_rng(3)
    coarse = _unit(rng, 3000, 16)
    index = recall.build(coarse, factory)
    queries = recall.held_out_queries(coarse, 50)
    record = recall.tune(index, coarse, queries, 20, target=0.9)
    assert record["met"] and record["recall"] >= 0.9
    assert all(r < 0.9 for _, r in record["curve"][:-1])
    assert recall.recall_vs_exact(index, coarse, queries, 20) == pytest.approx(record["recall"],
                                                                              abs=1e-4)


@pytest.mark.parametrize("factory", ["Flat", "IVF16,Flat", "IVF16,SQ8"])
def test_load_memory_maps_the_index(tmp_path, factory):
    rng = np.random.default_rng(4)
    coarse = _unit(rng, 2000, 16)
    index = recall.build(coarse, factory, nprobe=4)
    recall.save(index, tmp_path / "r.faiss")
    queries = _unit(rng, 5, 16)
    mapped = recall.load(tmp_path / "r.faiss")
    np.testing.assert_array_equal(recall.search(mapped, queries, 10)[1],
                                  recall.search(index, queries, 10)[1])
    maps = (tmp_path / "r.faiss").resolve()
    assert str(maps) in Path("/proc/self/maps").read_text()  # mapped, not copied
    del mapped


@pytest.mark.parametrize("factory", ["IVF16,Flat", "IVF16,SQ8"])
def test_on_disk_lists_equal_the_in_memory_index(tmp_path, monkeypatch, factory, capfd):
    """Filled in groups and merged into recall.ivfdata: the same search results as the index
    built in memory; the group files are gone, the directory can move, readers map the lists
    read-only, and FAISS's progress lines stay off stdout."""
    monkeypatch.setattr(recall, "ADD_GROUP", 700)
    rng = np.random.default_rng(0)
    coarse = _unit(rng, 3000, 16)
    queries = recall.held_out_queries(coarse, 50, seed=1)
    in_memory = recall.build(coarse, factory, nprobe=4)
    built = tmp_path / "build"
    built.mkdir()
    on_disk = recall.build(coarse, factory, nprobe=4, ondisk_dir=built)
    assert recall.describe(on_disk, factory)["inverted_lists"] == recall.IVFDATA_FILE
    assert "inverted_lists" not in recall.describe(in_memory, factory)
    np.testing.assert_array_equal(recall.search(on_disk, queries, 10)[1],
                                  recall.search(in_memory, queries, 10)[1])
    recall.save(on_disk, built / "recall.faiss")
    assert sorted(p.name for p in built.iterdir()) == ["recall.faiss", recall.IVFDATA_FILE]
    del on_disk  # the builder's own (writable) mapping
    built.rename(tmp_path / "moved")
    loaded = recall.load(tmp_path / "moved" / "recall.faiss")
    _, rows = recall.search(loaded, queries, 10)
    np.testing.assert_array_equal(rows, recall.search(in_memory, queries, 10)[1])
    maps = [line for line in Path("/proc/self/maps").read_text().splitlines()
            if line.endswith(str(tmp_path / "moved" / recall.IVFDATA_FILE))]
    assert maps and all(line.split()[1].startswith("r-") for line in maps), maps
    assert capfd.readouterr().out == ""


def _clustered(rng, n, d, centres=32):
    means = _unit(rng, centres, d)
    x = means[rng.integers(0, centres, n)] + 0.3 * rng.standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.mark.parametrize("factory", ["IVF32,Flat", "IVF32,SQ8"])
def test_list_by_list_search_equals_the_index_search(factory):
    """Big-batch search: each list scored once against all its queries gives the IVF search's
    results (SQ8 residual codes: q·c + q·r, not FAISS contrib's L2-only centroid shift)."""
    from eercf_core.index import list_search

    rng = np.random.default_rng(0)
    coarse = _clustered(rng, 4000, 16)
    index = recall.build(coarse, factory, nprobe=4)
    assert list_search.supports(index)
    queries = recall.held_out_queries(coarse, 300, seed=2)
    expected_scores, expected_rows = index.search(queries, 20)
    scores, rows = list_search.search_by_list(index, queries, 20)
    assert scores.dtype == np.float32 and rows.dtype == np.int64
    np.testing.assert_array_equal(rows, expected_rows)
    np.testing.assert_allclose(scores, expected_scores, rtol=0, atol=1e-5)
    assert list_search.worthwhile(index, list_search.batch_size(index))
    assert not list_search.worthwhile(index, list_search.batch_size(index) - 1)
    assert list_search.batch_size(index) == 4 * 32 // 4


def test_list_by_list_search_marks_queries_whose_probes_hold_fewer_than_k():
    from eercf_core.index import list_search

    rng = np.random.default_rng(1)
    coarse = _clustered(rng, 200, 8)
    index = recall.build(coarse, "IVF16,Flat", nprobe=1)
    queries = _unit(rng, 40, 8)
    _, expected = index.search(queries, 150)
    scores, rows = list_search.search_by_list(index, queries, 150)
    np.testing.assert_array_equal(rows, expected)
    assert (rows < 0).any() and (scores[rows < 0] < -1e30).all()  # -inf / -FLT_MAX, as FAISS
    # recall.search then searches those queries over every list, as before
    _, full = recall.search(index, queries, 150)
    assert (full >= 0).all()


def test_list_by_list_search_refuses_other_index_types():
    from eercf_core.index import list_search

    rng = np.random.default_rng(2)
    for factory in ("Flat", "HNSW8", "IVF8,PQ4"):
        index = recall.build(_unit(rng, 600, 16), factory)
        assert not list_search.supports(index)
        with pytest.raises(TypeError, match="IVFFlat"):
            list_search.search_by_list(index, _unit(rng, 3, 16), 5)


def test_a_large_batch_over_on_disk_lists_is_searched_list_by_list(tmp_path, monkeypatch):
    """recall.search reads on-disk lists once per batch when the batch probes each list at least
    MIN_PROBES_PER_LIST times; smaller batches and in-memory lists go query by query."""
    from eercf_core.index import list_search

    calls = []
    original = list_search.search_by_list
    monkeypatch.setattr(list_search, "search_by_list",
                        lambda *a: calls.append(len(a[1])) or original(*a))
    monkeypatch.setattr(recall, "ADD_GROUP", 900)
    rng = np.random.default_rng(3)
    coarse = _clustered(rng, 3000, 16)
    in_memory = recall.build(coarse, "IVF32,SQ8", nprobe=4)
    recall.save(recall.build(coarse, "IVF32,SQ8", nprobe=4, ondisk_dir=tmp_path), tmp_path / "r")
    on_disk = recall.load(tmp_path / "r")
    assert recall.has_on_disk_lists(on_disk) and not recall.has_on_disk_lists(in_memory)
    large = recall.held_out_queries(coarse, list_search.batch_size(on_disk), seed=4)
    expected = in_memory.search(large, 10)[1]
    assert calls == []  # in memory: query by query
    np.testing.assert_array_equal(recall.search(on_disk, large, 10)[1], expected)
    assert calls == [len(large)]
    np.testing.assert_array_equal(recall.search(on_disk, large[:5], 10)[1], expected[:5])
    np.testing.assert_array_equal(recall.search(in_memory, large, 10)[1], expected)
    assert calls == [len(large)]
