"""The extract job's Beam transforms: DecodeChunkFn directly, and the whole transform chain
(`extract_pipeline.build_pipeline`) in a TestPipeline on the FnApiRunner, checked with
assert_that."""
from __future__ import annotations

import shutil
import time

import apache_beam as beam
import numpy as np
import pytest
from apache_beam.runners.portability.fn_api_runner import FnApiRunner
from apache_beam.testing.test_pipeline import TestPipeline as BeamTestPipeline
from apache_beam.testing.util import assert_that, equal_to

from eercf_core.files import shards
from eercf_core.files.inputs import VideoRef
from eercf_core.video.decode import DecodeOptions
from eercf_core.video.isolation import close_shared_pools
from pipelines.beam.extract_pipeline import DecodeChunkFn, build_pipeline
from pipelines.beam.inference import ModelSpec, build_model
from pipelines.beam.shard_sink import plan_chunks
from pipelines.commands.extract import build_parser
from tests.helpers import make_videos

T = 4
SPEC = ModelSpec("eercf-tiny", random_init=True, head="eercf", seed=0, device="cpu", num_frames=T)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> list[VideoRef]:
    """Three small real videos and one file that is not a video."""
    folder = tmp_path_factory.mktemp("corpus")
    refs = [VideoRef(p.name, str(p)) for p in make_videos(folder, 3, seconds=2.0)]
    broken = folder / "broken.mp4"
    broken.write_bytes(b"\x00\x01garbage" * 64)
    return [*refs, VideoRef("broken.mp4", str(broken))]


def test_decode_chunk_fn_yields_batches_of_frames_or_the_error_row(corpus):
    fn = DecodeChunkFn(DecodeOptions(num_frames=T, image_size=64), workers=1, timeout=60.0,
                       batch_size=3)
    fn.setup()
    try:
        batches = list(fn.process(("part-x", corpus)))
    finally:
        close_shared_pools()
    assert [len(b) for b in batches] == [3, 1]  # the chunk's remainder is emitted too
    items = {i.video_id: i for batch in batches for i in batch}
    assert sorted(items) == sorted(r.video_id for r in corpus)
    assert all(i.shard == "part-x" and i.shard_count == len(corpus) for i in items.values())
    good = items[corpus[0].video_id]
    assert good.error_row is None and good.uri == corpus[0].uri
    assert good.decoded.frames.shape == (T, 64, 64, 3) and good.decoded.frames.dtype == np.uint8
    assert good.decoded.mask.tolist() == [True, True, False, False]  # 2 s at 1 fps
    bad = items["broken.mp4"]
    assert bad.decoded is None
    assert bad.error_row["status"] == "error" and bad.error_row["video_id"] == "broken.mp4"
    assert bad.error_row["error"].startswith(corpus[-1].uri)  # the message names the file


def test_transform_chain_writes_one_shard_per_chunk(corpus, tmp_path):
    model = build_model(SPEC)
    chunks = plan_chunks(corpus, 2)
    args = build_parser().parse_args([  # the job's own flags, so new ones get their defaults
        "--input", "unused", "--output", str(tmp_path), "--decode-workers", "1",
        "--per-video-timeout", "60", "--batch-size", "2", "--progress-seconds", "3600"])
    options = DecodeOptions(num_frames=T, image_size=model.image_size)
    with BeamTestPipeline(runner=FnApiRunner()) as pipeline:
        written = build_pipeline(pipeline, chunks, options, SPEC, args, model.dims,
                                 model.identity, total=len(corpus))
        assert_that(written, equal_to([f"{tmp_path}/{name}" for name, _ in chunks]))
        # the written paths, mapped to their rows' (id, status), also checked inside the pipeline
        statuses = (written
                    | "ReadBack" >> beam.FlatMap(lambda p: shards.read_shard(
                        p, columns=["video_id", "status"]).to_pylist())
                    | "IdStatus" >> beam.Map(lambda r: (r["video_id"], r["status"])))
        assert_that(statuses, equal_to(
            [(r.video_id, "error" if r.video_id == "broken.mp4" else "ok") for r in corpus]),
            label="RowsPerVideo")
    for path in shards.list_shards(str(tmp_path)):
        assert shards.shard_identity(path) == (model.dims, model.identity.model_id,
                                               model.identity.checkpoint_sha256)


# --------------------------------------------------- overlap, split stages, accelerator hint
ACCELERATOR = "type:nvidia-l4;count:1;install-nvidia-driver"


def _args(output, *extra: str):
    return build_parser().parse_args([
        "--input", "unused", "--output", str(output), "--workers", "2",
        "--per-video-timeout", "60", "--batch-size", "2", "--progress-seconds", "3600", *extra])


def _run_chain(corpus, output, *extra: str) -> dict[str, dict]:
    """The extract chain over `corpus` (chunks of 2) with the job's flags + `extra`; the written
    rows by video id."""
    model = build_model(SPEC)
    options = DecodeOptions(num_frames=T, image_size=model.image_size)
    chunks = plan_chunks(corpus, 2)
    try:
        with BeamTestPipeline(runner=FnApiRunner()) as pipeline:
            written = build_pipeline(pipeline, chunks, options, SPEC, _args(output, *extra),
                                     model.dims, model.identity, total=len(corpus))
            assert_that(written, equal_to([f"{output}/{name}" for name, _ in chunks]))
    finally:
        close_shared_pools()
    rows: dict[str, dict] = {}
    for path in shards.list_shards(str(output)):
        table = shards.read_shard(path)
        features = shards.feature_arrays(table, model.dims)
        for i, row in enumerate(table.select(["video_id", "status", "error"]).to_pylist()):
            rows[row["video_id"]] = {**row, **{name: np.asarray(values[i], np.float32)
                                               for name, values in features.items()}}
    return rows


def model_dims_names(row: dict) -> list[str]:
    """The feature names (mask included) in a row of `_run_chain`."""
    return [name for name in row if name not in ("video_id", "status", "error")]


def test_split_stages_write_the_same_shards_rows_and_features_as_the_fused_chain(corpus, tmp_path):
    fused = _run_chain(corpus, tmp_path / "fused")
    split = _run_chain(corpus, tmp_path / "split", "--split-stages", "--decode-ahead", "1")
    assert sorted(fused) == sorted(split) == sorted(r.video_id for r in corpus)
    assert sorted(p.rsplit("/", 1)[1] for p in shards.list_shards(str(tmp_path / "fused"))) == \
        sorted(p.rsplit("/", 1)[1] for p in shards.list_shards(str(tmp_path / "split")))
    for video_id, row in fused.items():
        other = split[video_id]
        assert other["status"] == row["status"] and other["error"] == row["error"]
        if row["status"] == "ok":
            assert len(model_dims_names(row)) == 5  # coarse, frame, context, patch, mask
            for name in model_dims_names(row):
                np.testing.assert_allclose(other[name], row[name], atol=1e-3, err_msg=name)


def test_the_accelerator_hint_sits_on_the_inference_stage_only(corpus, tmp_path):
    model = build_model(SPEC)
    options = DecodeOptions(num_frames=T, image_size=model.image_size)
    pipeline = beam.Pipeline(runner=FnApiRunner())
    build_pipeline(pipeline, plan_chunks(corpus, 2), options, SPEC,
                   _args(tmp_path, "--inference-accelerator", ACCELERATOR), model.dims,
                   model.identity, total=len(corpus))
    proto = pipeline.to_runner_api()
    shutil.rmtree(pipeline.local_tempdir)  # a pipeline that never runs keeps its temp dir
    hinted: dict[str, bool] = {}
    for transform in proto.components.transforms.values():
        if not transform.environment_id:
            continue
        hints = proto.components.environments[transform.environment_id].resource_hints
        stage = transform.unique_name.split("/", 1)[0]
        hinted[stage] = hinted.get(stage, False) or (
            hints.get("beam:resources:accelerator:v1") == ACCELERATOR.encode())
    assert hinted["Encode"]
    assert not any(hinted[s] for s in ("Decode", "ToInference", "WriteShards"))
    assert "ToInference" in hinted and "GatherShards" in {
        t.unique_name.split("/", 1)[0] for t in proto.components.transforms.values()}


def test_the_hinted_split_pipeline_runs_in_process(corpus, tmp_path):
    rows = _run_chain(corpus, tmp_path, "--inference-accelerator", ACCELERATOR)
    assert sorted(rows) == sorted(r.video_id for r in corpus)


def test_a_crashing_and_a_hanging_decoder_cost_one_error_row_each_with_decode_ahead(tmp_path):
    """The overlap queue must not deadlock when a decoder dies or is killed at its time limit:
    both become error rows, every other video its frames, in the same batches as before."""
    from tests._isolation_helpers import decode_or_misbehave

    good = make_videos(tmp_path / "ok", 4, seconds=2.0)
    crash, hang = tmp_path / "crash.mp4", tmp_path / "hang.mp4"
    crash.write_bytes(good[0].read_bytes())
    hang.write_bytes(good[0].read_bytes())
    refs = [VideoRef(p.name, str(p)) for p in [good[0], crash, good[1], hang, *good[2:]]]
    fn = DecodeChunkFn(DecodeOptions(num_frames=T, image_size=64), workers=2, timeout=3.0,
                       batch_size=2, decode_ahead=1, decode_fn=decode_or_misbehave)
    fn.setup()
    started = time.monotonic()
    try:
        batches = list(fn.process(("part-x", refs)))
    finally:
        close_shared_pools()
    assert time.monotonic() - started < 30
    assert [len(b) for b in batches] == [2, 2, 2]
    items = {i.video_id: i for batch in batches for i in batch}
    assert sorted(items) == sorted(r.video_id for r in refs)
    assert items["crash.mp4"].error_row["error_cause"] == "decoder crashed"
    assert items["hang.mp4"].error_row["error_cause"] == "timeout"
    assert all(items[p.name].decoded is not None for p in good)


def test_a_consumer_that_stops_mid_chunk_leaves_the_pool_usable(corpus):
    fn = DecodeChunkFn(DecodeOptions(num_frames=T, image_size=64), workers=1, timeout=60.0,
                       batch_size=1, decode_ahead=1)
    fn.setup()
    try:
        first = fn.process(("part-a", corpus))
        next(first)
        first.close()  # e.g. the model step failed on the first batch
        again = [i.video_id for b in fn.process(("part-b", corpus)) for i in b]
    finally:
        close_shared_pools()
    assert sorted(again) == sorted(r.video_id for r in corpus)
