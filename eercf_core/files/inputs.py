"""Video references for extract and train: globs, lists of fsspec URLs, directories, or a manifest.

A manifest is a TSV/CSV with a header naming `video_id` and `uri` columns, or JSONL objects with
those keys; relative URIs are resolved against the manifest's directory. Without a manifest the
`video_id` is the path relative to the corpus root (the fixed part of a glob, the directory
given, or the common parent of listed files). Duplicate ids are an error before anything runs.
"""
from __future__ import annotations

import csv
import posixpath
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import fsspec

from eercf_core.errors import UserInputError
from eercf_core.files import paths
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


def _expand(pattern: str) -> tuple[list[str], str]:
    """(video URLs, corpus root) for one glob, directory or file."""
    prefix = _protocol_prefix(pattern)
    fs, path = paths.filesystem(pattern)
    if is_glob(pattern):
        fixed = path.split("*")[0].split("?")[0].split("[")[0]
        root = fixed if fixed.endswith("/") else posixpath.dirname(fixed)
        found = [p for p in fs.glob(path) if not fs.isdir(p)]
        return sorted(_full(fs, prefix, p) for p in found), root.rstrip("/")
    if fs.isdir(path):
        found = [p for p in fs.find(path) if p.lower().endswith(VIDEO_SUFFIXES)]
        return sorted(_full(fs, prefix, p) for p in found), path.rstrip("/")
    if not fs.exists(path):
        raise FileNotFoundError(f"input not found: {pattern}")
    return [pattern], posixpath.dirname(path)


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
    Memory: the ids only (for the duplicate check), never the VideoRefs."""
    unique = UniqueIds(url, "video_id")
    for line, ref in iter_manifest(url):
        unique.add(ref.video_id, line)
    if not len(unique):
        raise UserInputError(f"no videos found in the manifest {url}")
    return len(unique)


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
        roots = [root for _, root in expanded]
        if len(expanded) > 1:  # several inputs: ids relative to their common parent
            common = posixpath.commonpath([_strip(u) for u in urls]) if urls else ""
            single_files = all(not is_glob(i) for i in inputs)
            roots = [posixpath.dirname(common) if single_files and len(urls) == 1 else common
                     ] * len(expanded)
            if urls and common == _strip(urls[0]):
                roots = [posixpath.dirname(common)] * len(expanded)
        refs = [VideoRef(_relative_id(u, root), u)
                for (found, _), root in zip(expanded, roots) for u in found]
    if not refs:
        raise UserInputError(f"no videos found for --input {inputs}")
    for ref in refs:  # ids derived from file names: a name may hold a TAB or a line break
        problem = control_character_problem(ref.video_id)
        if problem:
            raise UserInputError(f"{ref.uri!r}: the video_id {ref.video_id!r} taken from its path "
                             f"{problem}; rename the file or give ids in a manifest")
    check_unique(refs)
    return refs


def write_manifest(path: str, videos: Iterable[tuple[str, str]]) -> int:
    """A TSV manifest (`video_id<TAB>uri` header) of (video_id, uri) that `read_manifest` reads
    back; returns the number of videos."""
    return write_tsv(path, ("video_id", "uri"), videos)
