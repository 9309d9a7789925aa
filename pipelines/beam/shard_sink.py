"""The shard writer of `eercf extract` (WriteShardsFn) and its progress lines.

Each chunk of videos becomes one shard plus its commit record (eercf_core.files.commits); resume,
`--retry-errors` and the summary live in pipelines.beam.resume (no Beam import there, so a rerun
with nothing to do never loads Beam), re-exported here.
"""
from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Iterable

import apache_beam as beam

from eercf_core.files import commits, shards
from eercf_core.progress import Progress
from pipelines.beam.resume import (  # noqa: F401  (re-exported: the names' old home)
    SUMMARY_NAME,
    drop_error_rows,
    plan_chunks,
    scan_output,
    shard_name,
    summarize,
)
from schemas import STATUS_OK, FeatureDims

log = logging.getLogger(__name__)


def count_row(progress: Progress, row: dict) -> None:
    """Count one written row in the extract job's `Progress`: a failure for an error row,
    its real (unmasked) frames for an ok row (shown as frames/s)."""
    ok = row["status"] == STATUS_OK
    frames = int(sum(bool(x) for x in row["frame_mask"])) if ok else 0
    progress.add(1, failed=0 if ok else 1, frames=frames)


class WriteShardsFn(beam.DoFn):
    """Buffers (shard, shard_count, row) elements; writes a shard from process() once all its
    rows arrived, and emits its path.

    All rows of a chunk come out of one decode call, so they reach this DoFn in one bundle. A
    shard still incomplete at the end of a bundle (a runner that splits bundles) is written in
    finish_bundle under a name derived from the rows it has, which keeps resume exact; nothing
    is emitted there (runners may drop bundle-end output), and the job's completeness check
    reads the shards themselves. Each shard records the worker that wrote it (host:pid,
    `shards.WRITER_KEY`).
    """

    def __init__(self, output: str, dims: FeatureDims, model_id: str, checkpoint_sha256: str,
                 total: int, progress_seconds: float = 10.0, started: float | None = None):
        self.output, self.dims = output.rstrip("/"), dims
        self.model_id, self.checkpoint_sha256 = model_id, checkpoint_sha256
        self.total, self.progress_seconds = total, progress_seconds
        self.started = started or time.time()
        self.rows_written = beam.metrics.Metrics.counter("eercf_extract", "rows_written")
        self.errors = beam.metrics.Metrics.counter("eercf_extract", "error_rows")

    def setup(self) -> None:
        self.progress = Progress("extract", self.total, "videos", self.progress_seconds,
                                 self.started, logger=log)

    def start_bundle(self) -> None:
        self.buffers: dict[str, list[dict]] = {}
        self.expected: dict[str, int] = {}

    def _write(self, name: str, rows: list[dict]) -> str:
        path = f"{self.output}/{name}"
        commits.commit_shard(path, rows, self.dims, self.model_id, self.checkpoint_sha256,
                             metadata={shards.WRITER_KEY: f"{socket.gethostname()}:{os.getpid()}"})
        return path

    def process(self, element: tuple[str, int, dict]) -> Iterable[str]:
        name, count, row = element
        self.buffers.setdefault(name, []).append(row)
        self.expected[name] = count
        count_row(self.progress, row)
        self.rows_written.inc()
        if row["status"] != STATUS_OK:
            self.errors.inc()
        if len(self.buffers[name]) == count:
            yield self._write(name, self.buffers.pop(name))

    def finish_bundle(self) -> None:
        for name, rows in self.buffers.items():
            log.warning("shard %s incomplete at bundle end (%d/%d rows); writing what it has",
                        name, len(rows), self.expected[name])
            self._write(shard_name(r["video_id"] for r in rows), rows)
        self.buffers = {}


