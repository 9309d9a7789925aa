"""Resume, `--retry-errors` and the summary of `eercf extract`, from commit records.

Resume: the pending videos are cut into chunks of `--shard-size`; a chunk becomes one shard,
named by a hash of its video ids, written atomically and then committed with a small record
(eercf_core.files.commits). A rerun lists the shards and reads only their records (O(shards),
not O(bytes)): the videos of committed shards are skipped, so a run killed at any moment loses
at most the uncommitted chunks and never writes a row twice.
A shard without a valid record (missing, truncated, or not matching the file) is never trusted:
a version 3 shard is deleted and its videos redone; a shard written before records existed
(version 1-2) is fully verified once and committed (adopted), or moved aside when damaged.
`--retry-errors` first removes error rows from the committed shards (each shard rewritten and
recommitted), which makes those videos pending again.
No Beam import here: a rerun with nothing to do needs neither Beam nor the model.
"""
from __future__ import annotations

import collections
import hashlib
import logging
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pyarrow.compute as pc

from eercf_core.errors import UserInputError
from eercf_core.files import commits, paths, shards
from eercf_core.files.atomic import write_json
from eercf_core.files.id_digests import DigestCollector, IdDigests
from eercf_core.files.inputs import VideoRef
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


def _recover(shard: str, reason: str) -> commits.CommitRecord | None:
    """The record of a shard whose record was not valid (`reason`): an adopted version 1-2
    shard, or None when the shard is not trusted (deleted or moved aside; its videos redo)."""
    commits.remove_record(shard)
    try:
        return commits.adopt_legacy(shard)
    except shards.CorruptShardError as exc:
        log.warning("%s; moved aside to %s, its videos are extracted again", exc,
                    shards.move_aside(shard))
    except commits.InvalidRecord as exc:
        fs, target = paths.filesystem(shard)
        fs.rm(target)
        log.warning("%s (%s): deleted, its videos are extracted again", exc, reason)
    return None


def _trusted_record(path: str, identity: tuple[FeatureDims, str, str]
                    ) -> commits.CommitRecord | None:
    """The shard's valid (or recovered) record, None when the shard is not trusted; raises
    UserInputError when it is another model's or has other dims."""
    try:
        record: commits.CommitRecord | None = commits.read_valid_record(path)
    except commits.InvalidRecord as exc:
        record = _recover(path, exc.reason)
    if record is not None:
        _check_identity(path, record.identity, identity)
    return record


def _check_identity(path: str, found: tuple[FeatureDims, str, str],
                    wanted: tuple[FeatureDims, str, str]) -> None:
    """UserInputError when a shard's (dims, model_id, weights) are not this run's."""
    if found != wanted:
        raise UserInputError(
            f"{path} holds features of model {found[1]!r} (weights "
            f"{found[2][:12]}, dims {found[0]}), this run uses {wanted[1]!r} "
            f"(weights {wanted[2][:12]}, dims {wanted[0]}); use a different --output")


def scan_output(output: str, dims: FeatureDims, model_id: str, checkpoint_sha256: str
                ) -> dict[str, tuple[str, str]]:
    """video_id -> (status, shard path) over the committed shards under `output`, from their
    commit records (see module docstring for shards without a valid one).

    Raises UserInputError when a shard was made by another model or with other dims: one output
    directory holds the features of one model.
    """
    done: dict[str, tuple[str, str]] = {}
    for path in shards.list_shards(output):
        record = _trusted_record(path, (dims, model_id, checkpoint_sha256))
        if record is None:
            continue
        for video_id, status in zip(record.columns["video_id"], record.columns["status"]):
            if video_id in done:
                log.warning("video %r appears in two shards (%s, %s)", video_id,
                            done[video_id][1], path)
            done[video_id] = (status, path)
    return done


def drop_error_rows(done: dict[str, tuple[str, str]], dims: FeatureDims, model_id: str,
                    checkpoint_sha256: str) -> int:
    """Rewrite each shard holding error rows without them (delete it if nothing is left), and
    commit it again. Returns the number of rows removed. A kill during a rewrite leaves that
    shard uncommitted, so the next run redoes its videos.
    """
    by_shard = collections.Counter(path for status, path in done.values()
                                   if status == STATUS_ERROR)
    removed = 0
    for path, count in sorted(by_shard.items()):
        table = shards.read_shard(path)
        kept = table.filter(pc.not_equal(table.column("status"), STATUS_ERROR))
        if kept.num_rows == 0:
            commits.remove_record(path)
            fs, target = paths.filesystem(path)
            fs.rm(target)
        else:
            rows = kept.to_pylist()
            for row, quality in zip(rows, shards.decode_qualities(kept)):
                row["decode_quality"] = quality  # an old shard is rewritten as the latest
            commits.commit_shard(path, rows, dims, model_id, checkpoint_sha256)
        removed += count
    return removed


class SummaryCounter:
    """The counts of `summarize`, accumulated shard by shard (`add` each shard's row columns):
    per status, per error cause and per warning kind, with at most `examples` examples each
    (memory does not grow with the output)."""

    def __init__(self, examples: int = 3):
        self.examples = examples
        self.counts: collections.Counter = collections.Counter()
        self.causes: dict[str, list] = {}  # cause -> [count, examples]
        self.warnings: dict[str, list] = {}  # kind -> [count, example ids]

    @staticmethod
    def _count(groups: dict[str, list], key: str, example: str, examples: int) -> None:
        group = groups.setdefault(key, [0, []])
        group[0] += 1
        if len(group[1]) < examples:
            group[1].append(example)

    def add(self, columns: dict[str, list]) -> None:
        """Count one shard's rows (commits.ROW_FIELDS lists)."""
        statuses = columns["status"]
        self.counts.update(statuses)
        for i, status in enumerate(statuses):
            if status == STATUS_ERROR:
                error = columns["error"][i] or ""
                cause = columns["error_cause"][i] or error_causes.classify_message(error)
                self._count(self.causes, cause, error, self.examples)
            elif status == STATUS_OK and columns["warning"][i]:
                kind = columns["warning"][i].split(":", 1)[0]
                self._count(self.warnings, kind, columns["video_id"][i], self.examples)

    def write(self, output: str, shards_counted: int, uncommitted: list[str],
              extra: dict | None = None) -> dict:
        """The summary (see `summarize`), also written as `summary.json` (atomically)."""
        by_count = sorted(self.causes.items(), key=lambda item: (-item[1][0], item[0]))
        summary = {
            "videos": sum(self.counts.values()), "by_status": dict(sorted(self.counts.items())),
            "shards": shards_counted,
            "errors_by_cause": {cause: {"count": count, "examples": examples}
                                for cause, (count, examples) in by_count},
            "warnings": {kind: {"count": count, "examples": examples}
                         for kind, (count, examples) in sorted(self.warnings.items())},
            **({"uncommitted_shards": uncommitted} if uncommitted else {}),
            **(extra or {}),
        }
        write_json(f"{output.rstrip('/')}/{SUMMARY_NAME}", summary)
        return summary


def summarize(output: str, examples: int = 3, extra: dict | None = None) -> dict:
    """Counts by status, errors grouped by cause and warnings over the committed shards in
    `output` (from their commit records, no feature rows read; shards written before records
    from their small columns), also written as `summary.json` beside
    the shards (atomically).

    `errors_by_cause`: cause -> {"count", "examples": up to `examples` error details}, most
    frequent first (causes: eercf_core.video.error_causes; version 1 shards: derived from the text).
    `warnings`: kind (e.g. "partly decoded") -> {"count", "examples": video ids}.
    `uncommitted_shards`: version 3 shards without a valid record (not counted), if any.
    """
    counter = SummaryCounter(examples)
    counted, uncommitted = commits.committed_shards(output)
    for _, columns in counted:
        counter.add(columns)
    return counter.write(output, len(counted), uncommitted, extra)


@dataclass
class OutputScan:
    """One pass over an output's commit records: `ids` of every committed row (16 bytes each,
    repeats kept: eercf_core.files.id_digests), `summary` counted, `shards` that count and the
    `uncommitted` ones (a read-only scan; a resume scan deletes or adopts those)."""

    ids: IdDigests
    summary: SummaryCounter
    shards: int
    uncommitted: list[str]

    def done(self, video_ids: list[str]) -> np.ndarray:
        """Which of `video_ids` have a committed row (bool array)."""
        return self.ids.contains(video_ids)


def scan_records(output: str, identity: tuple[FeatureDims, str, str] | None = None,
                 examples: int = 3) -> OutputScan:
    """Read every shard's commit record under `output` once (O(shards), no rows): the ids and
    the summary counts, in memory that grows by 16 bytes per row.

    With `identity` (dims, model_id, checkpoint_sha256) it is resume's scan: a shard without a
    valid record is adopted (version 1-2) or deleted/moved aside (see module docstring), and a
    shard of another model or other dims is a UserInputError. Without it, nothing is changed:
    such shards are only listed in `uncommitted` (the completeness check after a run).
    """
    collector = DigestCollector()
    summary = SummaryCounter(examples)
    counted, uncommitted = 0, []
    for path in shards.list_shards(output):
        if identity is None:
            columns = commits.row_columns(path)
            if columns is None:
                uncommitted.append(path)
                continue
        else:
            record = _trusted_record(path, identity)
            if record is None:
                continue
            columns = record.columns
        collector.update(columns["video_id"])
        summary.add(columns)
        counted += 1
    ids = collector.finish()
    if ids.repeated():
        log.warning("%d video ids appear in more than one row of %s", ids.repeated(), output)
    return OutputScan(ids, summary, counted, uncommitted)
