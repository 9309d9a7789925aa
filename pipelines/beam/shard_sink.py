"""Shards, resume and reporting for `eercf extract`.

Resume: the pending videos are cut into chunks of `--shard-size`; a chunk becomes one shard,
named by a hash of its video ids and written atomically (eercf_core.files.shards). A rerun lists the
finished shards, reads their `video_id`/`status` columns and skips those videos, so a run killed
at any moment loses at most the unfinished chunks and never writes a row twice.
`--retry-errors` first removes error rows from the finished shards (each shard rewritten
atomically), which makes those videos pending again.
"""
from __future__ import annotations

import collections
import hashlib
import logging
import os
import socket
import time
from collections.abc import Iterable

import apache_beam as beam
import fsspec
import pyarrow.compute as pc

from eercf_core.errors import UserInputError
from eercf_core.files import shards
from eercf_core.files.atomic import write_json
from eercf_core.files.inputs import VideoRef
from eercf_core.progress import Progress
from eercf_core.video import error_causes
from schemas import STATUS_ERROR, STATUS_OK, FeatureDims

log = logging.getLogger(__name__)
SUMMARY_NAME = "summary.json"


def shard_name(video_ids: Iterable[str]) -> str:
    """Deterministic shard file name for a set of video ids."""
    digest = hashlib.sha1("\n".join(sorted(video_ids)).encode()).hexdigest()[:20]
    return f"part-{digest}{shards.SHARD_SUFFIX}"


def plan_chunks(refs: list[VideoRef], shard_size: int) -> list[tuple[str, list[VideoRef]]]:
    """Cut `refs` (input order) into chunks of at most `shard_size`, each with its shard name."""
    if shard_size < 1:
        raise UserInputError(f"--shard-size must be >= 1, got {shard_size}")
    chunks = [refs[i:i + shard_size] for i in range(0, len(refs), shard_size)]
    return [(shard_name(r.video_id for r in chunk), chunk) for chunk in chunks]


def scan_output(output: str, dims: FeatureDims, model_id: str, checkpoint_sha256: str
                ) -> dict[str, tuple[str, str]]:
    """video_id -> (status, shard path) over the finished shards under `output`.

    Every shard is read in full, so every page checksum is verified: a damaged shard is moved
    aside (`shards.move_aside`, with a warning) and its videos count as not done, so this run
    extracts them again. Raises ValueError when a shard was made by another model or with
    other dims: one output directory holds the features of one model.
    """
    done: dict[str, tuple[str, str]] = {}
    for path in shards.list_shards(output):
        try:
            identity = shards.shard_identity(path)
            if identity != (dims, model_id, checkpoint_sha256):
                raise UserInputError(
                    f"{path} holds features of model {identity[1]!r} (weights "
                    f"{identity[2][:12]}, dims {identity[0]}), this run uses {model_id!r} "
                    f"(weights {checkpoint_sha256[:12]}, dims {dims}); use a different --output")
            rows = [(video_id, status) for batch in shards.iter_shard_batches(path, None, 64)
                    for video_id, status in zip(batch.column("video_id").to_pylist(),
                                                batch.column("status").to_pylist())]
        except shards.CorruptShardError as exc:
            log.warning("%s; moved aside to %s, its videos are extracted again", exc,
                        shards.move_aside(path))
            continue
        for video_id, status in rows:
            if video_id in done:
                log.warning("video %r appears in two shards (%s, %s)", video_id,
                            done[video_id][1], path)
            done[video_id] = (status, path)
    return done


def drop_error_rows(done: dict[str, tuple[str, str]], dims: FeatureDims, model_id: str,
                    checkpoint_sha256: str) -> int:
    """Rewrite each shard holding error rows without them (delete it if nothing is left).

    Returns the number of rows removed. Each rewrite is atomic; a kill between rewrites only
    leaves some errors in place, which the next `--retry-errors` run removes.
    """
    by_shard = collections.Counter(path for status, path in done.values()
                                   if status == STATUS_ERROR)
    removed = 0
    for path, count in sorted(by_shard.items()):
        table = shards.read_shard(path)
        kept = table.filter(pc.not_equal(table.column("status"), STATUS_ERROR))
        fs, target = fsspec.core.url_to_fs(path)
        if kept.num_rows == 0:
            fs.rm(target)
        else:
            rows = kept.to_pylist()
            for row, quality in zip(rows, shards.decode_qualities(kept)):
                row["decode_quality"] = quality  # a version 1 shard is rewritten as the latest
            shards.write_shard(path, rows, dims, model_id, checkpoint_sha256)
        removed += count
    return removed


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
        shards.write_shard(path, rows, self.dims, self.model_id, self.checkpoint_sha256,
                           metadata={shards.WRITER_KEY: f"{socket.gethostname()}:{os.getpid()}"})
        return path

    def process(self, element):
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


def summarize(output: str, examples: int = 3, extra: dict | None = None) -> dict:
    """Counts by status, errors grouped by cause and warnings over all shards in `output`, also
    written as `summary.json` beside the shards (atomically).

    `errors_by_cause`: cause -> {"count", "examples": up to `examples` error details}, most
    frequent first (causes: eercf_core.video.error_causes; version 1 shards: derived from the text).
    `warnings`: kind (e.g. "partly decoded") -> {"count", "examples": video ids}.
    """
    counts: collections.Counter = collections.Counter()
    causes: dict[str, list[str]] = {}
    warnings: dict[str, list[str]] = {}
    paths = shards.list_shards(output)
    for path in paths:
        table = _summary_columns(path)
        counts.update(table["status"])
        for i, status in enumerate(table["status"]):
            if status == STATUS_ERROR:
                error = table["error"][i] or ""
                cause = table["error_cause"][i] or error_causes.classify_message(error)
                causes.setdefault(cause, []).append(error)
            elif table["warning"][i]:
                kind = table["warning"][i].split(":", 1)[0]
                warnings.setdefault(kind, []).append(table["video_id"][i])
    by_count = sorted(causes.items(), key=lambda item: (-len(item[1]), item[0]))
    summary = {
        "videos": sum(counts.values()), "by_status": dict(sorted(counts.items())),
        "shards": len(paths),
        "errors_by_cause": {cause: {"count": len(messages), "examples": messages[:examples]}
                            for cause, messages in by_count},
        "warnings": {kind: {"count": len(ids), "examples": ids[:examples]}
                     for kind, ids in sorted(warnings.items())},
        **(extra or {}),
    }
    write_json(f"{output.rstrip('/')}/{SUMMARY_NAME}", summary)
    return summary


def _summary_columns(path: str) -> dict[str, list]:
    """video_id, status, error, error_cause, warning of a shard as lists (None where a version 1
    shard lacks the column)."""
    wanted = ["video_id", "status", "error", "error_cause", "warning"]
    table = shards.read_shard(path, columns=wanted)  # leaves out columns an old shard lacks
    return {c: table.column(c).to_pylist() if c in table.column_names else [None] * table.num_rows
            for c in wanted}
