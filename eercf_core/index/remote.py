"""Index directories at URLs (s3://, gs://, ...): upload after a local build, fetch into a local
cache before opening (FAISS and the fine store read local files).

- `upload_index(local, url)`: every file but `manifest.json` first, the manifest last, so a
  half-uploaded index has no manifest and is never valid; replacing an index deletes the old
  manifest first for the same reason.
- `fetch_index(url)`: the index in `paths.cache_dir()/indexes/<sha256 of its manifest>/`,
  downloaded once per machine (a temp directory renamed into place; concurrent workers that race
  keep whichever copy landed first) and reused while the remote manifest is unchanged.
"""
from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import posixpath
import shutil
import uuid
from pathlib import Path

from eercf_core.errors import UserInputError
from eercf_core.files import paths
from eercf_core.index.directory import MANIFEST

log = logging.getLogger(__name__)

KEY_CHARS = 32  # hex digits of the manifest's sha256 in a cache entry's name


def _remote_files(url: str) -> list[str]:
    """Every object under index `url` (fresh listing), as paths of its filesystem."""
    fs, root = paths.filesystem(url)
    paths.invalidate(url)
    try:
        return sorted(fs.find(root))
    except FileNotFoundError:
        return []


def index_exists(url: str) -> bool:
    """True when anything is stored under `url` (a complete index or the remains of one)."""
    with paths.storage_errors(url, "list the index location"):
        return bool(_remote_files(url))


def upload_index(local: str | Path, url: str, overwrite: bool = False) -> None:
    """Upload the complete local index directory `local` to `url`, manifest last. An existing
    index at `url` is refused unless `overwrite`; then its manifest is deleted before anything
    else is touched, so no reader ever sees old and new files under one manifest."""
    local = Path(local)
    if not (local / MANIFEST).is_file():
        raise ValueError(f"{local}: not a complete index directory (no {MANIFEST})")
    fs, root = paths.filesystem(url)
    with paths.storage_errors(url, "upload the index"):
        existing = _remote_files(url)
        if existing:
            if not overwrite:
                raise UserInputError(f"{url}: already exists (pass --overwrite to replace it)")
            with contextlib.suppress(FileNotFoundError):
                fs.rm_file(posixpath.join(root, MANIFEST))
            fs.rm(existing)
        files = sorted(p for p in local.rglob("*") if p.is_file() and p.name != MANIFEST)
        for file in files:
            fs.put_file(str(file), posixpath.join(root, file.relative_to(local).as_posix()))
        fs.put_file(str(local / MANIFEST), posixpath.join(root, MANIFEST))
    log.info("uploaded the index (%d files) to %s", len(files) + 1, url)


def fetch_index(url: str) -> Path:
    """The local directory of index `url`: the cached copy for its current manifest, downloaded
    first when this machine has none. UserInputError when `url` holds no complete index."""
    fs, root = paths.filesystem(url)
    manifest_path = posixpath.join(root, MANIFEST)
    with paths.storage_errors(url, "read the index manifest"):
        paths.invalidate(url)
        try:
            raw = fs.cat_file(manifest_path)
        except FileNotFoundError:
            if not _remote_files(url):
                raise UserInputError(f"{url}: index directory not found") from None
            raise UserInputError(f"{url}: incomplete index directory (no {MANIFEST}; "
                                 "build-index was interrupted or this is not an index)") from None
    key = hashlib.sha256(raw).hexdigest()[:KEY_CHARS]
    target = Path(paths.cache_dir()) / "indexes" / key
    if (target / MANIFEST).is_file():
        log.info("index %s: using the local cache %s", url, target)
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    temp = target.parent / f".{key}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        with paths.storage_errors(url, "download the index"):
            for remote in _remote_files(url):
                relative = remote[len(root.rstrip("/")) + 1:]
                if not relative or relative == MANIFEST:
                    continue
                destination = temp / relative
                destination.parent.mkdir(parents=True, exist_ok=True)
                fs.get_file(remote, str(destination))
            if fs.cat_file(manifest_path) != raw:
                raise UserInputError(f"{url}: the index was replaced while it was downloaded; "
                                     "run again")
        (temp / MANIFEST).write_bytes(raw)  # last: a complete cache entry
        try:
            os.rename(temp, target)
        except OSError:  # another worker on this machine finished first: use its copy
            if not (target / MANIFEST).is_file():
                raise
    finally:
        shutil.rmtree(temp, ignore_errors=True)
    log.info("index %s: downloaded into the local cache %s", url, target)
    return target


def local_index(path: str | Path) -> Path:
    """A local index directory for `path`: itself when local, the cached copy for a URL."""
    text = os.fspath(path)
    if paths.is_url(text):
        return fetch_index(text)
    local = paths.local_path(text)
    return Path(local if local is not None else text)
