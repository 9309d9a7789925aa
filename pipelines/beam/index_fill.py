"""`eercf build-index --runner ...`: the fine-store fill as a Beam pipeline, one `FillTask` per
shard, so a Dask cluster (or any runner) fills the store.

The workers write the store in place (positional writes into the preallocated files), so they
must reach the index's directory at the same path: a shared filesystem, or the launcher's own
machine (`distributed.LocalCluster`). Each task leaves a marker after its rows;
`eercf_core.index.build` checks every marker after the pipeline and fails naming the shards of a
lost task.
"""
from __future__ import annotations

from collections.abc import Callable

from eercf_core.index.fill import FillTask
from pipelines.beam.runner import run_pipeline


def fill_on_runner(beam_args: list[str]) -> Callable[[list[FillTask]], None]:
    """A `fill_runner` for `build_index`: runs the tasks on the runner `beam_args` select."""
    def fill(tasks: list[FillTask]) -> None:
        import apache_beam as beam

        run_pipeline(lambda pipeline: (
            pipeline
            | "Fill tasks" >> beam.Create(tasks)
            | "Distribute" >> beam.Reshuffle()
            | "Fill shard" >> beam.Map(FillTask.run)), beam_args, work_items=len(tasks))
    return fill
