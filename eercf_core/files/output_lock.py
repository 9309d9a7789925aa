"""A lock on an output location, so two runs never write into one output at the same time.

`OutputLock(path, job)` holds the lock file `path` for the lifetime of a run (use it as a context
manager). The file records its holder (`host`, `pid`, start time, job) so a refused run can say
who holds it.

- Local paths: the file is locked with `flock(LOCK_EX | LOCK_NB)` on an open descriptor. The
  kernel drops that lock when the holding process dies, however it dies (SIGKILL included), so a
  stale lock is taken over by simply locking it again: no pid guessing, no race between two runs
  that both find it stale. The descriptor is close-on-exec; children started by exec (Beam
  workers, the multiprocessing forkserver) never hold it. A clean release deletes the file (a
  run that locked the deleted inode notices and locks the new file), so a finished output holds
  no lock file; one left by a killed run is taken over.
- Other fsspec URLs (s3://, gs://, memory://, ...): the file is created with exclusive-create
  mode (`"xb"`, atomic where the store supports conditional writes; a store without it gets a
  logged check-then-write) and removed on release. A
  leftover file whose holder ran on this host with a pid that no longer runs is stale and is
  removed, then created again exclusively. A holder on another host cannot be checked from here:
  the run is refused and the message names the file to delete once that run is known to be dead.
"""
from __future__ import annotations

import contextlib
import datetime
import errno
import fcntl
import json
import logging
import os
import socket
from typing import Any

import fsspec

from eercf_core.errors import UserInputError

log = logging.getLogger(__name__)

LOCK_NAME = ".eercf.lock"


class OutputLockedError(UserInputError):
    """Another live run holds the lock; the message names it (host, pid, start time, job)."""


def lock_inside(directory: str) -> str:
    """The lock path for a run that writes files into `directory` (extract's shard directory)."""
    return f"{directory.rstrip('/')}/{LOCK_NAME}"


def lock_beside(path: str) -> str:
    """The lock path for a run that replaces `path` as a whole (build-index's output): a hidden
    `.<name>.lock` in the parent, which survives the rename of the finished output."""
    parent, _, name = path.rstrip("/").rpartition("/")
    return f"{parent}/.{name}.lock" if parent else f".{name}.lock"


def pid_alive(pid: int) -> bool:
    """True when a process with this pid runs on this host (permission errors count as alive)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _holder_record(job: str) -> dict[str, Any]:
    return {"host": socket.gethostname(), "pid": os.getpid(), "job": job,
            "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}


def describe_holder(holder: dict[str, Any]) -> str:
    """`eercf extract (pid 123 on host h, started 2026-...)` for messages."""
    return (f"eercf {holder.get('job', '?')} (pid {holder.get('pid', '?')} on host "
            f"{holder.get('host', '?')}, started {holder.get('started', '?')})")


def _parse(raw: bytes) -> dict[str, Any]:
    try:
        holder = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return {}
    return holder if isinstance(holder, dict) else {}


def _create_exclusive(fs: fsspec.AbstractFileSystem, path: str, data: bytes) -> None:
    """Create `path` holding `data`, FileExistsError if it exists. Atomic where the store has
    exclusive create (fsspec mode "xb"); elsewhere check-then-write, which two runs starting in
    the same instant can both pass (logged)."""
    try:
        with fs.open(path, "xb") as handle:
            handle.write(data)
        return
    except (ValueError, NotImplementedError, TypeError) as exc:  # mode "x" not supported
        log.warning("%s: this filesystem has no exclusive create (%s); the output lock is "
                    "check-then-write", path, exc)
    if fs.exists(path):
        raise FileExistsError(path)
    fs.pipe(path, data)


class OutputLock:
    """Exclusive lock of one output for one run (see module docstring). Re-entrant: no."""

    def __init__(self, path: str, job: str, target: str | None = None):
        self.path, self.job = path, job
        self.target = target or path  # the output named in messages
        self._fd: int | None = None
        self._local_path = ""
        self._created_parent = False
        self._remote_fs: fsspec.AbstractFileSystem | None = None
        self._remote_path = ""

    def __enter__(self) -> OutputLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def _refusal(self, holder: dict[str, Any], hint: str = "") -> OutputLockedError:
        return OutputLockedError(
            f"{self.target}: in use by {describe_holder(holder)}; lock file {self.path}. "
            f"Wait for that run to finish or use another output{hint}")

    def acquire(self) -> None:
        """Take the lock or raise OutputLockedError naming the live holder."""
        fs, path = fsspec.core.url_to_fs(self.path)
        parent = path.rstrip("/").rpartition("/")[0]
        if parent:
            self._created_parent = not fs.exists(parent)
            fs.makedirs(parent, exist_ok=True)
        if "file" in (fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,)):
            self._acquire_local(path)
        else:
            self._acquire_remote(fs, path)
        log.debug("locked %s", self.path)

    def _acquire_local(self, path: str) -> None:
        while True:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                holder = _parse(os.pread(fd, 65536, 0))
                os.close(fd)
                if exc.errno in (errno.EWOULDBLOCK, errno.EACCES):
                    raise self._refusal(holder) from None
                raise
            try:
                current = os.stat(path).st_ino
            except FileNotFoundError:
                current = None
            if current == os.fstat(fd).st_ino:
                break
            os.close(fd)  # locked a file its holder unlinked on release: lock the new one
        previous = _parse(os.pread(fd, 65536, 0))
        if previous:
            log.info("%s: took over the lock of %s, which no longer runs", self.target,
                     describe_holder(previous))
        record = json.dumps(_holder_record(self.job)).encode()
        os.ftruncate(fd, 0)
        os.pwrite(fd, record, 0)
        self._fd, self._local_path = fd, path

    def _acquire_remote(self, fs: fsspec.AbstractFileSystem, path: str) -> None:
        record = json.dumps(_holder_record(self.job)).encode()
        for attempt in range(2):
            try:
                _create_exclusive(fs, path, record)
                self._remote_fs, self._remote_path = fs, path
                return
            except FileExistsError:
                pass
            try:
                with fs.open(path, "rb") as handle:
                    holder = _parse(handle.read())
            except FileNotFoundError:
                continue  # released between the two calls: try again
            same_host = holder.get("host") == socket.gethostname()
            pid = holder.get("pid")
            if attempt == 0 and same_host and isinstance(pid, int) and not pid_alive(pid):
                log.warning("%s: removing the stale lock of %s (that process no longer runs)",
                            self.target, describe_holder(holder))
                fs.rm(path)
                continue
            hint = "" if same_host else (
                f"; the holder runs on another host and cannot be checked from here: if it is "
                f"dead, delete {self.path}")
            raise self._refusal(holder, hint)
        raise self._refusal({}, "")

    def release(self) -> None:
        """Drop the lock and delete its file (idempotent)."""
        if self._fd is not None:
            # Unlink while still locked: a run waiting on this inode sees it replaced and retries.
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._local_path)
            os.close(self._fd)
            self._fd = None
            if self._created_parent:  # a run refused before writing leaves no empty output
                with contextlib.suppress(OSError):  # not empty: the run wrote its output there
                    os.rmdir(os.path.dirname(self._local_path))
        if self._remote_fs is not None:
            with contextlib.suppress(FileNotFoundError):
                self._remote_fs.rm(self._remote_path)
            self._remote_fs = None
