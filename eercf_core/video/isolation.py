"""Run a function over items in worker processes, surviving crashes and hangs.

`IsolatedPool(fn, workers, timeout)` keeps `workers` child processes. Each child runs `fn(item)`
for one item at a time. Per item the pool yields exactly one `Outcome`: the return value, or an
error message when `fn` raised, the child died (segfault, abort, out-of-memory kill) or exceeded
the time limit (the child is then killed). A dead or killed child is replaced, so one bad input
never takes down the run.

Children are fresh interpreters started with `subprocess.Popen` that talk to the pool over a
socket pair (pickled messages). Unlike `multiprocessing` children they may be started from a
daemonic process (Dask's nanny workers and other runners' worker processes are daemonic, and
`multiprocessing` refuses to start children there), and they never inherit a parent's open
decoders, threads or CUDA state. A child dies with its parent (PR_SET_PDEATHSIG on Linux; the
closed socket everywhere).

The pool is thread-safe: one dispatcher thread owns the children and any number of threads may
iterate `imap_unordered` at once, sharing the `workers` children. `shared_pool` hands out one
pool per process and configuration, so a runner with many DoFn instances (threads) per worker
process starts `workers` decoders per process, not per instance.

`fn` must be a module-level function of an importable module (it is pickled by reference; the
children get the parent's `sys.path` and working directory); items and results are pickled.
"""
from __future__ import annotations

import atexit
import collections
import contextlib
import logging
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from typing import Any, Generic, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")
TIMEOUT = "timeout"
CRASHED = "worker crashed"
OUT_OF_MEMORY = "out of memory"

# The child's bootstrap: read sys.path and the working directory first, so that unpickling the
# function (by reference) imports it from the same code the parent runs.
_BOOTSTRAP = ("import sys\n"
              "from multiprocessing.connection import Connection\n"
              "conn = Connection(int(sys.argv[1]))\n"
              "sys.path[:], cwd = conn.recv()\n"
              "import os; os.chdir(cwd)\n"
              "from eercf_core.video.isolation import _worker_main\n"
              "_worker_main(conn)\n")


@dataclass
class Outcome(Generic[T]):
    """The result of one item: `value` when ok, else `error` (a human-readable message)."""

    index: int  # position of the item in the input
    value: Any = None
    error: str | None = None
    seconds: float = 0.0  # wall time from dispatch to result
    # on errors: the exception's `cause` attribute if it had one, else TIMEOUT / CRASHED /
    # OUT_OF_MEMORY for what the pool saw, None for other exceptions
    cause: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def _die_with_parent(parent_pid: int) -> None:
    """Ask Linux to SIGKILL this process when its parent dies (best effort elsewhere)."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(1)


def _worker_main(conn: Connection) -> None:
    """The child's loop: receive (fn, parent pid, memory limit, preload), then items until None."""
    fn, parent_pid, memory_limit_bytes, preload = conn.recv()
    _die_with_parent(parent_pid)
    if memory_limit_bytes:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (memory_limit_bytes, memory_limit_bytes))
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when children stop
    for module in preload:
        __import__(module)
    conn.send(("ready", os.getpid()))  # start-up (imports) does not count against time limits
    while True:
        try:
            item = conn.recv()
        except (EOFError, OSError):
            return
        if item is None:
            return
        reply: tuple[Any, ...]  # ("ok", value) | ("error", message, cause or None)
        try:
            reply = ("ok", fn(item))
        except Exception as exc:  # every failure of fn becomes that item's error
            cause = getattr(exc, "cause", None)
            if cause is None and type(exc) is MemoryError:
                reply = ("error", "out of memory while processing (memory limit reached)",
                         OUT_OF_MEMORY)
            else:
                text = " ".join(str(exc).split())
                reply = ("error", text if type(exc).__name__ in text or ":" in text
                         else f"{type(exc).__name__}: {text}", cause)
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


@dataclass
class _Call:
    """One `imap_unordered` iteration: its results queue; cancelled when the caller stops."""

    results: queue.SimpleQueue[Outcome | BaseException] = field(
        default_factory=queue.SimpleQueue)
    cancelled: bool = False


@dataclass
class _Task:
    call: _Call
    index: int
    item: Any


class _Worker:
    """One child interpreter and the parent's end of its socket."""

    def __init__(self, fn: Callable, memory_limit_bytes: int | None, preload: tuple[str, ...]):
        parent_end, child_end = socket.socketpair()
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-c", _BOOTSTRAP, str(child_end.fileno())],
                pass_fds=(child_end.fileno(),), stdin=subprocess.DEVNULL)
        finally:
            child_end.close()
        self.conn = Connection(parent_end.detach())
        self.conn.send((list(sys.path), os.getcwd()))
        self.conn.send((fn, os.getpid(), memory_limit_bytes, preload))
        self.task: tuple[_Task, float] | None = None  # (task, dispatch time)
        self.ready = False

    def exit_reason(self) -> str:
        try:
            self.process.wait(2)
        except subprocess.TimeoutExpired:
            return "worker process stopped answering"
        return _exit_reason(self.process.returncode)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        try:
            self.process.wait(5)
        except subprocess.TimeoutExpired:
            log.warning("worker process %d did not exit after SIGKILL", self.process.pid)
        self.conn.close()


class IsolatedPool:
    """A small restartable process pool with a per-item time limit (see module docstring)."""

    def __init__(self, fn: Callable, workers: int | None = None, timeout: float | None = 120.0,
                 preload: Iterable[str] = (), memory_limit_mb: int | None = None):
        if getattr(fn, "__module__", None) in (None, "__main__") or "<" in fn.__qualname__:
            raise ValueError(f"IsolatedPool needs a module-level function of an importable "
                             f"module (children import it by name), got {fn!r}")
        self.fn = fn
        self.workers = max(1, workers or os.cpu_count() or 1)
        self.timeout = timeout
        self.preload = tuple(preload)
        self.memory_limit_bytes = memory_limit_mb * 2**20 if memory_limit_mb else None
        self.restarts = 0
        self.owner_pid = os.getpid()
        self._lock = threading.Lock()
        self._pending: collections.deque[_Task] = collections.deque()
        self._live_calls: dict[int, _Call] = {}  # iterations in progress (failed on a fatal error)
        self._wake_r, self._wake_w = socket.socketpair()  # wakes the dispatcher's wait()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._thread: threading.Thread | None = None
        self._workers: list[_Worker] = []
        self._closing = False
        self._failure: BaseException | None = None
        _LIVE_POOLS.add(self)

    def __enter__(self) -> IsolatedPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ----------------------------------------------------------------------------- callers
    def imap_unordered(self, items: Iterable[Any]) -> Iterator[Outcome]:
        """Yield one Outcome per item as results arrive.

        At most `workers` items of this iteration are submitted and not yet yielded, so results
        never pile up beyond that while the caller is busy. Stopping the iteration early drops
        its queued items; a result of one already running is discarded when it arrives.
        """
        self._start()
        call = _Call()
        with self._lock:
            self._live_calls[id(call)] = call
        source = enumerate(items)
        outstanding, exhausted = 0, False
        try:
            while True:
                submitted = []
                while not exhausted and outstanding < self.workers:
                    try:
                        index, item = next(source)
                    except StopIteration:
                        exhausted = True
                        break
                    submitted.append(_Task(call, index, item))
                    outstanding += 1
                if submitted:
                    self._submit(submitted)
                if outstanding == 0:
                    return
                result = call.results.get()
                if isinstance(result, BaseException):
                    raise result
                outstanding -= 1
                yield result
        finally:
            call.cancelled = True
            with self._lock:
                self._live_calls.pop(id(call), None)
                self._pending = collections.deque(t for t in self._pending if not t.call.cancelled)

    def _submit(self, tasks: list[_Task]) -> None:
        with self._lock:
            if self._failure is not None:
                raise self._failure
            if self._closing:
                raise RuntimeError("the isolated pool is closed")
            self._pending.extend(tasks)
        self._wake()

    def _wake(self) -> None:
        # BlockingIOError: a wake-up is already pending; OSError: the pool is closed.
        with contextlib.suppress(BlockingIOError, OSError):
            self._wake_w.send(b"x")

    def _start(self) -> None:
        with self._lock:
            if self._thread is None:
                if self._closing:
                    raise RuntimeError("the isolated pool is closed")
                self._thread = threading.Thread(target=self._dispatch_loop, daemon=True,
                                                name=f"isolated-pool-{self.fn.__name__}")
                self._thread.start()

    def close(self) -> None:
        """Stop all workers (politely, then by force); iterations in progress raise."""
        with self._lock:
            self._closing = True
            thread = self._thread
        self._wake()
        if thread is not None and thread is not threading.current_thread():
            thread.join()
        self._wake_r.close()
        self._wake_w.close()

    def kill(self) -> int:
        """Close the pool and SIGKILL its workers now (an interrupted run: a worker blocked in
        a system call never reads the polite stop message). Returns how many were alive."""
        with self._lock:
            self._closing = True
            workers = list(self._workers)
        alive = [w for w in workers if w.process.poll() is None]
        for worker in alive:
            worker.process.kill()
        self._wake()
        return len(alive)

    # --------------------------------------------------------------------------- dispatcher
    def _dispatch_loop(self) -> None:
        # Children are started and stopped only by this thread: PR_SET_PDEATHSIG fires when the
        # thread that started a child exits, so they live exactly as long as the pool.
        pool = self._workers  # the dispatcher's own list (kill() reads a copy)
        try:
            while not self._closing:
                while len(pool) < self.workers:
                    pool.append(_Worker(self.fn, self.memory_limit_bytes, self.preload))
                self._assign(pool)
                self._collect(pool)
        except BaseException as exc:  # a worker failed to start, or a bug: fail every caller
            with self._lock:
                self._failure = exc
                calls = list(self._live_calls.values())
                self._pending.clear()
            for call in calls:
                call.results.put(exc)
        finally:
            self._stop(pool)
            with self._lock:
                if self._failure is None:
                    self._failure = RuntimeError("the isolated pool is closed")
                calls = list(self._live_calls.values())
            for call in calls:
                call.results.put(self._failure)

    def _assign(self, pool: list[_Worker]) -> None:
        """Send queued items to idle ready workers."""
        for worker in pool:
            if worker.task is not None or not worker.ready:
                continue
            with self._lock:
                while self._pending and self._pending[0].call.cancelled:
                    self._pending.popleft()
                if not self._pending:
                    return
                task = self._pending.popleft()
            try:
                worker.conn.send(task.item)
                worker.task = (task, time.monotonic())
            except (BrokenPipeError, OSError):  # died while idle: retry on a fresh one
                with self._lock:
                    self._pending.appendleft(task)
                self._replace(pool, worker)

    def _collect(self, pool: list[_Worker]) -> None:
        """Wait for a reply, a start-up, a death, a time limit or a wake-up, and handle it."""
        running = {w: w.task for w in pool if w.task is not None}  # worker -> (task, dispatched)
        busy = list(running)
        starting = [w for w in pool if not w.ready]
        wait_for = None
        if self.timeout is not None and running:
            wait_for = max(0.0, min(started for _, started in running.values()) + self.timeout
                           - time.monotonic())
        ready = set(wait([self._wake_r] + [w.conn for w in busy + starting], timeout=wait_for))
        if self._closing:  # closed or killed meanwhile: in-flight items fail with "closed"
            return
        if self._wake_r in ready:
            with contextlib.suppress(BlockingIOError, OSError):
                while self._wake_r.recv(4096):
                    pass
        for worker in starting:
            if worker.conn in ready:
                try:
                    worker.ready = worker.conn.recv()[0] == "ready"
                except (EOFError, OSError):
                    raise RuntimeError(
                        f"worker process for {self.fn.__module__}.{self.fn.__qualname__} failed "
                        f"to start ({worker.exit_reason()}); its error is on stderr above"
                    ) from None
        now = time.monotonic()
        for worker, (task, started) in running.items():
            if worker.conn in ready:
                try:
                    status, payload, *cause = worker.conn.recv()
                except (EOFError, OSError):  # died mid-item
                    reason = worker.exit_reason()
                    self._replace(pool, worker)
                    self._finish(task, Outcome(task.index, error=reason, seconds=now - started,
                                               cause=CRASHED))
                    continue
                worker.task = None
                self._finish(task, Outcome(task.index, value=payload, seconds=now - started)
                             if status == "ok" else
                             Outcome(task.index, error=payload, seconds=now - started,
                                     cause=cause[0] if cause else None))
            elif self.timeout is not None and now - started >= self.timeout:
                log.warning("item %d exceeded the %.0f s time limit; killing its worker",
                            task.index, self.timeout)
                self._replace(pool, worker)
                self._finish(task, Outcome(
                    task.index, error=f"timed out after {self.timeout:g} s (worker killed; the "
                    "decoder hung or the file is too slow to decode)", seconds=now - started,
                    cause=TIMEOUT))

    @staticmethod
    def _finish(task: _Task, outcome: Outcome) -> None:
        if not task.call.cancelled:
            task.call.results.put(outcome)

    def _replace(self, pool: list[_Worker], worker: _Worker) -> None:
        worker.kill()
        self.restarts += 1
        pool[pool.index(worker)] = _Worker(self.fn, self.memory_limit_bytes, self.preload)

    @staticmethod
    def _stop(pool: list[_Worker]) -> None:
        for worker in pool:
            with contextlib.suppress(BrokenPipeError, OSError):
                worker.conn.send(None)
        deadline = time.monotonic() + 2
        for worker in pool:
            with contextlib.suppress(subprocess.TimeoutExpired):
                worker.process.wait(max(0.0, deadline - time.monotonic()))
            worker.kill()
        pool.clear()


_LIVE_POOLS: weakref.WeakSet[IsolatedPool] = weakref.WeakSet()


def kill_all_workers() -> int:
    """`kill()` every IsolatedPool of this process; returns how many workers were alive."""
    return sum(pool.kill() for pool in list(_LIVE_POOLS) if pool.owner_pid == os.getpid())


_SHARED: dict[tuple, IsolatedPool] = {}
_SHARED_LOCK = threading.Lock()


def shared_pool(fn: Callable, workers: int | None = None, timeout: float | None = 120.0,
                memory_limit_mb: int | None = None) -> IsolatedPool:
    """The process-wide IsolatedPool for this function and settings (created on first use,
    closed at interpreter exit). `workers` None = this machine's cores."""
    workers = max(1, workers or os.cpu_count() or 1)
    key = (fn, workers, timeout, memory_limit_mb)
    with _SHARED_LOCK:
        pool = _SHARED.get(key)
        if pool is None or pool.owner_pid != os.getpid():  # a forked child starts its own
            pool = _SHARED[key] = IsolatedPool(fn, workers=workers, timeout=timeout,
                                               memory_limit_mb=memory_limit_mb)
        return pool


@atexit.register
def close_shared_pools() -> None:
    """Close this process's shared pools (at exit, or when a job that ran its pipeline
    in-process is done); a later `shared_pool` call starts a fresh one."""
    with _SHARED_LOCK:
        pools = [p for p in _SHARED.values() if p.owner_pid == os.getpid()]
        _SHARED.clear()
    for pool in pools:
        pool.close()
