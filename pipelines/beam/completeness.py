"""Proof that an extract job's output is complete: every input video has exactly one row.

Run after the pipeline on every runner (a runner that drops elements must never yield a silent
partial result): the video ids of the committed shards (from their commit records,
eercf_core.files.commits: O(shards), no rows read) are compared with the inputs. A version 3
shard without a valid record does not count (shards from before records: their id column).
Rows of videos that are not inputs of this run (an earlier run into the same directory) are
allowed; a missing or duplicated input fails the job.
"""
from __future__ import annotations

import collections
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from eercf_core.files import commits
from eercf_core.files.id_digests import DigestCollector, IdDigests, batches

SHOWN_IDS = 5  # ids named in a failure message


@dataclass
class Completeness:
    """What `check_complete` found: `missing` input ids without a row, `duplicated` input ids
    with more than one row (id -> the shards holding them)."""

    inputs: int
    missing: list[str] = field(default_factory=list)
    duplicated: dict[str, list[str]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.missing and not self.duplicated

    def message(self, output: str) -> str:
        """One line naming how many inputs are missing/duplicated and a few of their ids."""
        parts = []
        if self.missing:
            parts.append(f"{len(self.missing)} of {self.inputs} input videos have no row "
                         f"({_some(self.missing)})")
        if self.duplicated:
            shown = "; ".join(f"{vid!r} in {paths}" for vid, paths
                              in list(self.duplicated.items())[:SHOWN_IDS])
            parts.append(f"{len(self.duplicated)} have more than one row ({shown}"
                         f"{' ...' if len(self.duplicated) > SHOWN_IDS else ''})")
        return f"output {output} is incomplete: " + "; ".join(parts)

    def to_dict(self) -> dict:
        return {"complete": self.ok, "inputs": self.inputs, "missing": len(self.missing),
                "missing_examples": self.missing[:SHOWN_IDS],
                "duplicated": len(self.duplicated),
                "duplicated_examples": list(self.duplicated)[:SHOWN_IDS]}


def _some(ids: list[str]) -> str:
    return "e.g. " + ", ".join(repr(i) for i in ids[:SHOWN_IDS]) + (
        " ..." if len(ids) > SHOWN_IDS else "")


def shard_video_ids(output: str) -> Iterable[tuple[str, str]]:
    """(video_id, shard path) for every row of every committed shard under `output`."""
    counted, _ = commits.committed_shards(output)
    for shard, columns in counted:
        for video_id in columns["video_id"]:
            yield video_id, shard


def check_complete(output: str, video_ids: Iterable[str]) -> Completeness:
    """Compare the rows under `output` with the input `video_ids` (see module docstring)."""
    expected = list(video_ids)
    collector = DigestCollector()
    for video_id, _ in shard_video_ids(output):
        collector.add(video_id)
    return complete_from(output, collector.finish(), IdDigests.of(expected), lambda: expected)


def complete_from(output: str, rows: IdDigests, inputs: IdDigests,
                  video_ids: Callable[[], Iterable[str]]) -> Completeness:
    """`check_complete` from digests (eercf_core.files.id_digests): `rows`, the ids of every
    committed row (e.g. from pipelines.beam.resume.scan_records), against `inputs`, the input
    ids'; one vectorised lookup, 16 bytes per id. Only when some input is missing or has more
    than one row are the inputs streamed again (`video_ids()`) to name them, and for a repeat
    the records read again to name the shards."""
    counts = rows.counts_of(inputs.unique)
    if not (counts == 0).any() and not (counts > 1).any():
        return Completeness(inputs=inputs.total)
    missing, repeated = [], []
    for batch in batches(video_ids()):
        found = rows.counts(batch)
        missing += [vid for vid, count in zip(batch, found) if count == 0]
        repeated += [vid for vid, count in zip(batch, found) if count > 1]
    duplicated: dict[str, list[str]] = {}
    if repeated:
        wanted = set(repeated)
        where: dict[str, list[str]] = collections.defaultdict(list)
        for video_id, path in shard_video_ids(output):
            if video_id in wanted:
                where[video_id].append(path)
        duplicated = {vid: where[vid] for vid in repeated if len(where[vid]) > 1}
    return Completeness(inputs=inputs.total, missing=missing, duplicated=duplicated)
