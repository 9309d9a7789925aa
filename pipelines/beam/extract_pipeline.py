"""The extract job's Beam graph: ReadInputs -> Distribute -> Decode -> Encode -> WriteShards.

Decode (`DecodeChunkFn`) runs every chunk's videos through the worker process's shared isolated
decoder pool and emits batches of decoded videos from process(); Encode is `RunInference` with
the eercf ModelHandler (pipelines.beam.inference); WriteShards (pipelines.beam.shard_sink) writes
one Parquet shard per chunk.
"""
from __future__ import annotations

import argparse
import logging
import time
from collections.abc import Iterable

import apache_beam as beam
from apache_beam.ml.inference.base import RunInference

from eercf_core.files.inputs import VideoRef
from eercf_core.model.identity_cache import ModelFacts
from eercf_core.model.network import ModelIdentity
from eercf_core.model.spec import ModelSpec
from eercf_core.video.decode import DecodedVideo, DecodeOptions, decode_job
from eercf_core.video.error_causes import outcome_cause
from eercf_core.video.isolation import Outcome, shared_pool
from pipelines.beam.inference import DecodedItem, EercfModelHandler
from pipelines.beam.shard_sink import WriteShardsFn
from schemas import STATUS_ERROR, FeatureDims

log = logging.getLogger(__name__)


class DecodeChunkFn(beam.DoFn):
    """(shard, [VideoRef]) -> lists of up to `batch_size` DecodedItems (decoded frames, or the
    error row), every list emitted from process(), the chunk's remainder included.

    Decoding runs in the worker process's shared IsolatedPool
    (eercf_core.video.isolation.shared_pool:
    `workers` decoder processes per worker process however many DoFn instances it runs; None =
    its cores): a crashing or hanging decoder costs one error row, never the run.
    """

    def __init__(self, options: DecodeOptions, workers: int | None, timeout: float | None,
                 batch_size: int):
        self.options, self.workers, self.timeout = options, workers, timeout
        self.batch_size = batch_size
        self.failures = beam.metrics.Metrics.counter("eercf_extract", "decode_failures")
        self.decoded = beam.metrics.Metrics.counter("eercf_extract", "videos_decoded")

    def setup(self) -> None:
        self.pool = shared_pool(decode_job, workers=self.workers, timeout=self.timeout)

    def process(self, element: tuple[str, list[VideoRef]]) -> Iterable[list[DecodedItem]]:
        name, refs = element
        jobs = [(ref.uri, self.options) for ref in refs]
        batch: list[DecodedItem] = []
        for outcome in self.pool.imap_unordered(jobs):
            batch.append(self._item(name, refs, outcome))
            if len(batch) == self.batch_size:
                yield batch
                batch = []
        if batch:
            yield batch

    def _item(self, name: str, refs: list[VideoRef], outcome: Outcome[DecodedVideo]
              ) -> DecodedItem:
        ref = refs[outcome.index]
        if outcome.ok:
            self.decoded.inc()
            if outcome.value.warning:
                log.warning("%s: %s", ref.uri, outcome.value.warning)
            return DecodedItem(name, len(refs), ref.video_id, ref.uri, outcome.value)
        self.failures.inc()
        error = outcome.error or "decode failed"
        message = error if ref.uri in error else f"{ref.uri}: {error}"
        cause = outcome_cause(outcome.cause)
        log.warning("decode failed (%s): %s", cause, message)
        return DecodedItem(name, len(refs), ref.video_id, ref.uri, None, error_row={
            "video_id": ref.video_id, "uri": ref.uri, "status": STATUS_ERROR,
            "error": message, "error_cause": cause, "decode_seconds": outcome.seconds})


def build_pipeline(pipeline: beam.Pipeline,
                   chunks: list[tuple[str, list[VideoRef]]] | beam.PTransform,
                   decode_options: DecodeOptions, spec: ModelSpec, args: argparse.Namespace,
                   dims: FeatureDims, identity: ModelIdentity | ModelFacts, total: int
                   ) -> beam.PCollection:
    """The extract graph: chunks -> decode (isolated pool) -> model -> shard files (paths)."""
    return (
        pipeline
        | "ReadInputs" >> (chunks if isinstance(chunks, beam.PTransform) else beam.Create(chunks))
        | "Distribute" >> beam.Reshuffle()
        | "Decode" >> beam.ParDo(DecodeChunkFn(decode_options, args.workers,
                                               args.per_video_timeout, args.batch_size))
        | "Encode" >> RunInference(EercfModelHandler(spec, previews=not args.no_previews))
        | "WriteShards" >> beam.ParDo(WriteShardsFn(
            args.output, dims, identity.model_id, identity.checkpoint_sha256, total,
            args.progress_seconds, time.time())))
