"""Running a job's Beam pipeline on any runner: the in-process default, Dask, or any other.

- Unknown command-line flags are Beam pipeline options. Without `--runner` the pipeline runs on
  Beam's in-process FnApiRunner (the "DirectRunner" default first tries to download a binary).
- `--runner DaskRunner` (or `Dask`, or Beam's class path) runs Beam's Dask runner with its ParDo
  translation fixed (pipelines.beam.dask_runner: Beam's repeats earlier partitions' outputs in
  later ones and shares one DoFn instance between a worker's threads). On Dask each work item
  (an extract chunk, a block of queries) becomes its own partition unless
  `--dask_npartitions`/`--dask_partition_size` is given: Beam's default packs up to 128
  elements into one partition, i.e. onto one worker, and its Reshuffle does nothing.
- The Dask client (and a LocalCluster it started) is closed when the pipeline ends, failed or
  not, so the job exits without connection-refused noise.
- Local paths are made absolute where the command is typed (`eercf_core.files.paths.absolute`):
  workers may run in another directory or on another machine that sees the same shared filesystem.
"""
from __future__ import annotations

import logging
import shutil
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import apache_beam as beam

log = logging.getLogger(__name__)

# Beam's Dask runner with its ParDo translation fixed (pipelines/beam/dask_runner.py); Beam's own
# class path is mapped to it too, since Beam's repeats outputs across partitions.
DASK_RUNNER = "pipelines.beam.dask_runner.DaskRunner"
BEAM_DASK_RUNNER = "apache_beam.runners.dask.dask_runner.DaskRunner"
_RUNNER_ALIASES = {"dask": DASK_RUNNER, "daskrunner": DASK_RUNNER,
                   BEAM_DASK_RUNNER.lower(): DASK_RUNNER}
_DASK_PARTITION_FLAGS = ("--dask_npartitions", "--dask_partition_size")


def _flag_value(args: list[str], flag: str) -> tuple[int, str | None]:
    """(position, value) of the last `flag value` / `flag=value` in `args`, else (-1, None)."""
    found: tuple[int, str | None] = (-1, None)
    for i, arg in enumerate(args):
        if arg == flag:
            found = (i, args[i + 1] if i + 1 < len(args) else None)
        elif arg.startswith(flag + "="):
            found = (i, arg.split("=", 1)[1])
    return found


def runner_args(beam_args: list[str], work_items: int) -> list[str]:
    """`beam_args` with the runner alias resolved and, on Dask, one partition per work item
    (unless the partitioning was given)."""
    args = list(beam_args)
    position, runner = _flag_value(args, "--runner")
    if runner is not None and runner.lower() in _RUNNER_ALIASES:
        runner = _RUNNER_ALIASES[runner.lower()]
        if args[position] == "--runner":
            args[position + 1] = runner
        else:
            args[position] = f"--runner={runner}"
    if runner == DASK_RUNNER and not any(
            _flag_value(args, flag)[1] is not None for flag in _DASK_PARTITION_FLAGS):
        args.append(f"--dask_npartitions={max(1, work_items)}")
    return args


def selects_runner(beam_args: list[str]) -> bool:
    """True when `beam_args` name a runner (`--runner X` / `--runner=X`)."""
    return _flag_value(beam_args, "--runner")[1] is not None


def is_dask(beam_args: list[str]) -> bool:
    """True when `beam_args` select Beam's Dask runner (alias or class path)."""
    runner = _flag_value(runner_args(beam_args, 1), "--runner")[1]
    return runner == DASK_RUNNER


def run_pipeline(build: Callable[[beam.Pipeline], Any], beam_args: list[str],
                 work_items: int, dry_run: bool = False) -> int:
    """Build a pipeline with `build(pipeline)`, run it to the end on the runner `beam_args`
    select (FnApiRunner by default) and release the runner's resources (a Dask client).
    Returns the size in bytes of the serialized pipeline graph (what a runner service such as
    Dataflow receives); `dry_run`: build it and return that size without running.

    Raises whatever the runner raises for a failed pipeline, or RuntimeError when it ends in a
    state other than DONE.
    """
    import apache_beam as beam  # here: flag handling must not cost a Beam import (~1 s, 100 MB)
    from apache_beam.options.pipeline_options import PipelineOptions
    from apache_beam.runners.runner import PipelineState

    args = runner_args(beam_args, work_items)
    runner = None
    if not selects_runner(args):
        from apache_beam.runners.portability.fn_api_runner import FnApiRunner

        runner = FnApiRunner()
    pipeline = beam.Pipeline(runner=runner, options=PipelineOptions(args))
    build(pipeline)
    graph_bytes = len(pipeline.to_runner_api().SerializeToString())
    log.info("pipeline graph: %d bytes serialized", graph_bytes)
    if dry_run:  # Pipeline.run() removes the pipeline's local temp dir; this one never runs
        shutil.rmtree(pipeline.local_tempdir, ignore_errors=True)
        return graph_bytes
    result = pipeline.run()
    try:
        state = result.wait_until_finish()
    finally:
        client = getattr(result, "client", None)  # DaskRunnerResult
        if client is not None:
            client.close()
    if state is not None and state != PipelineState.DONE:
        raise RuntimeError(f"the Beam pipeline ended in state {state}")
    return graph_bytes
