"""Run a function over items in worker processes, surviving crashes and hangs.

`IsolatedPool(fn, workers, timeout)` keeps `workers` child processes (forkserver context by
default: children are forked from a clean server process, never from a parent that holds open
decoders, threads or CUDA state). Each child runs `fn(item)` for one item at a time. Per item the
pool yields exactly one `Outcome`: the return value, or an error message when `fn` raised, the
child died (segfault, abort, out-of-memory kill) or exceeded the time limit (the child is then
killed). A dead or killed child is replaced, so one bad input never takes down the run.

`fn` must be a module-level function (it is pickled by reference); items and results are pickled
through a pipe.
"""
from __future__ import annotations

import contextlib
import itertools
import logging
import multiprocessing as mp
import os
import signal
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import Any, Generic, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass
class Outcome(Generic[T]):
    """The result of one item: `value` when ok, else `error` (a human-readable message)."""

    index: int  # position of the item in the input
    value: Any = None
    error: str | None = None
    seconds: float = 0.0  # wall time from dispatch to result

    @property
    def ok(self) -> bool:
        return self.error is None


def _worker_main(conn: Connection, fn: Callable, memory_limit_bytes: int | None) -> None:
    if memory_limit_bytes:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (memory_limit_bytes, memory_limit_bytes))
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when children stop
    conn.send(("ready", os.getpid()))  # start-up (imports) does not count against time limits
    while True:
        try:
            item = conn.recv()
        except (EOFError, OSError):
            return
        if item is None:
            return
        try:
            reply = ("ok", fn(item))
        except MemoryError:
            reply = ("error", "out of memory while processing (memory limit reached)")
        except Exception as exc:  # every failure of fn becomes that item's error
            text = " ".join(str(exc).split())
            reply = ("error", text if type(exc).__name__ in text or ":" in text
                     else f"{type(exc).__name__}: {text}")
        try:
            conn.send(reply)
        except Exception as exc:  # e.g. an unpicklable result
            conn.send(("error", f"result could not be sent back: {type(exc).__name__}: {exc}"))


def _exit_reason(exitcode: int | None) -> str:
    if exitcode is None:
        return "worker process vanished"
    if exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = f"signal {-exitcode}"
        return f"worker process crashed ({name})" + (
            "; likely killed for using too much memory" if name == "SIGKILL" else "")
    return f"worker process exited with code {exitcode}"


class _Worker:
    def __init__(self, ctx: Any, fn: Callable, memory_limit_bytes: int | None) -> None:
        self.conn, child = ctx.Pipe(duplex=True)
        self.process = ctx.Process(target=_worker_main, args=(child, fn, memory_limit_bytes),
                                   daemon=True)
        self.process.start()
        child.close()
        self.task: tuple[int, float] | None = None  # (item index, dispatch time)
        self.ready = False

    def check_ready(self, timeout: float = 0.0) -> bool:
        """True once the child has started up (reads its hello message)."""
        if not self.ready and self.conn.poll(timeout):
            try:
                self.ready = self.conn.recv()[0] == "ready"
            except (EOFError, OSError):
                return False
        return self.ready

    def kill(self) -> None:
        if self.process.is_alive():
            self.process.kill()
        self.process.join(5)
        self.conn.close()


class IsolatedPool:
    """A small restartable process pool with a per-item time limit (see module docstring)."""

    def __init__(self, fn: Callable, workers: int | None = None, timeout: float | None = 120.0,
                 context: str = "forkserver", preload: Iterable[str] = (),
                 memory_limit_mb: int | None = None):
        self.fn = fn
        self.workers = max(1, workers or os.cpu_count() or 1)
        self.timeout = timeout
        self.memory_limit_bytes = memory_limit_mb * 2**20 if memory_limit_mb else None
        self._ctx = mp.get_context(context)
        if context == "forkserver":
            self._ctx.set_forkserver_preload([fn.__module__, *preload])
        self._pool: list[_Worker] = []
        self.restarts = 0

    def __enter__(self) -> IsolatedPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _spawn(self) -> _Worker:
        return _Worker(self._ctx, self.fn, self.memory_limit_bytes)

    def _replace(self, worker: _Worker) -> _Worker:
        worker.kill()
        self.restarts += 1
        fresh = self._spawn()
        self._pool[self._pool.index(worker)] = fresh
        return fresh

    def imap_unordered(self, items: Iterable[Any]) -> Iterator[Outcome]:
        """Yield one Outcome per item as results arrive (at most `workers` items in flight)."""
        for worker in list(self._pool):
            if worker.task is not None:  # left busy by an abandoned earlier iteration
                self._replace(worker)
        while len(self._pool) < self.workers:
            self._pool.append(self._spawn())
        source: Iterator[tuple[int, Any]] = enumerate(items)
        exhausted = False
        while True:
            starting = [w for w in self._pool if not w.check_ready()]
            for worker in starting:
                if not worker.process.is_alive():
                    raise RuntimeError(f"worker process failed to start "
                                       f"({_exit_reason(worker.process.exitcode)}); if you run "
                                       "a script, guard it with `if __name__ == '__main__':`")
            for worker in self._pool:
                if worker.task is None and worker.ready and not exhausted:
                    try:
                        index, item = next(source)
                    except StopIteration:
                        exhausted = True
                        break
                    try:
                        worker.conn.send(item)
                        worker.task = (index, time.monotonic())
                    except (BrokenPipeError, OSError):  # died while idle: retry on a fresh one
                        self._replace(worker)
                        source = itertools.chain([(index, item)], source)
            busy = [w for w in self._pool if w.task is not None]
            starting = [w for w in self._pool if not w.ready]
            if not busy:
                if exhausted:
                    return
                wait([w.conn for w in starting] + [w.process.sentinel for w in starting], 1.0)
                continue
            now = time.monotonic()
            wait_for = None
            if self.timeout is not None:
                wait_for = max(0.0, min(w.task[1] + self.timeout for w in busy if w.task) - now)
            watched = busy + (starting if not exhausted else [])
            ready = set(wait([w.conn for w in watched] + [w.process.sentinel for w in watched],
                             timeout=wait_for))
            now = time.monotonic()
            for worker in busy:
                assert worker.task is not None  # busy = has a task
                index, started = worker.task
                if worker.conn in ready or worker.conn.poll():
                    try:
                        status, payload = worker.conn.recv()
                    except (EOFError, OSError):  # died mid-reply
                        worker.process.join(1)
                        yield Outcome(index, error=_exit_reason(worker.process.exitcode),
                                      seconds=now - started)
                        self._replace(worker)
                        continue
                    worker.task = None
                    if status == "ok":
                        yield Outcome(index, value=payload, seconds=now - started)
                    else:
                        yield Outcome(index, error=payload, seconds=now - started)
                elif worker.process.sentinel in ready:
                    worker.process.join(1)
                    yield Outcome(index, error=_exit_reason(worker.process.exitcode),
                                  seconds=now - started)
                    self._replace(worker)
                elif self.timeout is not None and now - started >= self.timeout:
                    log.warning("item %d exceeded the %.0f s time limit; killing its worker",
                                index, self.timeout)
                    yield Outcome(index, error=f"timed out after {self.timeout:g} s (worker "
                                  "killed; the decoder hung or the file is too slow to decode)",
                                  seconds=now - started)
                    self._replace(worker)

    def close(self) -> None:
        """Stop all workers (politely, then by force)."""
        for worker in self._pool:
            with contextlib.suppress(BrokenPipeError, OSError):
                worker.conn.send(None)
        deadline = time.monotonic() + 2
        for worker in self._pool:
            worker.process.join(max(0.0, deadline - time.monotonic()))
            worker.kill()
        self._pool = []
