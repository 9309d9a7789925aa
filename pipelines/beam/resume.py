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

import pyarrow.compute as pc

from eercf_core.errors import UserInputError
from eercf_core.files import commits, paths, shards
from eercf_core.files.atomic import write_json
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


def scan_output(output: str, dims: FeatureDims, model_id: str, checkpoint_sha256: str
                ) -> dict[str, tuple[str, str]]:
    """video_id -> (status, shard path) over the committed shards under `output`, from their
    commit records (see module docstring for shards without a valid one).

    Raises UserInputError when a shard was made by another model or with other dims: one output
    directory holds the features of one model.
    """
    done: dict[str, tuple[str, str]] = {}
    for path in shards.list_shards(output):
        try:
            record: commits.CommitRecord | None = commits.read_valid_record(path)
        except commits.InvalidRecord as exc:
            record = _recover(path, exc.reason)
        if record is None:
            continue
        identity = record.identity
        if identity != (dims, model_id, checkpoint_sha256):
            raise UserInputError(
                f"{path} holds features of model {identity[1]!r} (weights "
                f"{identity[2][:12]}, dims {identity[0]}), this run uses {model_id!r} "
                f"(weights {checkpoint_sha256[:12]}, dims {dims}); use a different --output")
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
    counts: collections.Counter = collections.Counter()
    causes: dict[str, list[str]] = {}
    warnings: dict[str, list[str]] = {}
    counted, uncommitted = commits.committed_shards(output)
    for _, table in counted:
        counts.update(table["status"])
        for i, status in enumerate(table["status"]):
            if status == STATUS_ERROR:
                error = table["error"][i] or ""
                cause = table["error_cause"][i] or error_causes.classify_message(error)
                causes.setdefault(cause, []).append(error)
            elif status == STATUS_OK and table["warning"][i]:
                kind = table["warning"][i].split(":", 1)[0]
                warnings.setdefault(kind, []).append(table["video_id"][i])
    by_count = sorted(causes.items(), key=lambda item: (-len(item[1]), item[0]))
    summary = {
        "videos": sum(counts.values()), "by_status": dict(sorted(counts.items())),
        "shards": len(counted),
        "errors_by_cause": {cause: {"count": len(messages), "examples": messages[:examples]}
                            for cause, messages in by_count},
        "warnings": {kind: {"count": len(ids), "examples": ids[:examples]}
                     for kind, ids in sorted(warnings.items())},
        **({"uncommitted_shards": uncommitted} if uncommitted else {}),
        **(extra or {}),
    }
    write_json(f"{output.rstrip('/')}/{SUMMARY_NAME}", summary)
    return summary
