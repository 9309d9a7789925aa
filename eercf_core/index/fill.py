"""Feature shards -> rows of the fine store: the store fill of `build-index`, serial or as one
task per shard (`FillTask.fill`, what each worker process of `--workers N` runs;
`FillTask.run`, what a Beam runner's workers run: the fill, then a marker file proving it done).

Imports neither torch nor the rest of the index package: a spawned fill worker starts in about
the time of a pyarrow + FAISS import (measured in bench/bench_scale.py's build part).
"""
from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pyarrow.compute as pc

from eercf_core.files.atomic import write_json
from eercf_core.files.shards import feature_arrays, iter_shard_batches
from eercf_core.index.store import FineStoreSlice
from schemas import COLUMN_OF_FEATURE, STATUS_OK, FeatureDims


def ok_batches(shards: list[str], dims: FeatureDims, batch_rows: int
               ) -> Iterator[tuple[int, dict[str, np.ndarray]]]:
    """(shard number from 1, feature arrays of up to `batch_rows` ok rows) in index row order:
    "coarse" [n, D], "frame"/"context" [n, T, D], "patch" [n, T*P, D] float16, "mask" [n, T]."""
    columns = ["status", *COLUMN_OF_FEATURE.values()]
    for number, shard in enumerate(shards, start=1):
        for batch in iter_shard_batches(shard, columns, batch_rows):
            batch = batch.filter(pc.equal(batch.column("status"), STATUS_OK))
            if batch.num_rows:
                yield number, feature_arrays(batch, dims)


def init_fill_worker() -> None:
    """Start of a dedicated fill worker process: one FAISS thread, as the pool already runs one
    process per core (OpenMP threads in every worker oversubscribe the cores during encoding).
    Never call it in a process that also runs torch work: the two can share one OpenMP runtime."""
    import faiss

    faiss.omp_set_num_threads(1)


def fill_shard(store: str, dims: dict, codecs: dict[str, tuple[str, str, str]], shard: str,
               start: int, count: int, batch_rows: int) -> int:
    """One task of the parallel fill: the ok rows of `shard` into store rows
    [start, start + count) (`codecs`: kind -> (file, factory, sha256) of the trained codecs);
    returns the rows written (ValueError when the shard's ok rows are not `count`)."""
    target = FineStoreSlice(store, FeatureDims.from_dict(dims), start, count, codecs)
    for _, arrays in ok_batches([shard], target.dims, batch_rows):
        target.append(**arrays)
    target.close()
    return target.written


# Beside the store's files while a runner fills it: one marker per finished task.
FILL_MARKERS = ".fill-done"


@dataclass(frozen=True)
class FillTask:
    """One shard's rows into store rows [start, start + count), runnable on any worker that
    reaches `store` at the same path (a shared filesystem): `run` fills, then writes a marker
    (atomically, after the rows) that `check_fill_markers` reads, so a lost or failed task is
    found by the launcher whatever the runner reports."""

    store: str
    dims: dict
    codecs: dict
    shard: str
    start: int
    count: int
    batch_rows: int

    def fill(self) -> int:
        """Write the shard's rows (what a `--workers` pool process runs); the rows written."""
        return fill_shard(self.store, self.dims, self.codecs, self.shard, self.start,
                          self.count, self.batch_rows)

    def run(self) -> int:
        """`fill`, then the marker (what a runner's worker runs). No init_fill_worker() here:
        FAISS and torch can share the OpenMP runtime, so a thread setting made in a runner's
        worker (or an in-process runner's thread) would change the caller's torch threads."""
        written = self.fill()
        write_json(_marker(self), {**asdict(self), "written": written}, indent=None)
        return written


def _marker(task: FillTask) -> Path:
    return Path(task.store) / FILL_MARKERS / f"{task.start:012d}.json"


def check_fill_markers(tasks: list[FillTask]) -> list[FillTask]:
    """The tasks of `tasks` without a marker saying all their rows were written (empty: the
    store is complete)."""
    missing = []
    for task in tasks:
        try:
            record = json.loads(_marker(task).read_text())
        except (OSError, ValueError):
            missing.append(task)
            continue
        if (record.get("shard"), record.get("written")) != (task.shard, task.count):
            missing.append(task)
    return missing
