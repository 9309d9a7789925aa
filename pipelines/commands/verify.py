"""`eercf verify`: check every feature shard of an extract output fully, in parallel.

    eercf verify feats/ [--workers 8]

For each shard: its commit record is valid (eercf_core.files.commits), the CRC-32 of the whole
file equals the recorded one, and every Parquet page checksum holds. Shards written before commit
records (schema 1-2) are checked page by page and reported as uncommitted (a rerun of extract
commits them). Progress is logged every --progress-seconds. Exit 0 when every shard is intact and
committed, 1 when any is corrupt or uncommitted (each named, with the reason, on stdout).
Resume and the completeness check trust a valid record without reading rows; this is the deep
check for those who want it (build-index verifies page checksums as it reads anyway).
"""
from __future__ import annotations

import argparse
import logging
import os
from concurrent.futures import ThreadPoolExecutor

from eercf_core.errors import UserInputError
from eercf_core.files import commits, paths, shards
from eercf_core.progress import Progress
from pipelines.flags import add_output, add_workers, command_parser, parse_args, positive_float

log = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    p = command_parser("verify", __doc__)
    p.add_argument("outputs", nargs="*", metavar="OUTPUT",
                   help="extract output directories (local or fsspec URLs)")
    add_output(p, required=False, help="an extract output directory (same as OUTPUT)")
    add_workers(p, os.cpu_count() or 1, "shards checked at once (threads)")
    p.add_argument("--progress-seconds", type=positive_float, default=10.0,
                   help="seconds between progress lines")
    return p


def check_shard(shard: str) -> tuple[str, int, str | None]:
    """(shard, bytes, problem or None) for one shard (see module docstring)."""
    try:
        record = commits.verify_committed(shard)
        return shard, record.size, None
    except commits.InvalidRecord as exc:
        reason = exc.reason
    except shards.CorruptShardError as exc:
        return shard, 0, str(exc)
    try:  # no valid record: are its pages intact at least?
        version = shards.shard_version(shard)
        shards.verify_shard(shard)
    except (shards.CorruptShardError, UserInputError) as exc:
        return shard, 0, str(exc)
    hint = ("written before commit records; `eercf extract` on this output commits it"
            if version < 3 else "unfinished (a writer stopped before committing it); "
            "`eercf extract` on this output redoes it")
    return shard, 0, f"{shard}: {reason}: {hint}"


def verify(roots: list[str], workers: int, progress_seconds: float = 10.0) -> dict[str, str]:
    """Check every shard under `roots` with `workers` threads; returns shard -> problem for
    the shards that are not intact and committed."""
    paths = [path for root in roots for path in shards.list_shards(root)]
    problems: dict[str, str] = {}
    log.info("verify: %d shards in %s, %d at a time", len(paths), ", ".join(roots), workers)
    progress = Progress("verify", len(paths), "shards", progress_seconds, logger=log)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for shard, size, problem in pool.map(check_shard, paths):
            if problem:
                problems[shard] = problem
                log.error("%s", problem)
            progress.add(1, failed=1 if problem else 0, MB=size / 1e6)
    return problems


def run(argv: list[str] | None = None) -> int:
    """Verify the shards of each output; 0 when all are intact and committed, else 1."""
    parser = build_parser()
    args = parse_args(parser, argv)
    given = [*args.outputs, *([args.output] if args.output else [])]
    if not given:
        parser.error("give the extract output to verify: eercf verify OUTPUT")
    roots = [paths.absolute(root) for root in given]
    for root in roots:
        if not shards.list_shards(root):
            raise UserInputError(f"{root}: no feature shards (*{shards.SHARD_SUFFIX}) there")
    problems = verify(roots, args.workers, args.progress_seconds)
    total = sum(len(shards.list_shards(root)) for root in roots)
    if problems:
        print(f"verify: {len(problems)} of {total} shards are corrupt or uncommitted:")
        for shard, problem in sorted(problems.items()):
            print(f"  {shard}: {problem}")
        return 1
    print(f"verify: all {total} shards intact and committed")
    return 0
