"""Atomic writes: every output file or directory is written under a hidden temp name beside its
target and renamed into place only when complete, so a failed or killed writer never leaves a
half-written output at the target path (at most a hidden `.<name>.tmp-<pid>-<random>` leftover).

Paths are local paths or fsspec URLs, except `local_temp_path` and `atomic_directory`, which hand
a local path to writers that only take file names (FAISS, matplotlib, video encoders).
`output_directory` gives such writers a local folder for an output that may be a URL: written
locally, then uploaded file by file with the named files last.
"""
from __future__ import annotations

import json
import logging
import os
import posixpath
import shutil
import tempfile
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from eercf_core.files import paths

log = logging.getLogger(__name__)

TEMP_MARKER = ".tmp-"


def temp_name(name: str) -> str:
    """The hidden temp name used while writing `name` (a base name, no directory):
    `.<name>.tmp-<pid>-<random>`; the pid lets a later run tell a dead writer's leftover from a
    live writer's file (`temp_owner_pid`)."""
    return f".{name}{TEMP_MARKER}{os.getpid()}-{uuid.uuid4().hex[:16]}"


def is_temp_name(name: str) -> bool:
    """True for a leftover temp name from `temp_name`."""
    return name.startswith(".") and TEMP_MARKER in name


def temp_owner_pid(name: str, marker: str = TEMP_MARKER) -> int | None:
    """The writer's pid in a temp name (`...<marker><pid>` or `...<marker><pid>-<random>`), None
    when the name carries none."""
    pid = name.rpartition(marker)[2].partition("-")[0]
    return int(pid) if pid.isdigit() else None


@contextmanager
def open_atomic(path: str | Path, mode: str = "wb") -> Iterator[IO[Any]]:
    """Open a temp file beside `path` for writing; rename it to `path` when the block succeeds,
    remove it when it raises. Parent directories are created."""
    fs, target = paths.filesystem(str(path))
    parent, name = posixpath.split(target)
    if parent and paths.bucket_of(str(path)) is None:  # object stores: no directories, and a
        fs.makedirs(parent, exist_ok=True)  # makedirs there would create a missing bucket
    temp = posixpath.join(parent, temp_name(name))
    try:
        with fs.open(temp, mode, **({"encoding": "utf-8"} if "b" not in mode else {})) as handle:
            yield handle
        fs.mv(temp, target)
    except BaseException:
        try:
            if fs.exists(temp):
                fs.rm(temp)
        except Exception as cleanup:  # the store went away: the write's own error is reported
            log.warning("could not remove the temp file %s (%s); the next run removes it",
                        temp, cleanup)
        raise


def write_text(path: str | Path, chunks: str | Iterable[str]) -> None:
    """Write text (one string or an iterable of chunks) to `path` atomically."""
    with open_atomic(path, "w") as handle:
        for chunk in [chunks] if isinstance(chunks, str) else chunks:
            handle.write(chunk)


def write_json(path: str | Path, payload: Any, indent: int | None = 2) -> None:
    """Write `payload` as JSON (indented, newline-terminated) to `path` atomically."""
    write_text(path, json.dumps(payload, indent=indent) + "\n")


def write_bytes(path: str | Path, data: bytes) -> None:
    """Write `data` to `path` atomically."""
    with open_atomic(path, "wb") as handle:
        handle.write(data)


@contextmanager
def local_temp_path(path: str | Path) -> Iterator[Path]:
    """A local temp file path beside `path` (same suffix, so writers that pick a format by suffix
    still work) for a writer that takes a file name; renamed to `path` on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(temp_name(path.stem) + path.suffix)
    try:
        yield temp
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


@contextmanager
def atomic_directory(path: str | Path, overwrite: bool = False) -> Iterator[Path]:
    """A fresh local temp directory beside `path` to fill; it replaces `path` when the block
    succeeds (an existing `path` only with `overwrite`) and is removed when it raises."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise ValueError(f"{path}: already exists (pass --overwrite to replace it)")
    temp = path.with_name(temp_name(path.name))
    temp.mkdir(parents=True)
    try:
        yield temp
        if path.exists():
            trash = path.with_name(temp_name(path.name + ".old"))
            os.replace(path, trash)
            shutil.rmtree(trash)
        os.replace(temp, path)
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise


@contextmanager
def output_directory(url: str, last: Iterable[str] = ()) -> Iterator[Path]:
    """A local folder to write the output directory `url` into.

    A local `url` is that folder itself (created). For a URL (s3://, gs://, ...) the block
    writes into a local temp folder; when it succeeds every file is uploaded to `url` (relative
    names kept), the files named in `last` after all others (the record that marks the output
    complete, e.g. metrics.json, goes last), and the temp folder is removed either way. Store
    failures are one-line errors naming `url` (`paths.storage_errors`).
    """
    local = paths.local_path(url)
    if local is not None:
        folder = Path(local)
        folder.mkdir(parents=True, exist_ok=True)
        yield folder
        return
    with tempfile.TemporaryDirectory(prefix="eercf-output-") as temp:
        yield Path(temp)
        upload_tree(temp, url, last)


def upload_tree(local: str | Path, url: str, last: Iterable[str] = ()) -> int:
    """Upload every file under the local folder `local` to the folder `url` (relative names
    kept), files whose base name is in `last` after all others, in that order. Returns the
    number of files. Store failures are one-line errors naming `url`."""
    local = Path(local)
    order = list(last)
    files = sorted((p for p in local.rglob("*") if p.is_file()),
                   key=lambda p: (p.name in order, order.index(p.name) if p.name in order
                                  else 0, p.as_posix()))
    fs, root = paths.filesystem(url)
    with paths.storage_errors(url, "upload the output"):
        for file in files:
            fs.put_file(str(file), posixpath.join(root, file.relative_to(local).as_posix()))
    return len(files)


def download_tree(url: str, local: str | Path) -> Path:
    """Copy every file under the folder `url` into the local folder `local` (created); returns
    it. FileNotFoundError naming `url` when nothing is there."""
    local = Path(local)
    fs, root = paths.filesystem(url)
    with paths.storage_errors(url, "download"):
        paths.invalidate(url)
        found = fs.find(root)
        if not found:
            raise FileNotFoundError(f"not found: {url}")
        for remote in found:
            target = local / remote[len(root.rstrip("/")) + 1:]
            target.parent.mkdir(parents=True, exist_ok=True)
            fs.get_file(remote, str(target))
    return local
