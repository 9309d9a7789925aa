"""One progress line for every long job: done/total, rate, failures and ETA.

    extract: 120/1000 videos (12%), 3.52 videos/s, 41.8 frames/s, 2 failed, eta 4m10s

Every job that loops over many items (extract's shard sink, query blocks, training decode and
steps, synth, the fine-store fill of build-index) counts through a `Progress` and logs through
it, so the lines read alike and the ETA is computed one way: remaining items over the rate so
far. A line is logged at most every `every` seconds, and always for the last item.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable

_log = logging.getLogger(__name__)


def format_seconds(seconds: float) -> str:
    """A duration for a progress line: `45s`, `4m10s`, `2h05m`."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


class Progress:
    """Counts finished items of one job and logs a line every `every` seconds.

    `job` names the job (`extract`), `unit` the items (`videos`), `total` how many there are.
    `add(count, failed=..., **rates)` records `count` more items, `failed` of them failures
    (shown when `show_failed`), and extra quantities whose rates are shown too (`frames=12`
    -> `41.8 frames/s`). `detail` appends job-specific text to a line (training's loss).
    `already` items were done before this run (a resumed job): they count towards done/total
    but not towards the rate. `started` may be a wall-clock time from another process (a Beam
    worker counting a job that began in the launcher); `clock` is injectable for tests.
    """

    def __init__(self, job: str, total: int, unit: str = "videos", every: float = 10.0,
                 started: float | None = None, show_failed: bool = True, already: int = 0,
                 logger: logging.Logger | None = None,
                 clock: Callable[[], float] = time.time):
        self.job, self.total, self.unit, self.every = job, total, unit, every
        self.show_failed = show_failed
        self.log = logger or _log
        self.clock = clock
        self.started = clock() if started is None else started
        self.last = self.clock()
        self.already = self.done = already
        self.failed = 0
        self.amounts: dict[str, float] = {}

    def add(self, count: int = 1, failed: int = 0, detail: str = "", force: bool = False,
            **amounts: float) -> None:
        """Record `count` finished items (`failed` of them failed); log when due or finished."""
        self.done += count
        self.failed += failed
        for name, amount in amounts.items():
            self.amounts[name] = self.amounts.get(name, 0.0) + amount
        now = self.clock()
        if force or now - self.last >= self.every or self.done >= self.total:
            self.last = now
            self.log.info("%s", self.line(detail))

    def rate(self) -> float:
        """Items per second since the start."""
        return (self.done - self.already) / max(self.clock() - self.started, 1e-9)

    def eta_seconds(self) -> float | None:
        """Seconds left at the rate so far (None before the first item)."""
        rate = self.rate()
        return None if rate <= 0 else max(self.total - self.done, 0) / rate

    def line(self, detail: str = "") -> str:
        """`job: done/total unit (pct%), rate unit/s[, extra rates][, N failed], eta T`."""
        elapsed = max(self.clock() - self.started, 1e-9)
        share = 100 * self.done / max(self.total, 1)
        parts = [f"{self.job}: {self.done}/{self.total} {self.unit} ({share:.0f}%)",
                 f"{(self.done - self.already) / elapsed:.2f} {self.unit}/s"]
        parts += [f"{amount / elapsed:.1f} {name}/s" for name, amount in self.amounts.items()]
        if self.show_failed:
            parts.append(f"{self.failed} failed")
        eta = self.eta_seconds()
        parts.append(f"done in {format_seconds(elapsed)}" if self.done >= self.total else
                     f"eta {format_seconds(eta) if eta is not None else '?'}")
        text = ", ".join(parts)
        return f"{text} | {detail}" if detail else text
