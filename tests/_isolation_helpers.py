"""Module-level functions for isolation tests (worker processes import them by name)."""
from __future__ import annotations

import os
import signal
import time


def behave(item: tuple[str, float]) -> str:
    """('ok', x) -> returns; ('raise', _) -> raises; ('crash', _) -> segfaults; ('hang', s)
    sleeps."""
    kind, value = item
    if kind == "raise":
        raise ValueError(f"bad item {value}")
    if kind == "crash":
        os.kill(os.getpid(), signal.SIGSEGV)
    if kind == "hang":
        time.sleep(value)
    return f"done {value}"


def pool_results_in_daemon(items: list[tuple[str, float]], results) -> None:
    """Run `behave` over `items` in an IsolatedPool and put (index, value, error) tuples on the
    `results` queue: the target of a daemonic multiprocessing.Process."""
    import multiprocessing

    from eercf_core.video.isolation import IsolatedPool

    assert multiprocessing.current_process().daemon
    with IsolatedPool(behave, workers=2, timeout=5) as pool:
        results.put(sorted((o.index, o.value, o.error) for o in pool.imap_unordered(items)))


def decode_or_misbehave(job):
    """An extract decode function (a (uri, DecodeOptions) job) whose decoder crashes on a file
    named `*crash*` (SIGSEGV) and hangs on one named `*hang*` (sleeps 60 s); other files are
    decoded by eercf_core.video.decode.decode_job."""
    from eercf_core.video.decode import decode_job

    name = os.path.basename(job[0])
    if "crash" in name:
        os.kill(os.getpid(), signal.SIGSEGV)
    if "hang" in name:
        time.sleep(60)
    return decode_job(job)
