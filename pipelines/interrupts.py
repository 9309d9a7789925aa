"""Clean shutdown of a job on Ctrl-C (SIGINT) or SIGTERM: every child process ends, one line says
how far the job got, no traceback.

`install_signal_handlers()` (done by the `eercf` command) makes SIGTERM behave like Ctrl-C: it
raises KeyboardInterrupt in the main thread, wherever the job is (inside Beam, a decode wait,
a shard write: writes are atomic, so a finished shard is never half-written). A job that knows
its progress catches it and raises `interrupted(exc, "N videos done ...")`; the command prints
`eercf <job>: interrupted; ...` and exits 128 + the signal number (130 for SIGINT, 143 for
SIGTERM). Further signals during that clean-up are ignored, so clean-up runs to the end.
"""
from __future__ import annotations

import logging
import signal
from types import FrameType

log = logging.getLogger(__name__)

_received: list[int] = []  # signal numbers received since the handlers were installed


class JobInterrupted(KeyboardInterrupt):
    """A job stopped by a signal after its children were stopped; str() is the one-line report."""

    def __init__(self, message: str, signum: int = signal.SIGINT):
        super().__init__(message)
        self.message, self.signum = message, signum

    def __str__(self) -> str:
        return self.message


class SignalInterrupt(KeyboardInterrupt):
    """What the handlers raise. `_tagged_with_step` makes Beam's DoFnRunner re-raise it as it is
    (it logs a traceback for, and re-wraps, every exception not so tagged)."""

    _tagged_with_step = True


def _on_signal(signum: int, frame: FrameType | None) -> None:
    _received.append(signum)
    if len(_received) == 1:
        raise SignalInterrupt(signal.Signals(signum).name)
    log.warning("%s received while stopping; still stopping", signal.Signals(signum).name)


def install_signal_handlers() -> None:
    """SIGINT and SIGTERM raise KeyboardInterrupt once in the main thread; later ones are
    ignored."""
    _received.clear()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, _on_signal)


def received_signal() -> int:
    """The first signal received (SIGINT when the interrupt came from elsewhere)."""
    return _received[0] if _received else signal.SIGINT


def stop_children() -> None:
    """Kill every decode worker of this process's isolated pools (even one blocked in a system
    call, which would never read a polite stop message)."""
    from eercf_core.video.isolation import kill_all_workers  # eercf_core imports torch

    killed = kill_all_workers()
    if killed:
        log.info("stopped %d worker processes", killed)


def interrupted(exc: BaseException, progress: str) -> JobInterrupted:
    """Stop the children and return the JobInterrupted to raise (`progress`: how far the job got).

    An already-built JobInterrupted (from a nested job) is returned unchanged.
    """
    if isinstance(exc, JobInterrupted):
        return exc
    _received.append(received_signal())  # from now on, more signals only log
    stop_children()
    return JobInterrupted(f"interrupted; {progress}", received_signal())


def exit_code(exc: KeyboardInterrupt) -> int:
    """128 + signal number, the shell's convention for a job ended by a signal."""
    return 128 + int(exc.signum if isinstance(exc, JobInterrupted) else received_signal())
