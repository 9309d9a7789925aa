"""`eercf query` on a Beam runner (`--runner DaskRunner`, ...): blocks of queries are ranked on
the workers, each into a part file; the launcher merges the parts into the one ranked TSV.

Every worker opens the same index directory (a shared filesystem path: the fine store's rows
are read by offset) and loads the same model. A part is a complete ranked TSV of one block, written
atomically into a hidden directory beside the output (so the output's storage must be shared
too). After the pipeline every part must exist and hold top-n rows per query of its block, else
the job fails naming the lost blocks; the parts are concatenated in block order (one header),
streamed into the output (atomic rename at the end) and removed. Blocks are those of a local run,
so the merged file is byte-identical to it.
"""
from __future__ import annotations

import logging
import posixpath
from collections.abc import Iterator, Sequence

import apache_beam as beam
import fsspec

from eercf_core.files import paths
from eercf_core.files.atomic import temp_name, write_text
from eercf_core.files.text_formats import Query, ranked_lines
from pipelines.beam.query_ranker import QueryJob, ranker
from pipelines.beam.runner import run_pipeline

log = logging.getLogger(__name__)
SHOWN_BLOCKS = 5


class IncompleteOutputError(RuntimeError):
    """Some blocks of queries have no (complete) result: the runner lost work."""


def part_path(parts: str, number: int) -> str:
    return f"{parts}/part-{number:06d}.tsv"


class RankBlockFn(beam.DoFn):
    """(block number, queries) -> the path of its part file (a ranked TSV), written from
    process(). The index and model are opened once per worker process."""

    def __init__(self, job: QueryJob, parts: str):
        self.job, self.parts = job, parts

    def process(self, element: tuple[int, list[Query]]) -> Iterator[str]:
        number, block = element
        path = part_path(self.parts, number)
        write_text(path, ranked_lines(ranker(self.job).rows(block)))
        yield path


def rank_on_runner(job: QueryJob, blocks: Sequence[tuple[int, list[Query]]], output: str,
                   rows_per_query: int, beam_args: list[str]) -> None:
    """Rank `blocks` on the Beam runner `beam_args` select and write the merged TSV to `output`.

    Raises IncompleteOutputError when a block's part is missing or short.
    """
    fs, target = paths.filesystem(output)
    parent, name = posixpath.split(target)
    parts_root = posixpath.join(parent, temp_name(name) + ".parts")
    parts = paths.full_url(output, fs, parts_root)
    if paths.bucket_of(output) is None:  # object stores: no directories (nor buckets) to create
        fs.makedirs(parts_root, exist_ok=True)
    try:
        run_pipeline(lambda pipeline: (
            pipeline
            | "Blocks" >> beam.Create(list(blocks))
            | "Distribute" >> beam.Reshuffle()
            | "Rank" >> beam.ParDo(RankBlockFn(job, parts))), beam_args, work_items=len(blocks))
        paths.invalidate(parts)  # the parts were written by other processes: no cached listing
        missing = [number for number, _ in blocks if not fs.exists(part_path(parts_root, number))]
        if missing:
            raise IncompleteOutputError(
                f"{len(missing)} of {len(blocks)} query blocks have no result (blocks "
                f"{missing[:SHOWN_BLOCKS]}{' ...' if len(missing) > SHOWN_BLOCKS else ''}); the "
                f"runner lost work, {output} was not written")
        write_text(output, _merged_lines(fs, parts_root, blocks, rows_per_query))
    finally:
        try:
            fs.rm(parts_root, recursive=True)
        except FileNotFoundError:
            pass  # no part was written
        except Exception as exc:  # cleanup must never hide the run's own error
            log.warning("could not remove the temporary parts %s: %s", parts, exc)


def _merged_lines(fs: fsspec.AbstractFileSystem, parts: str,
                  blocks: Sequence[tuple[int, list[Query]]], rows_per_query: int
                  ) -> Iterator[str]:
    yield next(ranked_lines([]))  # the header
    for number, block in blocks:
        path = part_path(parts, number)
        with fs.open(path, "r", encoding="utf-8") as handle:
            next(handle, None)  # each part's own header
            count = 0
            for line in handle:
                count += 1
                yield line
        if count != len(block) * rows_per_query:
            raise IncompleteOutputError(f"{path}: {count} rows, expected {len(block)} queries x "
                                        f"{rows_per_query}")
