"""eercf build-index from synthetic shards: counts, manifest, identity refusal, no half output."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from eercf_core.index import build_index as build_index_dir
from eercf_core.index import open_index
from pipelines.commands import build_index
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


def test_fp16_store_is_bit_identical_to_the_shard_features(tmp_path):
    _, features = write_synthetic_shards(tmp_path / "shards", 25, per_shard=6, errors=(3,))
    build_index_dir([str(tmp_path / "shards")], str(tmp_path / "default"))
    manifest = build_index_dir([str(tmp_path / "shards")], str(tmp_path / "fp16"),
                               fine_codec="fp16")
    assert manifest["fine_store"]["codec"] == "fp16" and manifest["fine_store"]["codecs"] == {}
    assert manifest["fine_store"]["bytes_per_video"] == 2 * 16 * (1 + 4 + 4 + 12) + 4
    for kind in ("coarse", "frame", "context", "patch", "mask"):
        default = (tmp_path / "default" / "fine" / f"{kind}.npy").read_bytes()
        assert (tmp_path / "fp16" / "fine" / f"{kind}.npy").read_bytes() == default
        stored = np.load(tmp_path / "fp16" / "fine" / f"{kind}.npy")
        assert stored.dtype == features[kind].dtype and np.array_equal(stored, features[kind])
    assert not list((tmp_path / "fp16" / "fine").glob("*.codec"))


def _coded_index(tmp_path, spec="patch=PQ4,frame=SQ8"):
    _, features = write_synthetic_shards(tmp_path / "shards", 30, per_shard=7)
    manifest = build_index_dir([str(tmp_path / "shards")], str(tmp_path / "idx"), fine_codec=spec,
                               fidelity_queries=20)
    return features, manifest


def test_coded_store_records_codecs_and_fidelity_and_ranks_like_the_core(tmp_path, monkeypatch):
    import torch

    import eercf_core as ec
    from eercf_core.index import rerank
    from eercf_core.index.fidelity import round_trip
    from eercf_core.index.search import exhaustive, two_stage
    from tests.index_fixtures import DIMS, as_video_features

    features, manifest = _coded_index(tmp_path)
    store = manifest["fine_store"]
    assert store["codec"] == "frame=SQ8,context=fp16,patch=PQ4"
    assert sorted(store["codecs"]) == ["frame", "patch"]
    assert store["codecs"]["patch"]["code_size"] == 4 and store["training_videos"] == 30
    # coarse 32 B + frame 4 x 16 B (SQ8) + context 4 x 32 B + patch 12 x 4 B + mask 4 B
    assert store["bytes_per_video"] == 32 + 64 + 128 + 48 + 4
    fidelity = store["fidelity"]
    assert fidelity["queries"] == 20 and 0 <= fidelity["top10_agreement"] <= 1
    assert fidelity["score_errors"]["S_Fs"]["max_abs"] > 0  # SQ8 frames move the frame gate
    index = open_index(tmp_path / "idx")
    assert index.store.read("patch", np.arange(3)).shape == (3, 12, 4)
    decoded = round_trip(as_video_features(features), index.store.codecs)
    params = ec.ScoreParams.identity(DIMS.embed_dim, DIMS.num_frames)
    text = torch.from_numpy(features["frame"][:6, 0]).float()
    reference = ec.two_stage_rank(params, text, decoded, k=8, top_n=30)
    # grouped: PQ patches decoded (lookup tables for no group), on the codes (for every group)
    for method, lut_max_group in (("grouped", 0), ("grouped", 10**6), ("gather", 0)):
        monkeypatch.setattr(rerank, "_LUT_MAX_GROUP", lut_max_group)
        ranking = two_stage(index, text, params, 8, 30, method=method)
        assert torch.equal(ranking.indices, reference.indices)
        torch.testing.assert_close(ranking.scores, reference.scores, rtol=0, atol=1e-4)
    full = exhaustive(index, text, params, 30)
    assert torch.equal(full.indices, ec.exhaustive_rank(params, text, decoded).indices)


def test_missing_corrupt_or_mismatched_codec_files_are_refused(tmp_path):
    _coded_index(tmp_path)
    codec_file = tmp_path / "idx" / "fine" / "patch.codec"
    data = codec_file.read_bytes()
    codec_file.unlink()
    with pytest.raises(ValueError, match=r"patch\.codec: codec file of the patch features "
                                         r"\(PQ4\) is missing"):
        open_index(tmp_path / "idx")
    codec_file.write_bytes(data[:-8] + b"\0" * 8)
    with pytest.raises(ValueError, match=r"patch\.codec: .* is corrupt"):
        open_index(tmp_path / "idx")
    codec_file.write_bytes(data)
    open_index(tmp_path / "idx")
    manifest_path = tmp_path / "idx" / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["fine_store"]["codecs"]["patch"]["factory"] = "PQ8"
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match=r"manifest's fine codecs .* differ from the store's"):
        open_index(tmp_path / "idx")


def test_bad_codec_spec_fails_before_any_output(tmp_path):
    write_synthetic_shards(tmp_path / "shards", 5, per_shard=5)
    with pytest.raises(ValueError, match="'PQ5' for patch: not a FAISS index_factory string"):
        build_index.run(["--shards", str(tmp_path / "shards"), "--output", str(tmp_path / "idx"),
                         "--fine-codec", "patch=PQ5"])
    assert not (tmp_path / "idx").exists() and not list(tmp_path.glob(".idx*"))


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


def test_opq_store_scores_in_the_rotated_space_like_the_decoded_core(tmp_path, monkeypatch):
    import torch

    import eercf_core as ec
    from eercf_core.index import rerank
    from eercf_core.index.fidelity import round_trip
    from eercf_core.index.search import two_stage
    from tests.index_fixtures import DIMS, as_video_features

    features, _ = _coded_index(tmp_path, spec="patch=OPQ2,PQ2,frame=SQ8")
    index = open_index(tmp_path / "idx")
    codec = index.store.codec("patch")
    assert codec is not None and codec.scores_on_codes
    codes = index.store.read("patch", np.arange(5)).reshape(-1, codec.code_size)
    text = torch.from_numpy(features["frame"][:6, 0]).float()
    decoded = torch.from_numpy(codec.decode(codes))
    rotated = torch.from_numpy(codec.decode_code_space(codes))
    assert not torch.allclose(decoded, rotated, atol=1e-3)  # the rotation is not the identity
    torch.testing.assert_close(codec.to_code_space(text) @ rotated.T, text @ decoded.T,
                               rtol=0, atol=1e-4)
    reference = ec.two_stage_rank(ec.ScoreParams.identity(DIMS.embed_dim, DIMS.num_frames), text,
                                  round_trip(as_video_features(features), index.store.codecs),
                                  k=8, top_n=30)
    params = ec.ScoreParams.identity(DIMS.embed_dim, DIMS.num_frames)
    for method, lut_max_group in (("grouped", 0), ("grouped", 10**6), ("gather", 0)):
        monkeypatch.setattr(rerank, "_LUT_MAX_GROUP", lut_max_group)
        ranking = two_stage(index, text, params, 8, 30, method=method)
        assert torch.equal(ranking.indices, reference.indices)
        torch.testing.assert_close(ranking.scores, reference.scores, rtol=0, atol=1e-4)


def test_ivf_nprobe_tuned_to_target_on_held_out_queries(tmp_path, caplog):
    write_synthetic_shards(tmp_path / "shards", 300, per_shard=100)
    manifest = build_index_dir([str(tmp_path / "shards")], str(tmp_path / "idx"),
                               factory="IVF16,Flat", recall_sample=40, recall_check_k=10,
                               recall_target=0.9)
    tuned = manifest["index"]["recall_vs_exact"]
    assert tuned["parameter"] == "nprobe" and tuned["met"] and tuned["recall"] >= 0.9
    assert "held out" in tuned["queries"] and tuned["num_queries"] == 40
    values = [value for value, _ in tuned["curve"]]
    assert values == sorted(values) and values[-1] == tuned["value"] == manifest["index"]["nprobe"]
    assert all(r < 0.9 for _, r in tuned["curve"][:-1])  # the smallest value reaching the target
    from eercf_core.index.recall import _ivf
    assert _ivf(open_index(tmp_path / "idx").index).nprobe == tuned["value"]
    assert "RECALL TARGET MISSED" not in caplog.text


def test_missed_recall_warns_and_min_recall_fails(tmp_path, caplog):
    write_synthetic_shards(tmp_path / "shards", 300, per_shard=100)
    shards = [str(tmp_path / "shards")]
    manifest = build_index_dir(shards, str(tmp_path / "idx"), factory="IVF16,PQ2x4",
                               recall_sample=40, recall_check_k=10)
    assert not manifest["index"]["recall_vs_exact"]["met"]
    assert "RECALL TARGET MISSED" in caplog.text
    from eercf_core.index.build import RecallTooLowError
    with pytest.raises(RecallTooLowError, match=r"< --min-recall 0.9"):
        build_index.run(["--shards", *shards, "--output", str(tmp_path / "idx2"),
                         "--index-factory", "IVF16,PQ2x4", "--recall-sample", "40",
                         "--recall-check-k", "10", "--min-recall", "0.9"])
    assert not (tmp_path / "idx2").exists() and not list(tmp_path.glob(".idx2*"))


@pytest.mark.slow  # two spawned worker processes import torch and faiss: ~60 s on a loaded box
def test_parallel_fill_writes_the_same_store_as_serial(tmp_path):
    write_synthetic_shards(tmp_path / "shards", 40, per_shard=7, errors=(3, 20))
    shards = [str(tmp_path / "shards")]
    options = {"fine_codec": "SQ8", "codec_train_videos": 16, "fidelity_videos": 8,
               "fidelity_queries": 4}
    serial = build_index_dir(shards, str(tmp_path / "serial"), workers=1, **options)
    parallel = build_index_dir(shards, str(tmp_path / "parallel"), workers=2, **options)
    assert parallel["num_videos"] == serial["num_videos"] == 40
    for name in sorted(p.name for p in (tmp_path / "serial" / "fine").iterdir()):
        assert (tmp_path / "parallel" / "fine" / name).read_bytes() == \
            (tmp_path / "serial" / "fine" / name).read_bytes(), name
    assert open_index(tmp_path / "parallel").video_ids == open_index(tmp_path / "serial").video_ids


def test_shard_tasks_fill_disjoint_slices_like_the_serial_writer(tmp_path):
    """The parallel fill's task (`fill.fill_shard`, run here in-process, shards in reverse order)
    writes the same store bytes as the serial writer; a slice count mismatch fails."""
    from eercf_core.index import build as build_module
    from eercf_core.index.fill import fill_shard
    from eercf_core.index.store import FineStoreWriter
    from schemas import FeatureDims

    write_synthetic_shards(tmp_path / "shards", 20, per_shard=6, errors=(2,))
    shards = build_module.resolve_shards([str(tmp_path / "shards")])
    ids, _, _, per_shard = build_module._scan(shards)
    assert sum(per_shard) == len(ids) == 20 and len(per_shard) == len(shards)
    dims = FeatureDims.from_dict({"num_frames": 4, "num_patches": 3, "embed_dim": 16})
    serial = FineStoreWriter(tmp_path / "serial", len(ids), dims)
    build_module._fill_store(shards, serial, 4)
    serial.close()
    sliced = FineStoreWriter(tmp_path / "sliced", len(ids), dims)
    sliced.filled_elsewhere()
    starts = np.concatenate([[0], np.cumsum(per_shard)[:-1]])
    for shard, start, count in reversed(list(zip(shards, starts, per_shard))):
        assert fill_shard(str(tmp_path / "sliced"), dims.to_dict(), {}, shard,
                          int(start), count, 4) == count
    sliced.close()
    for path in sorted((tmp_path / "serial").iterdir()):
        assert (tmp_path / "sliced" / path.name).read_bytes() == path.read_bytes(), path.name
    with pytest.raises(ValueError, match=r"more rows than the slice"):
        fill_shard(str(tmp_path / "sliced"), dims.to_dict(), {}, shards[0], 0,
                   per_shard[0] - 1, 4)


def test_video_ids_memory_mapped_with_json_fallback(tmp_path):
    from eercf_core.index.directory import IDS_ARROW, VideoIds

    ids, _ = write_synthetic_shards(tmp_path / "shards", 25, per_shard=10)
    build_index_dir([str(tmp_path / "shards")], str(tmp_path / "idx"))
    video_ids = open_index(tmp_path / "idx").video_ids
    assert isinstance(video_ids, VideoIds) and len(video_ids) == 25 and video_ids == ids
    assert video_ids[5] == ids[5] and video_ids[-1] == ids[-1] and video_ids[2:4] == ids[2:4]
    assert video_ids.take(np.array([[3, 0], [24, 3]])) == [ids[3], ids[0], ids[24], ids[3]]
    arrow = str((tmp_path / "idx" / IDS_ARROW).resolve())
    assert arrow in Path("/proc/self/maps").read_text()  # mapped, not parsed into a list
    (tmp_path / "idx" / IDS_ARROW).unlink()  # an index built before the Arrow id map
    assert open_index(tmp_path / "idx").video_ids == ids


def test_a_fill_worker_imports_no_torch():
    """A spawned fill worker imports eercf_core.index.fill only: no torch, no model code (each
    would cost the worker seconds at start)."""
    from tests.helpers import run_fresh_python

    script = ("import sys\n"
              "import eercf_core.index.fill\n"
              "import eercf_core.index\n"
              "heavy = sorted(m for m in ('torch', 'open_clip', 'eercf_core.index.build',\n"
              "               'eercf_core.model.network') if m in sys.modules)\n"
              "print(heavy)\n")
    assert run_fresh_python(script, timeout=120) == "[]"


def test_codec_sample_reads_a_few_whole_shards_once(tmp_path, monkeypatch):
    """With a codec, the training and fidelity samples come from one read of a few random whole
    shards; every other shard is read once (by the fill), not three times."""
    import collections

    from eercf_core.index import build as build_module
    from eercf_core.index import fill

    write_synthetic_shards(tmp_path / "shards", 60, per_shard=5)
    reads: collections.Counter = collections.Counter()
    original = fill.iter_shard_batches

    def counting(shard, *args, **kwargs):
        reads[Path(shard).name] += 1
        return original(shard, *args, **kwargs)

    monkeypatch.setattr(fill, "iter_shard_batches", counting)
    manifest = build_index_dir([str(tmp_path / "shards")], str(tmp_path / "idx"),
                               fine_codec="SQ8", codec_train_videos=12, fidelity_videos=8,
                               fidelity_queries=8, workers=1)
    sample = manifest["fine_store"]["sample"]
    assert sample["of_shards"] == 12 and sample["shards"] == build_module.SAMPLE_MIN_SHARDS
    assert sample["videos"] == 5 * build_module.SAMPLE_MIN_SHARDS
    assert sorted(reads.values()).count(2) == sample["shards"]  # sample + fill
    assert sorted(reads.values()).count(1) == 12 - sample["shards"]  # the fill only
    assert open_index(tmp_path / "idx").store.codec("patch") is not None


def test_an_index_with_on_disk_lists_ranks_as_the_in_memory_one(tmp_path, monkeypatch):
    """At ONDISK_MIN_VIDEOS videos the IVF lists are merged on disk beside recall.faiss; the
    query ranking through them is the in-memory index's, byte for byte."""
    from eercf_core.index import recall
    from pipelines.commands import query
    from tests.index_fixtures import tiny_index_corpus

    corpus = tiny_index_corpus(tmp_path / "corpus")
    argv = ["--shards", str(corpus["root"] / "shards"), "--index-factory", "IVF4,Flat",
            "--nprobe", "2"]
    assert build_index.run([*argv, "--output", str(tmp_path / "memory")]) == 0
    monkeypatch.setattr(recall, "ONDISK_MIN_VIDEOS", 1)
    monkeypatch.setattr(recall, "ADD_GROUP", 7)
    assert build_index.run([*argv, "--output", str(tmp_path / "disk")]) == 0
    manifest = json.loads((tmp_path / "disk" / "manifest.json").read_text())
    assert manifest["index"]["inverted_lists"] == recall.IVFDATA_FILE
    assert (tmp_path / "disk" / recall.IVFDATA_FILE).is_file()
    assert not list((tmp_path / "disk").glob(".recall-group-*"))
    for name in ("memory", "disk"):
        assert query.run(["--index", str(tmp_path / name), "--queries", str(corpus["queries"]),
                          "--model", corpus["checkpoint"], "--top-n", "10",
                          "--output", str(tmp_path / f"{name}.tsv")]) == 0
    assert (tmp_path / "disk.tsv").read_bytes() == (tmp_path / "memory.tsv").read_bytes()


def test_queries_over_on_disk_lists_are_ranked_list_by_list_in_large_blocks(tmp_path,
                                                                          monkeypatch):
    """Without --batch-size, an index with on-disk lists is queried in blocks that probe each
    list MIN_PROBES_PER_LIST times, searched list by list: the ranking of query-by-query search."""
    from types import SimpleNamespace

    from eercf_core.index import list_search, recall
    from eercf_core.index.search import DEFAULT_BATCH_SIZE, MAX_LIST_BATCH_SIZE, default_batch_size
    from pipelines.commands import query
    from tests.index_fixtures import tiny_index_corpus

    corpus = tiny_index_corpus(tmp_path / "corpus")
    monkeypatch.setattr(recall, "ONDISK_MIN_VIDEOS", 1)
    assert build_index.run(["--shards", str(corpus["root"] / "shards"), "--index-factory",
                            "IVF4,Flat", "--nprobe", "2", "--output", str(tmp_path / "disk")]) == 0
    disk = open_index(tmp_path / "disk")
    assert default_batch_size(disk, "two-stage") == DEFAULT_BATCH_SIZE  # 4 x 4 / 2 = 8 < 256
    assert default_batch_size(disk, "exhaustive") == DEFAULT_BATCH_SIZE
    big = recall.build(_unit_rows(20_000, 8), "IVF4096,Flat", nprobe=2)
    assert default_batch_size(SimpleNamespace(index=big), "two-stage") == DEFAULT_BATCH_SIZE
    monkeypatch.setattr(recall, "has_on_disk_lists", lambda index: True)
    assert default_batch_size(SimpleNamespace(index=big), "two-stage") == 8192
    big.nprobe = 1
    assert default_batch_size(SimpleNamespace(index=big), "recall-only") == MAX_LIST_BATCH_SIZE
    monkeypatch.undo()

    calls = []
    original = list_search.search_by_list
    monkeypatch.setattr(list_search, "search_by_list",
                        lambda *a: calls.append(len(a[1])) or original(*a))
    argv = ["--index", str(tmp_path / "disk"), "--queries", str(corpus["queries"]),
            "--model", corpus["checkpoint"], "--top-n", "10"]
    assert query.run([*argv, "--output", str(tmp_path / "by_query.tsv")]) == 0
    assert calls == []  # 7 queries x nprobe 2 probe 4 lists < 4 times each
    monkeypatch.setattr(list_search, "MIN_PROBES_PER_LIST", 1)
    assert query.run([*argv, "--output", str(tmp_path / "by_list.tsv")]) == 0
    assert calls == [7]
    by_query = [line.split("\t") for line in (tmp_path / "by_query.tsv").read_text().splitlines()]
    by_list = [line.split("\t") for line in (tmp_path / "by_list.tsv").read_text().splitlines()]
    assert [row[:3] for row in by_list] == [row[:3] for row in by_query]
    for a, b in zip(by_list[1:], by_query[1:]):
        assert abs(float(a[3]) - float(b[3])) < 1e-4 and abs(float(a[4]) - float(b[4])) < 1e-4
    # the larger default block stays within --max-block-memory: 30 rows x 250 B per query here
    monkeypatch.setattr(query, "default_batch_size", lambda index, mode: 8192)
    assert query.run([*argv, "--output", str(tmp_path / "capped.tsv"),
                      "--max-block-memory", "0.01"]) == 0
    meta = json.loads((tmp_path / "capped.tsv.meta.json").read_text())
    assert meta["batch_size"] == int(0.01 * 2**30) // (30 * 250)


def _unit_rows(n: int, d: int) -> np.ndarray:
    x = np.random.default_rng(0).standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)
