"""Up-front output checks: prove an output location writable before a job does any work.

A job that finds out at the end that it cannot write (read-only disk, a path under a regular
file, no permission) has wasted the whole run; these checks create the directory, write and
delete a probe file in it, and remove what they created. Local paths and fsspec URLs.
"""
from __future__ import annotations

import os
import posixpath

import fsspec

from eercf_core.errors import UserInputError
from eercf_core.files import paths

PROBE_PREFIX = ".eercf-write-probe-"


def _missing_dirs(fs: fsspec.AbstractFileSystem, directory: str) -> list[str]:
    """`directory` and its ancestors that do not exist yet, deepest first."""
    missing = []
    while directory and directory not in ("/", ".") and not fs.exists(directory):
        missing.append(directory)
        directory = posixpath.dirname(directory.rstrip("/"))
    return missing


def _probe(fs: fsspec.AbstractFileSystem, directory: str, what: str, url: str) -> None:
    """Create `directory`, write and delete a probe file in it, then remove the directories it
    had to create: the check leaves nothing behind."""
    probe = posixpath.join(directory, f"{PROBE_PREFIX}{os.getpid()}")
    created = [] if paths.bucket_of(url) else _missing_dirs(fs, directory)
    try:
        with paths.storage_errors(url, f"write a probe file into the {what}"):
            if paths.bucket_of(url) is None:  # object stores have no directories to create
                fs.makedirs(directory, exist_ok=True)
            fs.pipe_file(probe, b"")
            fs.rm(probe)
    except paths.StorageAccessError:
        raise
    except (OSError, ValueError) as exc:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise UserInputError(f"{url}: {what} is not writable ({type(exc).__name__}: {reason})"
                             ) from None
    finally:
        for path in created:
            try:
                fs.rmdir(path)
            except (OSError, ValueError, NotImplementedError):
                break


def check_writable_dir(url: str, flag: str = "--output") -> None:
    """Prove files can be written in directory `url` (created if missing; UserInputError).
    On an object store the bucket must exist (it is never created) and a refused or unreachable
    store is a one-line StorageAccessError / StorageUnavailableError."""
    paths.check_bucket(url, flag)
    fs, path = paths.filesystem(str(url))
    if fs.exists(path) and not fs.isdir(path):
        raise UserInputError(f"{url}: {flag} must be a directory, but a file exists there")
    _probe(fs, path, f"{flag} directory", url)


def check_writable_file(url: str, flag: str = "--output") -> None:
    """Prove the file `url` can be created or replaced: its directory (created if missing) must
    accept new files (the job writes a temp file there and renames it). Buckets as in
    `check_writable_dir`."""
    paths.check_bucket(url, flag)
    fs, path = paths.filesystem(str(url))
    if fs.isdir(path):
        raise UserInputError(f"{url}: {flag} is a directory; give a file path")
    _probe(fs, posixpath.dirname(path) or ".", f"{flag} (its directory)", url)
