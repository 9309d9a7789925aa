"""The extract job's Beam transforms: DecodeChunkFn directly, and the whole transform chain
(`extract_pipeline.build_pipeline`) in a TestPipeline on the FnApiRunner, checked with
assert_that."""
from __future__ import annotations

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
