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
- S3 (s3://, and S3-compatible servers): every step is a conditional write, so exactly one of
  any number of racing runs wins. Create: `PutObject If-None-Match: *`. A leftover lock whose
  holder ran on this host with a pid that no longer runs is stale and is taken over by
  overwriting it `If-Match: <the stale lock's ETag>`: of runs racing to take it over, only the
  first write matches. Release deletes the lock `If-Match: <our ETag>` (compare-and-delete), so
  a run never deletes a lock that is no longer its own.
- Other fsspec URLs (gs://, memory://, ...): the file is created with exclusive-create mode
  (`"xb"`, atomic where the store supports it; a store without it gets a logged
  check-then-write) and removed on release; a stale lock is removed and created again.
- A holder on another host cannot be checked from here: the run is refused and the message
  names the file to delete once that run is known to be dead.
- Releasing never raises over a run's own error: a release that fails (the store went away)
  is logged, and the lock is left for the next run to take over.
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
from eercf_core.files import paths

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


def _precondition_failed(exc: BaseException) -> bool:
    """True when a conditional S3 request failed its condition (HTTP 412 PreconditionFailed)."""
    for item in (exc, exc.__cause__, exc.__context__):
        response = getattr(item, "response", None)
        if isinstance(response, dict) and (
                response.get("Error", {}).get("Code") == "PreconditionFailed"
                or response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 412):
            return True
    return False


class _S3Conditional:
    """Conditional PutObject / DeleteObject on an S3 filesystem (s3fs): the primitives of an
    atomic lock. Each method returns the new ETag / True on success, None / False when the
    condition failed."""

    def __init__(self, fs: fsspec.AbstractFileSystem, path: str):
        self.fs = fs
        self.bucket, self.key, _ = fs.split_path(path)
        self.path = path

    def _call(self, method: str, **kwargs: Any) -> dict | None:
        try:
            result = self.fs.call_s3(method, Bucket=self.bucket,
                                     Key=self.key, **kwargs)
        except (OSError, ValueError) as exc:
            if _precondition_failed(exc) or isinstance(exc, FileExistsError):
                return None
            raise
        finally:
            self.fs.invalidate_cache(self.path)
        return result if isinstance(result, dict) else {}

    def create(self, data: bytes) -> str | None:
        """Write `data` if no object exists (If-None-Match: *); the new ETag, else None."""
        result = self._call("put_object", Body=data, IfNoneMatch="*")
        return None if result is None else str(result.get("ETag", ""))

    def replace(self, data: bytes, etag: str) -> str | None:
        """Overwrite the object if it still has `etag` (If-Match); the new ETag, else None."""
        result = self._call("put_object", Body=data, IfMatch=etag)
        return None if result is None else str(result.get("ETag", ""))

    def read(self) -> tuple[bytes, str] | None:
        """(content, ETag) of the object from one GetObject (so they belong together), None
        when there is none."""
        from fsspec.asyn import sync

        async def get() -> tuple[bytes, str]:
            result = await self.fs._call_s3(
                "get_object", Bucket=self.bucket, Key=self.key)
            async with result["Body"] as stream:
                return await stream.read(), str(result.get("ETag", ""))

        try:
            return sync(self.fs.loop, get)
        except FileNotFoundError:
            return None

    def delete(self, etag: str) -> bool:
        """Delete the object if it still has `etag` (If-Match); False when it does not."""
        try:
            return self._call("delete_object", IfMatch=etag) is not None
        except FileNotFoundError:
            return False


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
        self._s3: _S3Conditional | None = None
        self._etag = ""

    def __enter__(self) -> OutputLock:
        self.acquire()
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc is None:
            self.release()
            return
        try:  # the run's own error is the one to report
            self.release()
        except Exception as problem:
            log.warning("%s: could not release the lock %s after the run failed (%s); the next "
                        "run takes it over", self.target, self.path, paths.storage_error(
                            problem, self.path, "release the lock") or problem)

    def _refusal(self, holder: dict[str, Any], hint: str = "") -> OutputLockedError:
        return OutputLockedError(
            f"{self.target}: in use by {describe_holder(holder)}; lock file {self.path}. "
            f"Wait for that run to finish or use another output{hint}")

    def acquire(self) -> None:
        """Take the lock or raise OutputLockedError naming the live holder."""
        fs, path = paths.filesystem(self.path)
        if paths.is_local(self.path):
            parent = path.rstrip("/").rpartition("/")[0]
            if parent:
                self._created_parent = not fs.exists(parent)
                fs.makedirs(parent, exist_ok=True)
            self._acquire_local(path)
            return
        with paths.storage_errors(self.path, "take the output lock"):
            if paths.protocol(self.path) in ("s3", "s3a"):
                self._acquire_s3(_S3Conditional(fs, path))
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

    def _stale(self, holder: dict[str, Any]) -> bool:
        pid = holder.get("pid")
        return (holder.get("host") == socket.gethostname() and isinstance(pid, int)
                and not pid_alive(pid))

    def _other_host_hint(self, holder: dict[str, Any]) -> str:
        return "" if holder.get("host") == socket.gethostname() else (
            f"; the holder runs on another host and cannot be checked from here: if it is "
            f"dead, delete {self.path}")

    def _acquire_s3(self, store: _S3Conditional) -> None:
        record = json.dumps(_holder_record(self.job)).encode()
        for _ in range(5):
            etag = store.create(record)
            if etag is not None:
                self._s3, self._etag = store, etag
                return
            current = store.read()
            if current is None:
                continue  # released between the two calls: try again
            raw, stale_etag = current
            holder = _parse(raw)
            if not self._stale(holder):
                raise self._refusal(holder, self._other_host_hint(holder))
            etag = store.replace(record, stale_etag)
            if etag is not None:
                log.warning("%s: took over the stale lock of %s (that process no longer runs)",
                            self.target, describe_holder(holder))
                self._s3, self._etag = store, etag
                return
            # another run took it over (or it was released) first: look again
        raise self._refusal({}, "")

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
        if self._s3 is not None:
            store, self._s3 = self._s3, None
            with paths.storage_errors(self.path, "release the output lock"):
                if not store.delete(self._etag):
                    log.warning("%s: the lock %s is no longer this run's (taken over?); left "
                                "in place", self.target, self.path)
        if self._remote_fs is not None:
            fs, self._remote_fs = self._remote_fs, None
            with contextlib.suppress(FileNotFoundError), \
                    paths.storage_errors(self.path, "release the output lock"):
                fs.rm(self._remote_path)
