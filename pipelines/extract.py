"""`eercf extract`: decode videos, run the model, write Parquet feature shards (Apache Beam).

    eercf extract --input 'videos/**/*.mp4' --output feats/ --model ViT-B-32 --pretrained openai

Pipeline (labelled Beam transforms):
  ReadInputs (chunks of --shard-size videos) -> Distribute (Reshuffle) -> Decode (one isolated
  decoder pool per worker process: per-video time limit, crash-proof; emits batches of
  --batch-size decoded videos) -> Encode (RunInference on those ready-made batches,
  EercfModelHandler; failed decodes pass through as error rows) -> WriteShards (one atomic
  Parquet shard per chunk); then the completeness check (every input has exactly one row, else
  exit 1) and a summary (summary.json beside the shards).
Every output is emitted from process(), never at bundle end: Beam's Dask runner drops what
finish_bundle emits (where BatchElements would flush its last batch). The chain is linear on
purpose: a Flatten of two branches makes the in-process runner materialise everything before
the writer, which would hold every decoded video in memory and write no shard until the end.

Unknown flags are Beam pipeline options (--runner, --direct_num_workers, --project, ...); the
default runner is Beam's in-process FnApiRunner, `--runner DaskRunner` runs on a Dask cluster
(pipelines/beam_runner.py). Rerunning with the same --output resumes.
"""
from __future__ import annotations

import argparse
import logging
import os
import time
from collections.abc import Iterable

import apache_beam as beam
from apache_beam.ml.inference.base import RunInference

from eercf_core import shards
from eercf_core.config import NUM_FRAMES
from eercf_core.decode import BACKENDS, DEFAULT_QUALITY, QUALITIES, DecodeOptions, decode_job
from eercf_core.inputs import VideoRef, read_inputs
from eercf_core.isolation import close_shared_pools, shared_pool
from pipelines.args import add_model, add_num_frames, add_output, check_num_frames, check_required
from pipelines.beam_runner import absolute_local, run_pipeline
from pipelines.extract_check import check_complete
from pipelines.extract_sink import (
    WriteShardsFn,
    drop_error_rows,
    plan_chunks,
    scan_output,
    summarize,
)
from pipelines.inference import DecodedItem, EercfModelHandler, ModelSpec, build_model
from schemas import STATUS_ERROR

log = logging.getLogger(__name__)


class DecodeChunkFn(beam.DoFn):
    """(shard, [VideoRef]) -> lists of up to `batch_size` DecodedItems (decoded frames, or the
    error row), every list emitted from process(), the chunk's remainder included.

    Decoding runs in the worker process's shared IsolatedPool (eercf_core.isolation.shared_pool:
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

    def _item(self, name: str, refs: list[VideoRef], outcome) -> DecodedItem:
        ref = refs[outcome.index]
        if outcome.ok:
            self.decoded.inc()
            return DecodedItem(name, len(refs), ref.video_id, ref.uri, outcome.value)
        self.failures.inc()
        message = outcome.error if ref.uri in outcome.error else f"{ref.uri}: {outcome.error}"
        log.warning("decode failed: %s", message)
        return DecodedItem(name, len(refs), ref.video_id, ref.uri, None, error_row={
            "video_id": ref.video_id, "uri": ref.uri, "status": STATUS_ERROR,
            "error": message, "decode_seconds": outcome.seconds})


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="eercf extract", description=__doc__.split("\n\n")[0],
        epilog="Other flags are passed to Beam as pipeline options, e.g. --runner DataflowRunner "
               "--project P --region R --temp_location gs://b/tmp, or --direct_num_workers 4 "
               "--direct_running_mode multi_processing for the in-process runner.")
    p.add_argument("--input", nargs="+", required=True,
                   help="globs, directories or files (local or fsspec URLs), or one manifest "
                        "(.tsv/.csv/.jsonl with video_id and uri)")
    add_output(p, help="directory (local or fsspec URL) for shards")
    add_model(p, default="ViT-B-32",
              help="checkpoint path/URL (official EERCF, project, or open_clip with "
                   "--pretrained) or an open_clip name (default ViT-B-32)")
    p.add_argument("--pretrained", default=None,
                   help="open_clip pretrained tag (e.g. openai) or local open_clip weights; "
                        "without it a bare model name gets seeded random weights")
    p.add_argument("--head", choices=("eercf", "zero-shot"), default=None,
                   help="head of a random-weight model built by name (default eercf)")
    p.add_argument("--seed", type=int, default=0, help="seed of random-weight models")
    p.add_argument("--device", default=None, help="cuda / cpu (default: cuda when available)")
    add_num_frames(p)
    p.add_argument("--batch-size", type=int, default=32, help="videos per model batch")
    p.add_argument("--decode-workers", type=int, default=None,
                   help="decoder processes per worker process (default: the cores of the "
                        "machine it runs on)")
    p.add_argument("--per-video-timeout", type=float, default=120.0,
                   help="seconds before a video's decoder is killed (default 120)")
    p.add_argument("--decoder", choices=BACKENDS, default="pyav",
                   help="pyav (keyframe-aware, default), decord, or auto (pyav then decord)")
    p.add_argument("--decode-quality", choices=QUALITIES, default=DEFAULT_QUALITY,
                   help="exact: the codec's frames, bicubic scaling; fast: no deblocking filter, "
                        "bilinear scaling (measured fidelity: README) (default "
                        f"{DEFAULT_QUALITY}; recorded in each shard row)")
    p.add_argument("--max-offset", type=float, default=0.5,
                   help="seconds a sampled frame may be from its 1 fps target to save decoding "
                        "(0 = the exact frame showing at the target)")
    p.add_argument("--shard-size", type=int, default=256, help="videos per Parquet shard")
    p.add_argument("--no-previews", action="store_true",
                   help="do not store the preview JPEGs (middle frame + frame strip, a few KB "
                        "per video) that result pages show")
    p.add_argument("--retry-errors", action="store_true",
                   help="redo videos whose previous result was an error")
    p.add_argument("--progress-seconds", type=float, default=10.0,
                   help="seconds between progress lines")
    return p


def build_pipeline(pipeline: beam.Pipeline, chunks, decode_options: DecodeOptions, spec: ModelSpec,
                   args: argparse.Namespace, dims, identity, total: int):
    return (
        pipeline
        | "ReadInputs" >> beam.Create(chunks)
        | "Distribute" >> beam.Reshuffle()
        | "Decode" >> beam.ParDo(DecodeChunkFn(decode_options, args.decode_workers,
                                               args.per_video_timeout, args.batch_size))
        | "Encode" >> RunInference(EercfModelHandler(spec, previews=not args.no_previews))
        | "WriteShards" >> beam.ParDo(WriteShardsFn(
            args.output, dims, identity.model_id, identity.checkpoint_sha256, total,
            args.progress_seconds, time.time())))


def run(argv: list[str] | None = None) -> int:
    """Run the extraction job. Returns 0 when every input video has exactly one row (ok or
    error) in the output, 1 when the output cannot be proven complete."""
    parser = build_parser()
    args, beam_args = parser.parse_known_args(argv)
    check_required(parser, args)
    started = time.monotonic()
    # Resolved here, where the command is typed: workers may run elsewhere.
    args.input = [absolute_local(item) for item in args.input]
    args.output = absolute_local(args.output)
    for name in ("model", "pretrained"):
        value = getattr(args, name)
        if value and os.path.exists(value):
            setattr(args, name, absolute_local(value))
    refs = read_inputs(args.input)
    spec = ModelSpec(args.model, args.pretrained, args.head, args.seed, args.device,
                     args.num_frames or NUM_FRAMES)
    model = build_model(spec)
    check_num_frames(parser, args.num_frames, args.model, model.num_frames)
    dims, identity = model.dims, model.identity
    removed = shards.remove_temp_files(args.output)
    if removed:
        log.info("removed %d temp files left by an interrupted run", removed)
    done = scan_output(args.output, dims, identity.model_id, identity.checkpoint_sha256)
    if args.retry_errors:
        retried = drop_error_rows(done, dims, identity.model_id, identity.checkpoint_sha256)
        log.info("--retry-errors: %d error rows removed, those videos run again", retried)
        done = {k: v for k, v in done.items() if v[0] != STATUS_ERROR}
    pending = [ref for ref in refs if ref.video_id not in done]
    log.info("extract: %d input videos, %d already in %s, %d to do", len(refs),
             len(refs) - len(pending), args.output, len(pending))
    if pending:
        decode_options = DecodeOptions(num_frames=model.num_frames, image_size=model.image_size,
                                       backend=args.decoder, max_offset=args.max_offset,
                                       quality=args.decode_quality)
        chunks = plan_chunks(pending, args.shard_size)
        try:
            run_pipeline(lambda pipeline: build_pipeline(
                pipeline, chunks, decode_options, spec, args, dims, identity, len(pending)),
                beam_args, work_items=len(chunks))
        finally:
            close_shared_pools()  # decoders an in-process runner started here
    elapsed = time.monotonic() - started
    completeness = check_complete(args.output, [ref.video_id for ref in refs])
    summary = summarize(args.output, extra={
        "model_id": identity.model_id, "checkpoint_sha256": identity.checkpoint_sha256,
        "this_run": {"inputs": len(refs), "processed": len(pending),
                     "skipped_already_done": len(refs) - len(pending),
                     "seconds": round(elapsed, 2),
                     "videos_per_s": round(len(pending) / elapsed, 3) if elapsed else None},
        "completeness": completeness.to_dict()})
    _print_summary(args.output, summary)
    if not completeness.ok:
        log.error("extract: %s (the runner lost work; rerun the same command to extract the "
                  "missing videos)", completeness.message(args.output))
        return 1
    return 0


def _print_summary(output: str, summary: dict) -> None:
    lines = [f"extract summary ({output}/summary.json)",
             f"  videos: {summary['videos']} in {summary['shards']} shards"]
    lines += [f"  {status:<6} {count}" for status, count in summary["by_status"].items()]
    run = summary["this_run"]
    lines.append(f"  this run: {run['processed']} processed, {run['skipped_already_done']} "
                 f"skipped (done before), {run['seconds']} s")
    if summary["top_errors"]:
        lines.append("  most frequent errors:")
        lines += [f"    {e['count']:>4}  {e['error'][:150]}" for e in summary["top_errors"]]
    print("\n".join(lines))


if __name__ == "__main__":
    import sys

    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    sys.exit(run(sys.argv[1:]))
