"""`eercf extract`: decode videos, run the model, write Parquet feature shards (Apache Beam).

    eercf extract --input 'videos/**/*.mp4' --output feats/ --model ViT-B-32 --pretrained openai

Pipeline (labelled Beam transforms):
  ReadInputs (chunks of --shard-size videos) -> Distribute (Reshuffle) -> Decode (one isolated
  decoder pool per worker process: per-video time limit, crash-proof; decodes up to
  --decode-ahead videos ahead of the model through a bounded queue, so decoding and inference
  overlap; emits batches of --batch-size decoded videos) -> Encode (RunInference on those
  ready-made batches, EercfModelHandler, on --device: fp16 autocast on CUDA; failed decodes
  pass through as error rows) -> WriteShards (one atomic Parquet shard per chunk); then the
  completeness check (every input has exactly one row, else exit 1) and a summary
  (summary.json beside the shards).
With --split-stages (or --inference-accelerator HINT, a Beam resource hint on Encode) a
reshuffle separates Decode from Encode and the rows are gathered by shard before WriteShards:
on a cluster, CPU workers decode and GPU workers run the model (README, "GPU extraction").
Every output is emitted from process(), never at bundle end: Beam's Dask runner drops what
finish_bundle emits (where BatchElements would flush its last batch). The chain is linear on
purpose: a Flatten of two branches makes the in-process runner materialise everything before
the writer, which would hold every decoded video in memory and write no shard until the end.

Flags that are not eercf's must be Beam pipeline options (--runner, --direct_num_workers,
--project, ...; anything else, e.g. a misspelt flag, is refused); the default runner is Beam's
in-process FnApiRunner, `--runner DaskRunner` runs on a Dask cluster (pipelines/beam/runner.py).
Rerunning with the same --output resumes.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import logging
import os
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

from eercf_core.config import NUM_FRAMES
from eercf_core.files import paths, shards
from eercf_core.files.id_digests import batches
from eercf_core.files.inputs import (
    ListedInputs,
    VideoRef,
    is_manifest_input,
    iter_manifest,
    manifest_ids,
)
from eercf_core.files.output_check import check_writable_dir
from eercf_core.files.output_lock import OutputLock, lock_inside
from eercf_core.model import identity_cache
from eercf_core.model.device import usable_here
from eercf_core.model.spec import ModelSpec
from eercf_core.video.decode import BACKENDS, DEFAULT_QUALITY, QUALITIES, DecodeOptions
from eercf_core.video.isolation import close_shared_pools
from pipelines.beam.completeness import complete_from
from pipelines.beam.resume import (
    OutputScan,
    drop_error_rows,
    scan_output,
    scan_records,
)
from pipelines.beam.runner import run_pipeline, selects_runner
from pipelines.beam.watch_progress import WatchProgress
from pipelines.flags import (
    add_device,
    add_model_flags,
    add_num_frames,
    add_output,
    add_workers,
    apply_storage_options,
    check_beam_flags,
    check_num_frames,
    command_parser,
    model_spec,
    non_negative_float,
    positive_float,
    positive_int,
)
from pipelines.interrupts import interrupted

if TYPE_CHECKING:  # torch + open_clip: imported only when a model is loaded (~4 s, ~800 MB)
    from eercf_core.model.network import EercfModel

log = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    p = command_parser(
        "extract", __doc__,
        epilog="Other flags are passed to Beam as pipeline options, e.g. --runner DataflowRunner "
               "--project P --region R --temp_location gs://b/tmp, or --direct_num_workers 4 "
               "--direct_running_mode multi_processing for the in-process runner.")
    p.add_argument("--input", nargs="+", required=True,
                   help="globs, directories or files (local or fsspec URLs), or one manifest "
                        "(.tsv/.csv/.jsonl with video_id and uri)")
    add_output(p, help="directory (local or fsspec URL) for shards")
    add_model_flags(p, default="ViT-B-32")
    add_device(p)
    add_num_frames(p)
    p.add_argument("--batch-size", type=positive_int, default=32, help="videos per model batch")
    p.add_argument("--decode-ahead", type=positive_int, default=None,
                   help="decoded videos a worker may hold ready for the model (the bounded "
                        "queue that overlaps decoding with inference; default 2x --batch-size)")
    p.add_argument("--split-stages", action="store_true",
                   help="run decoding and inference as separate Beam stages joined by a "
                        "reshuffle (clusters: CPU workers decode, others run the model); the "
                        "default fuses them, which on one machine avoids holding decoded "
                        "frames in a shuffle")
    p.add_argument("--inference-accelerator", default=None, metavar="HINT",
                   help="Beam accelerator resource hint for the inference stage, e.g. "
                        "'type:nvidia-l4;count:1;install-nvidia-driver' (implies "
                        "--split-stages; honoured by runners with resource hints such as "
                        "Dataflow, ignored by the in-process runner)")
    add_workers(p, None, "decoder processes per worker process")
    p.add_argument("--per-video-timeout", type=positive_float, default=120.0,
                   help="seconds before a video's decoder is killed (default 120)")
    p.add_argument("--decoder", choices=BACKENDS, default="pyav",
                   help="pyav (keyframe-aware, default), decord, or auto (pyav then decord)")
    p.add_argument("--decode-quality", choices=QUALITIES, default=DEFAULT_QUALITY,
                   help="exact: the codec's frames, bicubic scaling; fast: for sources at least "
                        "2x the model's input, no deblocking filter and bilinear scaling, smaller "
                        "ones as exact (measured fidelity: README) (default "
                        f"{DEFAULT_QUALITY}; recorded in each shard row)")
    p.add_argument("--max-offset", type=non_negative_float, default=0.5,
                   help="seconds a sampled frame may be from its 1 fps target to save decoding "
                        "(0 = the exact frame showing at the target)")
    p.add_argument("--shard-size", type=positive_int, default=256, help="videos per Parquet shard")
    p.add_argument("--no-previews", action="store_true",
                   help="do not store the preview JPEGs (middle frame + frame strip, a few KB "
                        "per video) that result pages show")
    p.add_argument("--retry-errors", action="store_true",
                   help="redo videos whose previous result was an error")
    p.add_argument("--dry-run", action="store_true",
                   help="check inputs, resume and plan the work, build the Beam pipeline and "
                        "report its serialized size, but run nothing")
    p.add_argument("--progress-seconds", type=positive_float, default=10.0,
                   help="seconds between progress lines")
    return p


def run(argv: list[str] | None = None) -> int:
    """Run the extraction job. Returns 0 when every input video has exactly one row (ok or
    error) in the output, 1 when the output cannot be proven complete.

    Everything that can be checked before decoding is (flags, Beam options, the output's
    writability, the inputs, the model and its T); bad ones raise UserInputError or exit 2
    with a usage error. The output is locked for the whole run (eercf_core.files.output_lock): a
    second run on the same --output is refused while this one lives. Ctrl-C / SIGTERM (see
    pipelines.interrupts) stop every child process and raise JobInterrupted, which says how many
    videos are done.
    """
    parser = build_parser()
    args, beam_args = parser.parse_known_args(argv)
    check_beam_flags(parser, beam_args)
    apply_storage_options(args)
    started = time.monotonic()
    # Resolved here, where the command is typed: workers may run elsewhere.
    args.input = [paths.absolute(item) for item in args.input]
    args.output = paths.absolute(args.output)
    for name in ("model", "pretrained"):
        value = getattr(args, name)
        if value and os.path.exists(value):
            setattr(args, name, paths.absolute(value))
    check_writable_dir(args.output)
    with OutputLock(lock_inside(args.output), "extract", args.output):
        try:
            with paths.storage_errors(args.output, "extract into the output"):
                return _extract(parser, args, beam_args, started)
        except KeyboardInterrupt as exc:
            raise interrupted(exc, f"{shards.count_rows(args.output)} videos done in "
                                   f"{args.output}, rerun to resume") from None


def _extract(parser: argparse.ArgumentParser, args: argparse.Namespace, beam_args: list[str],
             started: float) -> int:
    refs = _Inputs(args.input)
    try:
        return _extract_inputs(parser, args, beam_args, started, refs)
    finally:
        refs.close()


def _extract_inputs(parser: argparse.ArgumentParser, args: argparse.Namespace,
                    beam_args: list[str], started: float, refs: _Inputs) -> int:
    spec = model_spec(args, args.num_frames or NUM_FRAMES)
    facts = identity_cache.load(args.output, spec)
    model = None
    if facts is None:  # first run (or other weights): load the model to learn what it is
        model = _load_model(launcher_spec(spec, beam_args))
        facts = identity_cache.ModelFacts.of(model)
    else:
        log.info("model %s (weights %s) known from %s; loaded only if there is work",
                 facts.model_id, facts.checkpoint_sha256[:12], identity_cache.CACHE_NAME)
    check_num_frames(parser, args.num_frames, args.model, facts.num_frames)
    removed = shards.remove_temp_files(args.output)
    if removed:
        log.info("removed %d temp files left by an interrupted run", removed)
    scan, pending = _resume(args, refs, facts)
    if pending and model is None and not args.dry_run and not selects_runner(beam_args):
        # The in-process runner's workers are this process: load the model once here (they
        # reuse it) and check it against the cache. A selected runner's workers load it
        # themselves and refuse one that is not `facts` (EercfModelHandler.load_model), so
        # its launcher imports neither torch nor the weights.
        model = _load_model(launcher_spec(spec, beam_args))
        if identity_cache.ModelFacts.of(model) != facts:  # weights changed behind the cache
            log.warning("%s was stale (the weights changed); the model's real identity is used",
                        identity_cache.CACHE_NAME)
            facts = identity_cache.ModelFacts.of(model)
            scan, pending = _resume(args, refs, facts)
    identity_cache.store(args.output, spec, facts)
    if pending:
        decode_options = DecodeOptions(num_frames=facts.num_frames, image_size=facts.image_size,
                                       backend=args.decoder, max_offset=args.max_offset,
                                       quality=args.decode_quality)
        from pipelines.beam.extract_pipeline import build_pipeline
        from pipelines.beam.read_inputs import ReadPlan, write_plan

        plan = write_plan(args.output, _pending_refs(refs, scan), args.shard_size)
        del scan  # the done ids: rows are counted again after the run
        # On a selected runner (Dask, Dataflow, ...) the writers' progress lines stay in the
        # workers' logs: the launcher watches the commit records instead.
        watch = (WatchProgress(args.output, pending, args.progress_seconds)
                 if selects_runner(beam_args) else contextlib.nullcontext())
        try:
            with watch, paths.storage_errors(args.output, "write feature shards"):
                graph_bytes = run_pipeline(lambda pipeline: build_pipeline(
                    pipeline, ReadPlan(plan), decode_options, spec, args, facts.dims, facts,
                    pending), beam_args, work_items=plan.parts, dry_run=args.dry_run)
        finally:
            close_shared_pools()  # decoders an in-process runner started here
            plan.remove()
        if args.dry_run:
            print(f"extract --dry-run: {pending} of {refs.count} videos to do in {plan.chunks} "
                  f"shards; pipeline graph {graph_bytes} bytes; nothing was run")
            return 0
        scan = scan_records(args.output)  # what the run committed (read only)
    # else: nothing was written, resume's scan is the output as it stands
    elapsed = time.monotonic() - started
    completeness = complete_from(args.output, scan.ids, refs.ids,
                                 lambda: (ref.video_id for ref in refs))
    summary = scan.summary.write(args.output, scan.shards, scan.uncommitted, extra={
        "model_id": facts.model_id, "checkpoint_sha256": facts.checkpoint_sha256,
        "model_weights": spec.describe(),
        "this_run": {"inputs": refs.count, "processed": pending,
                     "skipped_already_done": refs.count - pending,
                     "seconds": round(elapsed, 2),
                     "videos_per_s": round(pending / elapsed, 3) if elapsed else None},
        "completeness": completeness.to_dict()})
    _print_summary(args.output, summary)
    if not completeness.ok:
        log.error("extract: %s (the runner lost work; rerun the same command to extract the "
                  "missing videos)", completeness.message(args.output))
        return 1
    return 0


def launcher_spec(spec: ModelSpec, beam_args: list[str]) -> ModelSpec:
    """The spec the launcher loads its model with (for dims, T and identity; the in-process
    runner's workers reuse it). `spec` itself, unless a runner is selected and `--device` names
    a device this machine lacks (a CPU launcher of GPU workers): then the same weights on the
    CPU, and each worker loads `spec` on its own device. The identity hashes fp32 weights, so
    it does not depend on the device."""
    if selects_runner(beam_args) and not usable_here(spec.device):
        log.info("--device %s: not on this machine; the launcher reads the model on the CPU, "
                 "the workers load it on %s", spec.device, spec.device)
        return dataclasses.replace(spec, device="cpu")
    return spec
def _load_model(spec: ModelSpec) -> EercfModel:
    """The model of `spec`, loaded (Beam + torch imported here: ~4 s, ~800 MB before weights)."""
    from pipelines.beam.inference import build_model

    return build_model(spec)


class _Inputs:
    """The job's input videos, iterable once per pass, never held in memory: a manifest is
    streamed from its file on every pass (checked once up front: bad lines and repeated ids
    refused with file:line); globs, directories and files are listed once, streamed into a
    local spill file (eercf_core.files.inputs.ListedInputs), and read back from it. Memory:
    16 bytes per id for the checks."""

    def __init__(self, inputs: list[str]):
        self.manifest = inputs[0] if is_manifest_input(inputs) else None
        self.listed = None if self.manifest else ListedInputs(inputs)
        self.ids = self.listed.ids if self.listed else manifest_ids(str(self.manifest))
        self.count = self.ids.total

    def __iter__(self) -> Iterator[VideoRef]:
        if self.listed is not None:
            return iter(self.listed)
        return (ref for _, ref in iter_manifest(str(self.manifest)))

    def close(self) -> None:
        if self.listed is not None:
            self.listed.close()


def _pending_refs(refs: _Inputs, scan: OutputScan) -> Iterator[VideoRef]:
    """The inputs without a committed row, in input order (looked up in batches)."""
    for batch in batches(refs):
        done = scan.done([ref.video_id for ref in batch])
        yield from (ref for ref, is_done in zip(batch, done) if not is_done)


def _resume(args: argparse.Namespace, refs: _Inputs, facts: identity_cache.ModelFacts
            ) -> tuple[OutputScan, int]:
    """(the output's commit records, scanned once; how many input videos are pending, from
    the digests of both: no pass over the inputs); `--retry-errors` first drops the error
    rows."""
    identity = (facts.dims, facts.model_id, facts.checkpoint_sha256)
    if args.retry_errors:
        done = scan_output(args.output, *identity)
        retried = drop_error_rows(done, *identity)
        log.info("--retry-errors: %d error rows removed, those videos run again", retried)
        del done
    scan = scan_records(args.output, identity)
    pending = int((scan.ids.counts_of(refs.ids.unique) == 0).sum())  # no pass over the inputs
    log.info("extract: %d input videos, %d already in %s, %d to do", refs.count,
             refs.count - pending, args.output, pending)
    return scan, pending


def _print_summary(output: str, summary: dict) -> None:
    lines = [f"extract summary ({output}/summary.json)",
             f"  videos: {summary['videos']} in {summary['shards']} shards"]
    lines += [f"  {status:<6} {count}" for status, count in summary["by_status"].items()]
    run = summary["this_run"]
    lines.append(f"  this run: {run['processed']} processed, {run['skipped_already_done']} "
                 f"skipped (done before), {run['seconds']} s")
    if summary["errors_by_cause"]:
        lines.append("  errors by cause (e.g.):")
        lines += [f"    {group['count']:>4}  {cause}  ({group['examples'][0][:150]})"
                  for cause, group in summary["errors_by_cause"].items()]
    lines += [f"  warning: {group['count']} videos {kind} (e.g. {group['examples'][0]})"
              for kind, group in summary["warnings"].items()]
    print("\n".join(lines))


if __name__ == "__main__":
    import sys

    from pipelines.flags import setup_logging, verbosity

    setup_logging(verbosity(sys.argv[1:]))
    sys.exit(run(sys.argv[1:]))
