"""Video references for extract and train: globs, lists of fsspec URLs, directories, or a manifest.

A manifest is a TSV/CSV with a header naming `video_id` and `uri` columns, or JSONL objects with
those keys; relative URIs are resolved against the manifest's directory. Without a manifest the
`video_id` is the path relative to the corpus root (the fixed part of a glob, the directory
given, or the common parent of listed files). Duplicate ids are an error before anything runs.
"""
from __future__ import annotations

import contextlib
import csv
import json
import os
import posixpath
import re
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import fsspec
from fsspec.utils import glob_translate

from eercf_core.errors import UserInputError
from eercf_core.files import paths
from eercf_core.files.id_digests import DigestCollector, IdDigests, digest
from eercf_core.files.ids import control_character_problem
from eercf_core.files.lines import FormatError, UniqueIds, check_id, read_jsonl, read_lines
from eercf_core.files.text_formats import write_tsv

VIDEO_SUFFIXES = (".mp4", ".m4v", ".mkv", ".webm", ".avi", ".mov", ".mpg", ".mpeg", ".ts",
                  ".flv", ".wmv", ".3gp", ".ogv")
MANIFEST_SUFFIXES = (".tsv", ".csv", ".jsonl", ".ndjson")


@dataclass(frozen=True)
class VideoRef:
    """One input video: a stable id and where to read it (local path or fsspec URL)."""

    video_id: str
    uri: str


def _has_magic(path: str) -> bool:
    return any(ch in path for ch in "*?[")


def is_glob(url: str) -> bool:
    """A glob pattern: glob characters and no file or directory of that exact name (an existing
    `clip[1].mp4` is that file)."""
    if not _has_magic(url):
        return False
    fs, path = paths.filesystem(url)
    return not fs.exists(path)


def _protocol_prefix(url: str) -> str:
    return url.split("://", 1)[0] + "://" if "://" in url else ""


def _full(fs: fsspec.AbstractFileSystem, prefix: str, path: str) -> str:
    """A listed path with its URL protocol restored (local paths stay plain paths)."""
    if not prefix or prefix == "file://":
        return path
    return fs.unstrip_protocol(path)


def _walk_files(fs: fsspec.AbstractFileSystem, root: str, maxdepth: int | None
                ) -> Iterator[str]:
    """Every non-directory path under `root` (down to `maxdepth` levels; None: all), streamed
    one directory listing at a time, in the order `sorted()` gives the full paths (a
    subdirectory `d` sorts as `d/`, its files where `sorted` puts them)."""
    try:
        entries = fs.ls(root, detail=True)
    except FileNotFoundError:
        return
    keyed = sorted(((posixpath.basename(e["name"].rstrip("/"))
                     + ("/" if e.get("type") == "directory" else ""), e) for e in entries),
                   key=lambda item: item[0])
    for _, entry in keyed:
        name = entry["name"].rstrip("/")
        if entry.get("type") == "directory":
            if name != root.rstrip("/") and (maxdepth is None or maxdepth > 1):
                yield from _walk_files(fs, name, None if maxdepth is None else maxdepth - 1)
        else:
            yield name


def _glob_files(fs: fsspec.AbstractFileSystem, path: str) -> Iterator[str]:
    """The files (not directories) matching the glob `path`, streamed in sorted order: the
    matching of fsspec's `glob` (fsspec.utils.glob_translate, the same depth rule) over a walk
    that holds one directory listing at a time instead of every path found."""
    indices = [i for i in (path.find(c) for c in "*?[") if i >= 0]
    first = min(indices)
    slash = path[:first].rfind("/")
    root = path[:slash + 1] if slash >= 0 else ""
    depth: int | None = None if "**" in path else path[slash + 1:].count("/") + 1
    pattern = re.compile(glob_translate(path))
    for found in _walk_files(fs, root.rstrip("/") or root or ".", depth):
        if pattern.match(found):
            yield found


def _iter_expand(pattern: str) -> tuple[Iterator[str], str]:
    """(video URLs, streamed in sorted order; corpus root) for one glob, directory or file."""
    prefix = _protocol_prefix(pattern)
    fs, path = paths.filesystem(pattern)
    if is_glob(pattern):
        fixed = path.split("*")[0].split("?")[0].split("[")[0]
        root = fixed if fixed.endswith("/") else posixpath.dirname(fixed)
        return (_full(fs, prefix, p) for p in _glob_files(fs, path)), root.rstrip("/")
    if fs.isdir(path):
        found = (p for p in _walk_files(fs, path, None) if p.lower().endswith(VIDEO_SUFFIXES))
        return (_full(fs, prefix, p) for p in found), path.rstrip("/")
    if not fs.exists(path):
        raise FileNotFoundError(f"input not found: {pattern}")
    return iter([pattern]), posixpath.dirname(path)


def _expand(pattern: str) -> tuple[list[str], str]:
    """(video URLs, corpus root) for one glob, directory or file."""
    found, root = _iter_expand(pattern)
    return list(found), root


def _strip(url: str) -> str:
    return paths.filesystem(url)[1]


def _relative_id(url: str, root: str) -> str:
    path = _strip(url)
    if root and path.startswith(root.rstrip("/") + "/"):
        return path[len(root.rstrip("/")) + 1:]
    return posixpath.basename(path)


def iter_manifest(url: str) -> Iterator[tuple[int, VideoRef]]:
    """(line, VideoRef) of a TSV/CSV (header with video_id, uri) or JSONL manifest, streamed:
    memory does not grow with the manifest. A bad line is a FormatError naming `file:line`
    (for a CSV record spanning lines: its last line)."""
    _, path = paths.filesystem(url)
    base = posixpath.dirname(path)
    prefix = _protocol_prefix(url)

    def ref(video_id: object, uri: object, line: int) -> VideoRef:
        if not video_id or not uri:
            raise FormatError(url, line, "needs non-empty 'video_id' and 'uri'")
        video_id = check_id(video_id, url, line, "video_id")
        uri = str(uri)
        if "://" not in uri and not uri.startswith("/"):
            uri = (prefix if prefix != "file://" else "") + posixpath.join(base, uri)
        return VideoRef(str(video_id), uri)

    if path.lower().endswith((".jsonl", ".ndjson")):
        for number, record in read_jsonl(url):
            yield number, ref(record.get("video_id"), record.get("uri"), number)
        return
    delimiter = "\t" if path.lower().endswith(".tsv") else ","
    # read_lines: UTF-8 (a BOM from Excel exports is fine), bad bytes named by line; the line
    # ending is put back so that a quoted field spanning lines keeps it
    reader = csv.DictReader((text + "\n" for _, text in read_lines(url)), delimiter=delimiter)
    missing = {"video_id", "uri"} - set(reader.fieldnames or [])
    if missing:
        raise FormatError(url, 1, f"header must name 'video_id' and 'uri' columns; missing "
                          f"{sorted(missing)} (found {reader.fieldnames})")
    for row in reader:  # line_num: the record's last line (a quoted field may span lines)
        yield reader.line_num, ref((row.get("video_id") or "").strip(),
                                   (row.get("uri") or "").strip(), reader.line_num)


def read_manifest(url: str) -> list[VideoRef]:
    """VideoRefs from a TSV/CSV (header with video_id, uri) or JSONL manifest."""
    return [ref for _, ref in iter_manifest(url)]


def is_manifest_input(inputs: list[str]) -> bool:
    """True when `--input` is one manifest file (.tsv/.csv/.jsonl/.ndjson), not a glob."""
    return (len(inputs) == 1 and _strip(inputs[0]).lower().endswith(MANIFEST_SUFFIXES)
            and not is_glob(inputs[0]))


def check_manifest(url: str) -> int:
    """Read a manifest once, streaming, and return its number of videos; every bad line and
    every repeated id is a FormatError naming `file:line` (a repeat also names the first line).
    Memory: 16 bytes per id (eercf_core.files.id_digests), never the VideoRefs or the id
    strings; only when an id repeats is the manifest read again to name the lines."""
    return manifest_ids(url).total


def manifest_ids(url: str) -> IdDigests:
    """`check_manifest`, returning the digests of the manifest's (unique) ids."""
    collector = DigestCollector()
    for _, ref in iter_manifest(url):
        collector.add(ref.video_id)
    ids = collector.finish()
    if not ids.total:
        raise UserInputError(f"no videos found in the manifest {url}")
    if ids.repeated():
        suspects = set(ids.repeated_digests())
        unique = UniqueIds(url, "video_id")
        for line, ref in iter_manifest(url):
            if digest(ref.video_id) in suspects:
                unique.add(ref.video_id, line)
    return ids


def check_unique(refs: Iterable[VideoRef]) -> None:
    """ValueError listing duplicate video ids (with their URIs)."""
    seen: dict[str, list[str]] = {}
    for ref in refs:
        seen.setdefault(ref.video_id, []).append(ref.uri)
    dups = {k: v for k, v in seen.items() if len(v) > 1}
    if dups:
        shown = "; ".join(f"{k!r}: {v}" for k, v in list(dups.items())[:5])
        raise UserInputError(f"{len(dups)} duplicate video_id(s) in the inputs ({shown}"
                             f"{' ...' if len(dups) > 5 else ''}); ids must be unique (use a "
                             "manifest with explicit ids)")


def _roots(inputs: list[str], roots: list[str], common: str | None, count: int,
           first: str | None) -> list[str]:
    """The corpus root of each input: its own, or with several inputs their common parent
    (`common`: commonpath of every found path; `first`: the first one found)."""
    if len(inputs) == 1:
        return roots
    common = common or ""
    single_files = all(not is_glob(i) for i in inputs)
    shared = posixpath.dirname(common) if single_files and count == 1 else common
    if first is not None and common == _strip(first):
        shared = posixpath.dirname(common)
    return [shared] * len(inputs)


def _id_problem(ref: VideoRef) -> None:
    problem = control_character_problem(ref.video_id)
    if problem:  # ids derived from file names: a name may hold a TAB or a line break
        raise UserInputError(f"{ref.uri!r}: the video_id {ref.video_id!r} taken from its path "
                             f"{problem}; rename the file or give ids in a manifest")


def read_inputs(inputs: list[str]) -> list[VideoRef]:
    """Resolve `--input` values to VideoRefs: one manifest, or globs/dirs/files (any fsspec URL).

    Raises FileNotFoundError for a missing input, ValueError for a bad manifest line, no
    videos, or duplicate ids.
    """
    if not inputs:
        raise UserInputError("no --input given")
    if is_manifest_input(inputs):
        refs = read_manifest(inputs[0])
    else:
        expanded = [_expand(item) for item in inputs]
        urls = [u for found, _ in expanded for u in found]
        common = posixpath.commonpath([_strip(u) for u in urls]) if urls else ""
        roots = _roots(inputs, [root for _, root in expanded], common, len(urls),
                       urls[0] if urls else None)
        refs = [VideoRef(_relative_id(u, root), u)
                for (found, _), root in zip(expanded, roots) for u in found]
    if not refs:
        raise UserInputError(f"no videos found for --input {inputs}")
    for ref in refs:
        _id_problem(ref)
    check_unique(refs)
    return refs


class ListedInputs:
    """Globs, directories and files expanded without holding the listing: the found URLs are
    streamed (one directory listing at a time) into a local spill file (JSON lines of
    [input number, URL]; deleted by `close()`), then read back once per pass. Checked up front
    like `read_inputs` (ids with control characters, repeated ids: refused before anything
    runs) with 16 bytes per id in memory: `ids`, their digests (eercf_core.files.id_digests)."""

    def __init__(self, inputs: list[str]):
        if not inputs:
            raise UserInputError("no --input given")
        handle, self.path = tempfile.mkstemp(prefix="eercf-inputs-", suffix=".jsonl")
        count, common, first, roots = 0, None, None, []
        try:
            with os.fdopen(handle, "w", encoding="utf-8") as out:
                for number, item in enumerate(inputs):
                    found, root = _iter_expand(item)
                    roots.append(root)
                    for url in found:
                        out.write(json.dumps([number, url]) + "\n")
                        stripped = _strip(url)
                        if common is None:
                            common = stripped
                        elif stripped != common and not stripped.startswith(
                                common.rstrip("/") + "/"):
                            common = posixpath.commonpath([common, stripped])
                        first = url if first is None else first
                        count += 1
            if not count:
                raise UserInputError(f"no videos found for --input {inputs}")
            self.roots = _roots(inputs, roots, common, count, first)
            self.count = count
            collector = DigestCollector()
            for ref in self:
                _id_problem(ref)
                collector.add(ref.video_id)
            self.ids = collector.finish()
            if self.ids.repeated():
                suspects = set(self.ids.repeated_digests())
                check_unique(ref for ref in self if digest(ref.video_id) in suspects)
        except BaseException:
            self.close()
            raise

    def __iter__(self) -> Iterator[VideoRef]:
        with open(self.path, encoding="utf-8") as handle:
            for line in handle:
                number, url = json.loads(line)
                yield VideoRef(_relative_id(url, self.roots[number]), url)

    def close(self) -> None:
        """Delete the spill file."""
        with contextlib.suppress(FileNotFoundError):
            os.remove(self.path)


def write_manifest(path: str, videos: Iterable[tuple[str, str]]) -> int:
    """A TSV manifest (`video_id<TAB>uri` header) of (video_id, uri) that `read_manifest` reads
    back; returns the number of videos."""
    return write_tsv(path, ("video_id", "uri"), videos)
