"""`--fine-codec auto`: candidate order, target, budget, float16 fallback, the build hook."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from eercf_core.index import build_index as build_index_dir
from eercf_core.index import open_index
from eercf_core.index.codec_selection import (
    default_candidates,
    is_auto,
    residual_lists,
    select_codec,
    spec_bytes_per_video,
)
from eercf_core.index.codecs import FineCodecSpec
from eercf_core.index.fidelity import corpus_queries
from eercf_core.scoring.scores import ScoreParams
from pipelines.commands import build_index
from tests.index_fixtures import DIMS, as_video_features, random_features, write_synthetic_shards

PARAMS = ScoreParams.identity(DIMS.embed_dim, DIMS.num_frames)


def _samples():
    train = as_video_features(random_features(60, seed=1))
    held_out = as_video_features(random_features(40, seed=2))
    return train, held_out, corpus_queries(held_out, 30, seed=0)


def test_default_candidates_are_sized_to_the_dimension_and_residual_lists_to_the_sample():
    assert is_auto("auto") and is_auto(" AUTO ") and not is_auto("fp16") and not is_auto(None)
    specs = default_candidates(512)
    assert "patch=PQ64,frame=SQ8,context=SQ8" in specs
    assert "patch=IVF1024,PQ64,frame=SQ8,context=SQ8" in specs
    assert "patch=OPQ64,PQ64,frame=SQ8,context=SQ8" in specs
    assert default_candidates(16, train_vectors=720)[0] == "patch=PQ1,frame=SQ8,context=SQ8"
    assert residual_lists(65_536) == 1024 and residual_lists(720) == 16 and residual_lists(1) == 16
    for spec in default_candidates(16, train_vectors=720):
        FineCodecSpec.parse(spec).validate(16)
    # coarse 32 B + frame 4 x 16 B + context 4 x 16 B + patch 12 x (1 list byte + 2 B) + mask 4
    assert spec_bytes_per_video(FineCodecSpec.parse("patch=IVF16,PQ2,frame=SQ8,context=SQ8"),
                                DIMS) == 32 + 64 + 64 + 12 * 3 + 4


def test_smallest_candidate_meeting_the_target_is_kept_and_every_candidate_recorded():
    train, held_out, queries = _samples()
    # Given largest first: tried smallest first, so the first to meet the target is the smallest.
    candidates = ["SQ8", "patch=PQ2,frame=SQ8,context=SQ8", "patch=PQ1,frame=SQ8,context=SQ8"]
    chosen = select_codec(train, held_out, queries, PARAMS, DIMS, min_agreement=1e-6,
                          candidates=candidates)
    assert str(chosen.spec) == "frame=SQ8,context=SQ8,patch=PQ1"
    assert set(chosen.codecs) == {"frame", "context", "patch"}
    rows = chosen.record["candidates"]
    assert [row["bytes_per_video"] for row in rows] == sorted(r["bytes_per_video"] for r in rows)
    assert rows[0]["meets_target"] and 0 < rows[0]["top10_agreement"] <= 1
    assert set(rows[0]["score_errors_mean_abs"]) == {"S_Fw", "S_Fs", "S_Pw", "S_Ps", "final"}
    assert [row.get("skipped") for row in rows[1:]] == ["a smaller candidate met the target"] * 2
    assert chosen.record["chosen"] == str(chosen.spec) and chosen.record["met_target"]
    assert chosen.fidelity is not None
    assert chosen.fidelity["top10_agreement"] == rows[0]["top10_agreement"]


def test_a_target_no_candidate_reaches_keeps_float16_after_trying_each():
    train, held_out, queries = _samples()
    candidates = ["patch=PQ1,frame=SQ8,context=SQ8", "patch=PQ2,frame=SQ8,context=SQ8"]
    chosen = select_codec(train, held_out, queries, PARAMS, DIMS, min_agreement=1.0,
                          candidates=candidates)
    rows = chosen.record["candidates"]
    if any(row["meets_target"] for row in rows):  # lossless on this sample: nothing to check
        pytest.skip("a PQ candidate kept the exact top-10 on this sample")
    assert chosen.spec.is_fp16 and chosen.codecs == {} and chosen.fidelity is None
    assert not chosen.record["met_target"] and all("top10_agreement" in row for row in rows)


def test_byte_budget_skips_larger_candidates_and_an_empty_budget_keeps_float16():
    train, held_out, queries = _samples()
    candidates = ["patch=PQ1,frame=SQ8,context=SQ8", "SQ8"]
    small = spec_bytes_per_video(FineCodecSpec.parse(candidates[0]), DIMS)
    chosen = select_codec(train, held_out, queries, PARAMS, DIMS, min_agreement=1.0,
                          max_bytes_per_video=small, candidates=candidates)
    assert chosen.record["candidates"][1]["skipped"] == f"over the budget of {small} B/video"
    chosen = select_codec(train, held_out, queries, PARAMS, DIMS, max_bytes_per_video=10,
                          candidates=candidates)
    assert chosen.spec.is_fp16 and not chosen.record["met_target"]
    assert all(row["skipped"].startswith("over the budget") for row in chosen.record["candidates"])


def test_bad_selection_inputs_are_refused_naming_the_flag():
    train, held_out, queries = _samples()
    with pytest.raises(ValueError, match=r"--min-agreement 1\.5"):
        select_codec(train, held_out, queries, PARAMS, DIMS, min_agreement=1.5)
    with pytest.raises(ValueError, match="--max-bytes-per-video 0"):
        select_codec(train, held_out, queries, PARAMS, DIMS, max_bytes_per_video=0)
    with pytest.raises(ValueError, match="'PQ5' for patch"):
        select_codec(train, held_out, queries, PARAMS, DIMS, candidates=["patch=PQ5"])


def test_build_index_auto_stores_the_chosen_codec_and_records_the_selection(tmp_path):
    write_synthetic_shards(tmp_path / "shards", 40, per_shard=10)
    assert build_index.run(["--shards", str(tmp_path / "shards"), "--output",
                            str(tmp_path / "idx"), "--fine-codec", "auto", "--min-agreement",
                            "0.5", "--codec-train-videos", "20", "--fidelity-videos", "20",
                            "--fidelity-queries", "20"]) == 0
    store = json.loads((tmp_path / "idx" / "manifest.json").read_text())["fine_store"]
    selection = store["selection"]
    assert selection["mode"] == "auto" and selection["min_agreement"] == 0.5
    assert selection["held_out"] and selection["chosen"] == store["codec"]
    tried = [row for row in selection["candidates"] if "top10_agreement" in row]
    assert tried and all(isinstance(row["bytes_per_video"], int) for row in tried)
    if selection["met_target"]:
        kept = next(row for row in tried if row["meets_target"])
        assert kept["codec"] == store["codec"] and kept["bytes_per_video"] == \
            store["bytes_per_video"]
        assert store["fidelity"]["top10_agreement"] == kept["top10_agreement"] >= 0.5
    else:
        assert store["codec"] == "fp16" and store["codecs"] == {}
    index = open_index(tmp_path / "idx")
    assert sorted(index.store.codecs) == sorted(store["codecs"])
    text = torch.from_numpy(np.asarray(index.store.read("frame", np.arange(3))[:, 0],
                                       dtype=np.float32))
    from eercf_core.index.search import two_stage
    ranking = two_stage(index, text, PARAMS, 8, 10)
    assert ranking.indices.shape == (3, 10)


def test_build_index_auto_refuses_a_bad_target_before_any_output(tmp_path):
    write_synthetic_shards(tmp_path / "shards", 5, per_shard=5)
    with pytest.raises(ValueError, match="--min-agreement 2"):
        build_index_dir([str(tmp_path / "shards")], str(tmp_path / "idx"), fine_codec="auto",
                        min_agreement=2.0)
    assert not (tmp_path / "idx").exists()


def test_a_candidate_that_cannot_train_on_the_sample_is_skipped_with_the_reason():
    train = as_video_features(random_features(10, seed=1))  # 120 patch vectors < 256 centroids
    _, held_out, queries = _samples()
    chosen = select_codec(train, held_out, queries, PARAMS, DIMS, min_agreement=1e-6,
                          candidates=["patch=PQ1", "patch=SQ8"])
    first, second = chosen.record["candidates"]
    assert first["skipped"].startswith("training failed: codec 'PQ1' for patch: training on 120")
    assert second["meets_target"] and str(chosen.spec) == "frame=fp16,context=fp16,patch=SQ8"


def test_try_all_measures_every_candidate_and_keeps_the_same_choice():
    train, held_out, queries = _samples()
    candidates = ["SQ8", "patch=PQ1,frame=SQ8,context=SQ8"]
    first = select_codec(train, held_out, queries, PARAMS, DIMS, min_agreement=1e-6,
                         candidates=candidates)
    every = select_codec(train, held_out, queries, PARAMS, DIMS, min_agreement=1e-6,
                         candidates=candidates, try_all=True)
    assert str(every.spec) == str(first.spec) == "frame=SQ8,context=SQ8,patch=PQ1"
    assert all("top10_agreement" in row for row in every.record["candidates"])
    assert every.record["candidates"][0] == first.record["candidates"][0] | {
        "seconds": every.record["candidates"][0]["seconds"]}


@pytest.mark.slow  # a tiny model encodes a corpus and the queries: ~30 s on 2 cores, >100 loaded
def test_fidelity_text_encoded_by_the_extracting_model_is_measured_beside_corpus_queries(
        tmp_path):
    from tests.index_fixtures import CAPTIONS, tiny_index_corpus

    corpus = tiny_index_corpus(tmp_path)
    assert build_index.run(["--shards", str(tmp_path / "shards"), "--output",
                            str(tmp_path / "auto"), "--fine-codec", "auto", "--min-agreement",
                            "0.3", "--codec-train-videos", "15", "--fidelity-videos", "15",
                            "--fidelity-queries", "20", "--model", corpus["checkpoint"],
                            "--codec-candidates", "patch=SQ4,frame=SQ8,context=SQ8;SQ8",
                            "--fidelity-text", str(corpus["queries"])]) == 0
    store = json.loads((tmp_path / "auto" / "manifest.json").read_text())["fine_store"]
    assert [row["codec"] for row in store["selection"]["candidates"]] == [
        "frame=SQ8,context=SQ8,patch=SQ4", "SQ8"]
    tried = [row for row in store["selection"]["candidates"] if "top10_agreement" in row]
    assert tried and all(0 <= row["text_top10_agreement"] <= 1 for row in tried)
    for row in tried:
        assert row["meets_target"] == (min(row["top10_agreement"],
                                           row["text_top10_agreement"]) >= 0.3)
    if store["codec"] != "fp16":
        text = store["fidelity"]["text"]
        assert text["queries"] == len(CAPTIONS) and text["query_source"].startswith("text")


def test_fidelity_text_needs_the_model_that_made_the_shards(tmp_path):
    from tests.index_fixtures import tiny_index_corpus

    corpus = tiny_index_corpus(tmp_path / "tiny")
    write_synthetic_shards(tmp_path / "shards", 5, per_shard=5)
    base = ["--shards", str(tmp_path / "shards"), "--output", str(tmp_path / "idx"),
            "--fine-codec", "auto"]
    with pytest.raises(ValueError, match="--fidelity-text and --model go together"):
        build_index.run([*base, "--fidelity-text", str(corpus["queries"])])
    with pytest.raises(ValueError, match="shards were extracted by 'synthetic'"):
        build_index.run([*base, "--model", corpus["checkpoint"], "--fidelity-text",
                         str(corpus["queries"])])
    assert not (tmp_path / "idx").exists()


def test_auto_is_the_default_only_from_the_large_corpus_size_on(tmp_path, monkeypatch):
    from eercf_core.index import build as build_module

    write_synthetic_shards(tmp_path / "shards", 40, per_shard=20)
    monkeypatch.setattr(build_module, "AUTO_DEFAULT_MIN_VIDEOS", 41)
    small = build_index_dir([str(tmp_path / "shards")], str(tmp_path / "small"))
    assert small["fine_store"]["codec"] == "fp16" and "selection" not in small["fine_store"]
    monkeypatch.setattr(build_module, "AUTO_DEFAULT_MIN_VIDEOS", 40)
    large = build_index_dir([str(tmp_path / "shards")], str(tmp_path / "large"),
                            codec_train_videos=20, fidelity_videos=20, fidelity_queries=10)
    assert large["fine_store"]["selection"]["default_at_videos"] == 40
    explicit = build_index_dir([str(tmp_path / "shards")], str(tmp_path / "fp16"),
                               fine_codec="fp16")
    assert explicit["fine_store"]["codec"] == "fp16"
