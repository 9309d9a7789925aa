"""Up-front output checks: prove an output location writable before a job does any work.

A job that finds out at the end that it cannot write (read-only disk, a path under a regular
file, no permission) has wasted the whole run; these checks create the directory (as the job
would) and write and delete a probe file in it. Local paths and fsspec URLs.
"""
from __future__ import annotations

import os
import posixpath

import fsspec

from eercf_core.errors import UserInputError

PROBE_PREFIX = ".eercf-write-probe-"


def _probe(fs: fsspec.AbstractFileSystem, directory: str, what: str, url: str) -> None:
    probe = posixpath.join(directory, f"{PROBE_PREFIX}{os.getpid()}")
    try:
        fs.makedirs(directory, exist_ok=True)
        fs.pipe_file(probe, b"")
        fs.rm(probe)
    except (OSError, ValueError) as exc:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise UserInputError(f"{url}: {what} is not writable ({type(exc).__name__}: {reason})"
                             ) from None


def check_writable_dir(url: str, flag: str = "--output") -> None:
    """Create directory `url` if needed and prove files can be written in it (UserInputError)."""
    fs, path = fsspec.core.url_to_fs(str(url))
    if fs.exists(path) and not fs.isdir(path):
        raise UserInputError(f"{url}: {flag} must be a directory, but a file exists there")
    _probe(fs, path, f"{flag} directory", url)


def check_writable_file(url: str, flag: str = "--output") -> None:
    """Prove the file `url` can be created or replaced: its directory is created if needed and
    must accept new files (the job writes a temp file there and renames it)."""
    fs, path = fsspec.core.url_to_fs(str(url))
    if fs.isdir(path):
        raise UserInputError(f"{url}: {flag} is a directory; give a file path")
    _probe(fs, posixpath.dirname(path) or ".", f"{flag} (its directory)", url)
