"""pipelines/beam/inference.py: the model spec/cache, shard rows, and the Beam model handler
(directly
and under RunInference in a TestPipeline on the FnApiRunner)."""
from __future__ import annotations

import apache_beam as beam
import numpy as np
import pytest
from apache_beam.ml.inference.base import RunInference
from apache_beam.runners.portability.fn_api_runner import FnApiRunner
from apache_beam.testing.test_pipeline import TestPipeline as BeamTestPipeline
from apache_beam.testing.util import assert_that, equal_to

from eercf_core.config import NUM_FRAMES
from eercf_core.video.decode import DecodedVideo
from pipelines.beam.inference import (
    DecodedItem,
    EercfModelHandler,
    ModelSpec,
    build_model,
    feature_rows,
)
from schemas import FEATURE_COLUMNS

SPEC = ModelSpec("eercf-tiny", random_init=True, head="eercf", seed=0, device="cpu")


def decoded(seed: int, valid: int = NUM_FRAMES, size: int = 64) -> DecodedVideo:
    """A fake decode result: random frames, the last NUM_FRAMES - valid slots padded."""
    rng = np.random.default_rng(seed)
    frames = rng.integers(0, 256, size=(NUM_FRAMES, size, size, 3), dtype=np.uint8)
    mask = np.arange(NUM_FRAMES) < valid
    frames[~mask] = 0
    return DecodedVideo(frames=frames, mask=mask, frame_indices=list(range(valid)),
                        frame_times=[float(i) for i in range(valid)], frames_total=valid,
                        frames_decoded=valid, fps=1.0, duration=float(valid), width=size,
                        height=size, decode_seconds=0.01, decoder="fake")


def item(video_id: str, seed: int, valid: int = NUM_FRAMES, shard: str = "part-a") -> DecodedItem:
    return DecodedItem(shard, 3, video_id, f"/v/{video_id}.mp4", decoded(seed, valid))


def failed(video_id: str, shard: str = "part-a") -> DecodedItem:
    row = {"video_id": video_id, "uri": f"/v/{video_id}.mp4", "status": "error",
           "error": "boom", "decode_seconds": 0.5}
    return DecodedItem(shard, 3, video_id, f"/v/{video_id}.mp4", None, error_row=row)


@pytest.fixture(scope="module")
def model():
    return build_model(SPEC)


def test_build_model_is_cached_per_spec_and_in_eval_mode(model):
    assert build_model(SPEC) is model
    assert not model.training
    assert model.num_frames == NUM_FRAMES and model.identity.model_id.startswith("eercf-tiny/")
    other = build_model(ModelSpec("eercf-tiny", random_init=True, head="eercf", seed=1,
                                  device="cpu"))
    assert other is not model and other.identity != model.identity


def test_feature_rows_are_float16_flat_columns_with_decode_facts(model):
    items = [item("v0", 0), item("v1", 1, valid=5)]
    frames = np.stack([i.decoded.frames for i in items])
    mask = np.stack([i.decoded.mask for i in items])
    features = model.encode_video(frames, mask)
    rows = feature_rows(items, features)
    sizes = model.dims.column_sizes()
    for row, it, b in zip(rows, items, range(2)):
        assert row["video_id"] == it.video_id and row["status"] == "ok" and row["error"] is None
        assert row["frame_times"] == it.decoded.frame_times and row["decode_seconds"] == 0.01
        np.testing.assert_array_equal(row["frame_mask"], it.decoded.mask)
        for column in FEATURE_COLUMNS:
            assert row[column].dtype == np.float16 and row[column].shape == (sizes[column],)
        np.testing.assert_array_equal(row["coarse_feature"],
                                      features.coarse[b].numpy().astype(np.float16))


def test_handler_encodes_decoded_items_and_passes_error_rows_through(model):
    handler = EercfModelHandler(SPEC)
    assert handler.load_model() is model
    assert handler.should_skip_batching()  # the decode step already cut the batches
    assert handler.get_metrics_namespace() == "eercf_extract"
    batch = [item("v0", 0), failed("bad"), item("v1", 1, valid=7)]
    results = handler.run_inference(batch, model)
    assert [(shard, count, row["video_id"]) for shard, count, row in results] == [
        ("part-a", 3, "bad"), ("part-a", 3, "v0"), ("part-a", 3, "v1")]
    assert results[0][2] is batch[1].error_row  # untouched
    direct = model.encode_video(np.stack([batch[0].decoded.frames, batch[2].decoded.frames]),
                                np.stack([batch[0].decoded.mask, batch[2].decoded.mask]))
    for (_, _, row), b in zip(results[1:], range(2)):
        np.testing.assert_allclose(row["patch_features"].astype(np.float32),
                                   direct.patch[b].reshape(-1).numpy(), atol=2e-3, rtol=1e-2)
    assert handler.run_inference([failed("only")], model)[0][2]["status"] == "error"


def test_run_inference_transform_on_the_fn_api_runner(model):
    batches = [[item("v0", 0), failed("bad")], [item("v1", 1, valid=4)],
               [item("v2", 2, shard="part-b")]]
    expected = [(i.shard, i.video_id, i.decoded is None) for batch in batches for i in batch]
    with BeamTestPipeline(runner=FnApiRunner()) as pipeline:
        rows = (pipeline
                | "Batches" >> beam.Create(batches)
                | "Encode" >> RunInference(EercfModelHandler(SPEC))
                | "Key" >> beam.Map(lambda r: (r[0], r[2]["video_id"], r[2]["status"] == "error")))
        assert_that(rows, equal_to(expected))


def test_a_worker_refuses_a_model_that_is_not_the_cached_identity(model):
    from dataclasses import replace

    from eercf_core.model.identity_cache import ModelFacts

    facts = ModelFacts.of(model)
    assert EercfModelHandler(SPEC, expected=facts).load_model() is model
    stale = replace(facts, checkpoint_sha256="f" * 64)
    with pytest.raises(RuntimeError, match=r"the weights changed behind the cache; delete "
                                            r"model_identity\.json"):
        EercfModelHandler(SPEC, expected=stale).load_model()
