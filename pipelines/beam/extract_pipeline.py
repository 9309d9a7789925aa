"""The extract job's Beam graph: ReadInputs -> Distribute -> Decode -> Encode -> WriteShards,
fused into one stage (one machine, the default) or split into a decode and an inference stage
(clusters: `--split-stages`, `--inference-accelerator`; see `build_pipeline`).

Decode (`DecodeChunkFn`) runs every chunk's videos through the worker process's shared isolated
decoder pool, ahead of the model through a bounded queue, and emits batches of decoded videos
from process(); Encode is `RunInference` with the eercf ModelHandler (pipelines.beam.inference);
WriteShards (pipelines.beam.shard_sink) writes one Parquet shard per chunk.
"""
from __future__ import annotations

import argparse
import logging
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import apache_beam as beam

from eercf_core.files.inputs import VideoRef
from eercf_core.model.identity_cache import ModelFacts
from eercf_core.model.spec import ModelSpec
from eercf_core.video.decode import DecodedVideo, DecodeOptions, decode_job
from eercf_core.video.error_causes import outcome_cause
from eercf_core.video.isolation import Outcome, shared_pool
from eercf_core.video.prefetch import PrefetchStats, prefetch
from pipelines.beam.inference import DecodedItem, EercfModelHandler, RunInference
from pipelines.beam.shard_sink import WriteShardsFn
from schemas import STATUS_ERROR, FeatureDims

if TYPE_CHECKING:  # torch: never imported by building the graph (pipelines.beam.inference)
    from eercf_core.model.network import ModelIdentity

log = logging.getLogger(__name__)


class DecodeChunkFn(beam.DoFn):
    """(shard, [VideoRef]) -> lists of up to `batch_size` DecodedItems (decoded frames, or the
    error row), every list emitted from process(), the chunk's remainder included.

    Decoding runs in the worker process's shared IsolatedPool
    (eercf_core.video.isolation.shared_pool:
    `workers` decoder processes per worker process however many DoFn instances it runs; None =
    its cores): a crashing or hanging decoder costs one error row, never the run.

    Decode and model overlap: a thread collects the pool's results into a queue of at most
    `decode_ahead` videos (eercf_core.video.prefetch; default two batches), so the decoders keep
    working while the next step (the model, fused into the same stage by the runner) runs a
    batch, and the model finds the next batch ready. Beam counters `decode_wait_ms` (the
    model side waited for decoded videos) and `model_wait_ms` (decoders idle, the queue full)
    say which side sets the pace. `decode_fn`: a module-level function of (uri, DecodeOptions)
    jobs (tests put a misbehaving decoder here).
    """

    def __init__(self, options: DecodeOptions, workers: int | None, timeout: float | None,
                 batch_size: int, decode_ahead: int | None = None,
                 decode_fn: Callable[[tuple[str, DecodeOptions]], Any] = decode_job):
        self.options, self.workers, self.timeout = options, workers, timeout
        self.batch_size = batch_size
        self.decode_ahead = decode_ahead or 2 * batch_size
        self.decode_fn = decode_fn
        self.failures = beam.metrics.Metrics.counter("eercf_extract", "decode_failures")
        self.decoded = beam.metrics.Metrics.counter("eercf_extract", "videos_decoded")
        self.decode_wait = beam.metrics.Metrics.counter("eercf_extract", "decode_wait_ms")
        self.model_wait = beam.metrics.Metrics.counter("eercf_extract", "model_wait_ms")

    def setup(self) -> None:
        self.pool = shared_pool(self.decode_fn, workers=self.workers, timeout=self.timeout)

    def process(self, element: tuple[str, list[VideoRef]]) -> Iterable[list[DecodedItem]]:
        name, refs = element
        jobs = [(ref.uri, self.options) for ref in refs]
        stats = PrefetchStats()
        batch: list[DecodedItem] = []
        try:
            for outcome in prefetch(self.pool.imap_unordered(jobs), self.decode_ahead,
                                    name=f"decode-ahead-{name}", stats=stats):
                batch.append(self._item(name, refs, outcome))
                if len(batch) == self.batch_size:
                    yield batch
                    batch = []
            if batch:
                yield batch
        finally:
            self.decode_wait.inc(int(stats.consumer_wait_s * 1000))
            self.model_wait.inc(int(stats.producer_wait_s * 1000))
            log.debug("%s: %s", name, stats.as_dict())

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


def split_stages(args: argparse.Namespace) -> bool:
    """True when decode and inference run as separate stages (`--split-stages`, or implied by
    `--inference-accelerator`)."""
    return bool(args.split_stages or args.inference_accelerator)


def _by_shard(element: tuple[str, int, dict]) -> tuple[str, tuple[int, dict]]:
    shard, count, row = element
    return shard, (count, row)


def _shard_rows(group: tuple[str, Iterable[tuple[int, dict]]]) -> Iterable[tuple[str, int, dict]]:
    shard, rows = group
    for count, row in rows:
        yield shard, count, row


def build_pipeline(pipeline: beam.Pipeline,
                   chunks: list[tuple[str, list[VideoRef]]] | beam.PTransform,
                   decode_options: DecodeOptions, spec: ModelSpec, args: argparse.Namespace,
                   dims: FeatureDims, identity: ModelIdentity | ModelFacts, total: int
                   ) -> beam.PCollection:
    """The extract graph; returns the PCollection of written shard paths.

    Fused (default): ReadInputs -> Distribute -> Decode -> Encode -> WriteShards, one linear
    chain the runner fuses into one stage: each worker decodes a chunk and runs its batches
    through the model, the two overlapped by DecodeChunkFn's decode-ahead queue.

    Split (`--split-stages` / `--inference-accelerator`): Decode -> ToInference (Reshuffle) ->
    Encode -> KeyByShard -> GatherShards (GroupByKey) -> Regroup -> WriteShards. The reshuffle
    ends the decode stage, so a runner may run decoding and inference on different workers;
    `--inference-accelerator` puts a Beam resource hint on Encode (runners that honour hints,
    e.g. Dataflow with right fitting, give that stage GPU workers and the rest CPU workers).
    A chunk's batches may then be encoded on different workers, so the rows are gathered by
    shard before the writer. For clusters: on the in-process runner both shuffles hold the
    whole run (decoded frames, then features) in memory.
    """
    decoded = (
        pipeline
        | "ReadInputs" >> (chunks if isinstance(chunks, beam.PTransform) else beam.Create(chunks))
        | "Distribute" >> beam.Reshuffle()
        | "Decode" >> beam.ParDo(DecodeChunkFn(decode_options, args.workers,
                                               args.per_video_timeout, args.batch_size,
                                               args.decode_ahead)))
    encode: beam.PTransform = RunInference(EercfModelHandler(
        spec, previews=not args.no_previews,
        expected=identity if isinstance(identity, ModelFacts) else None))
    writer = WriteShardsFn(args.output, dims, identity.model_id, identity.checkpoint_sha256,
                           total, args.progress_seconds, time.time())
    if not split_stages(args):
        return (decoded
                | "Encode" >> encode
                | "WriteShards" >> beam.ParDo(writer))
    if args.inference_accelerator:
        encode = encode.with_resource_hints(accelerator=args.inference_accelerator)
    return (decoded
            | "ToInference" >> beam.Reshuffle()
            | "Encode" >> encode
            | "KeyByShard" >> beam.Map(_by_shard)
            | "GatherShards" >> beam.GroupByKey()
            | "Regroup" >> beam.FlatMap(_shard_rows)
            | "WriteShards" >> beam.ParDo(writer))
