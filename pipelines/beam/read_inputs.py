"""The input end of the extract graph: pending videos read inside the pipeline, from a plan file.

The launcher streams the inputs once more after resume (eercf_core.files.inputs.iter_manifest:
nothing per video kept in memory), writes the pending videos to a plan file beside the shards
(`<output>/.eercf-plan-<pid>-<random>.jsonl`, one `[video_id, uri]` JSON array per line, cut
into chunks of `--shard-size`) and an index of the chunks' byte ranges (`...ranges.json`:
`[shard name, start, end]` per chunk). The pipeline graph holds only those two URLs and a
number of parts P (at most `MAX_PARTS`), so its size does not grow with the corpus (a
`beam.Create` of every VideoRef cost 142 B per video and passed Dataflow's ~20 MB graph limit
near 150k videos):

    Parts (Create(range(P))) -> ChunksOfPart (chunk i goes to part i mod P) -> ReadChunk
    (seek to the chunk's range, parse its lines) -> (shard name, [VideoRef])

P partitions the work on runners that do not rebalance (Beam's Dask runner partitions the Create);
the graph's Distribute step reshuffles the chunks after. The plan lives on the output's storage,
which every worker sees; it is deleted when the job ends.
"""
from __future__ import annotations

import functools
import json
import os
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import apache_beam as beam

from eercf_core.files import paths
from eercf_core.files.atomic import open_atomic, write_json
from eercf_core.files.inputs import VideoRef
from pipelines.beam.resume import shard_name

MAX_PARTS = 1024
PLAN_PREFIX = ".eercf-plan-"


@dataclass(frozen=True)
class Plan:
    """A written plan: `path` (JSONL of pending videos), `ranges` (its chunks' byte ranges),
    `videos` and `chunks` counted, `parts` = min(chunks, MAX_PARTS)."""

    path: str
    ranges: str
    videos: int
    chunks: int

    @property
    def parts(self) -> int:
        return max(1, min(self.chunks, MAX_PARTS))

    def remove(self) -> None:
        """Delete the plan files (the job is over)."""
        for url in (self.path, self.ranges):
            fs, target = paths.filesystem(url)
            if fs.exists(target):
                fs.rm(target)


def write_plan(output: str, pending: Iterable[VideoRef], shard_size: int) -> Plan:
    """Write the pending videos (input order, streamed) as chunks of `shard_size` into a plan
    under `output`; memory holds one chunk at a time."""
    # a name unique to this plan: workers cache a plan's ranges by its URL
    base = f"{output.rstrip('/')}/{PLAN_PREFIX}{os.getpid()}-{uuid.uuid4().hex[:12]}"
    path, ranges_path = f"{base}.jsonl", f"{base}.ranges.json"
    ranges: list[tuple[str, int, int]] = []
    videos = 0
    with open_atomic(path, "wb") as handle:
        offset = 0
        chunk: list[VideoRef] = []

        def flush() -> None:
            nonlocal offset
            data = b"".join(json.dumps([r.video_id, r.uri]).encode() + b"\n" for r in chunk)
            handle.write(data)
            ranges.append((shard_name(r.video_id for r in chunk), offset, offset + len(data)))
            offset += len(data)
            chunk.clear()

        for ref in pending:
            chunk.append(ref)
            videos += 1
            if len(chunk) == shard_size:
                flush()
        if chunk:
            flush()
    write_json(ranges_path, ranges, indent=None)
    return Plan(path, ranges_path, videos, len(ranges))


@functools.lru_cache(maxsize=4)
def _ranges(url: str) -> list[tuple[str, int, int]]:
    """The chunk ranges of a plan, read once per worker process."""
    with paths.open_file(url, "rb") as handle:
        return [(str(name), int(start), int(end)) for name, start, end in json.load(handle)]


def chunks_of_part(part: int, ranges_url: str, parts: int) -> Iterator[tuple[str, int, int]]:
    """The chunk ranges (shard name, start, end) that belong to `part` (chunk i -> i mod P)."""
    yield from _ranges(ranges_url)[part::parts]


def read_chunk(chunk: tuple[str, int, int], plan_url: str) -> tuple[str, list[VideoRef]]:
    """(shard name, its VideoRefs) read from the plan file's byte range."""
    name, start, end = chunk
    with paths.open_file(plan_url, "rb") as handle:
        handle.seek(start)
        data = handle.read(end - start)
    refs = [VideoRef(*json.loads(line)) for line in data.splitlines()]
    return name, refs


class ReadPlan(beam.PTransform):
    """PBegin -> (shard name, [VideoRef]) per chunk of a `Plan` (see module docstring)."""

    def __init__(self, plan: Plan):
        super().__init__()
        self.plan = plan

    def expand(self, pbegin: beam.pvalue.PBegin) -> beam.PCollection:
        plan = self.plan
        return (pbegin
                | "Parts" >> beam.Create(list(range(plan.parts)))
                | "ChunksOfPart" >> beam.FlatMap(chunks_of_part, plan.ranges, plan.parts)
                | "ReadChunk" >> beam.Map(read_chunk, plan.path))
