"""Progress of an extract job seen from the launcher, on any runner: a thread that watches the
output's commit records while the pipeline runs.

On the in-process runner the shard writer logs progress lines itself; on Dask, Dataflow or any
remote runner those lines stay in the workers' logs, and the launcher was silent until the job
ended. The watcher lists the output every `every` seconds, reads only the commit records it has
not seen (eercf_core.files.commits: each is read once, O(new shards) per poll), and logs the
job's `Progress` line: done/total videos, rate, failures, ETA.
"""
from __future__ import annotations

import logging
import threading
from types import TracebackType

from eercf_core.files import commits, shards
from eercf_core.progress import Progress
from schemas import STATUS_ERROR

log = logging.getLogger(__name__)


class WatchProgress:
    """Context manager: while inside, a daemon thread logs the job's progress from the commit
    records appearing under `output` (shards committed before it started do not count).
    `total`: the videos this run has to do."""

    def __init__(self, output: str, total: int, every: float = 10.0, job: str = "extract"):
        self.output, self.every = output, every
        self.progress = Progress(job, total, "videos", every=0.0, logger=log)
        self.seen = set(shards.list_shards(output))
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, name="eercf-watch-progress",
                                       daemon=True)

    def poll(self) -> int:
        """Count the rows of newly committed shards and log the progress line; returns how
        many shards were new."""
        new = rows = failed = 0
        for shard in shards.list_shards(self.output):
            if shard in self.seen:
                continue
            try:
                record = commits.read_valid_record(shard)
            except commits.InvalidRecord:
                continue  # not committed yet: looked at again next time
            self.seen.add(shard)
            new += 1
            statuses = record.columns["status"]
            rows += len(statuses)
            failed += sum(s == STATUS_ERROR for s in statuses)
        self.progress.add(rows, failed=failed, force=True)
        return new

    def _run(self) -> None:
        while not self.stopped.wait(self.every):
            try:
                self.poll()
            except Exception as exc:  # a flaky listing must never stop the job
                log.debug("progress watch: %s", exc)

    def __enter__(self) -> WatchProgress:
        self.thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.stopped.set()
        self.thread.join(timeout=self.every + 5)
