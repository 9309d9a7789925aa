"""What every benchmark importer returns, and the parsing helpers they share.

An importer reads a dataset's annotation files as distributed and returns a `Benchmark`: per split
the video ids, the training captions and the evaluation queries (each with its one ground-truth
video), plus how a video id maps to file names. Nothing here touches the videos except
`find_videos`, which lists the videos folder once.
"""
from __future__ import annotations

import csv
import io
import os
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from eercf_core.errors import UserInputError
from eercf_core.files import lines
from eercf_core.files.ids import control_character_problem
from eercf_core.files.lines import FormatError


class AnnotationError(FormatError):
    """A malformed or missing annotation file; the message names the file (and line/record).

    A `FormatError` (the text layer raises it with `file:line`), also built from one message
    that already says where (`AnnotationError("train.json: video 'x': ...")`)."""

    def __init__(self, path: str, line: int | None = None, message: str | None = None) -> None:
        if message is None:  # one message naming the place itself
            UserInputError.__init__(self, path)
            self.path, self.line = path.split(":", 1)[0], None
        else:
            super().__init__(path, line, message)


@dataclass(frozen=True)
class KnownSize:
    """Published size of a split (the full release), for a printed comparison, never asserted."""

    videos: int
    queries: int | None = None
    source: str = ""


@dataclass(frozen=True)
class EvalQuery:
    query_id: str
    text: str
    video_id: str  # the one ground-truth video


@dataclass
class Split:
    """One split of a benchmark, as the annotations define it (before looking at the videos)."""

    name: str
    video_ids: list[str]  # annotation order, unique
    captions: list[tuple[str, str]]  # (video_id, text): the training captions
    queries: list[EvalQuery]  # evaluation queries
    protocol: str  # how the queries are formed (one line)
    files: list[str]  # annotation files read
    known: KnownSize | None = None
    dropped_empty: int = 0  # captions that were empty after whitespace normalisation


@dataclass
class Benchmark:
    name: str
    splits: list[Split]
    video_file_names: Callable[[str], list[str]]  # video id -> candidate file names, in order
    notes: list[str] = field(default_factory=list)  # e.g. optional split files that were absent


_SPACE = re.compile(r"\s+")


def clean_text(text: str) -> str:
    """Whitespace collapsed to single spaces and stripped (the CLIP tokenizer does the same)."""
    return _SPACE.sub(" ", text).strip()


def check_video_id(video_id: object, where: str) -> str:
    """The id as a string; AnnotationError naming `where` if it is empty or holds whitespace
    (control characters included, see eercf_core.files.ids)."""
    if not isinstance(video_id, str) or not video_id.strip():
        raise AnnotationError(f"{where}: video id must be a non-empty string, got {video_id!r}")
    if _SPACE.search(video_id):
        raise AnnotationError(f"{where}: video id {video_id!r} contains whitespace")
    problem = control_character_problem(video_id)
    if problem:
        raise AnnotationError(f"{where}: video id {video_id!r} {problem}")
    return video_id


def require(annotations: Path, name: str) -> Path:
    """annotations/name, or AnnotationError saying which file is missing where."""
    path = annotations / name
    if not path.is_file():
        raise AnnotationError(f"{path}: annotation file not found")
    return path


def read_json(path: Path) -> object:
    """A JSON annotation file, read by the text layer (UTF-8, BOM allowed, `file:line` errors)."""
    return lines.read_json(str(path), AnnotationError)


def read_csv_rows(path: Path, columns: Sequence[str]) -> list[tuple[int, dict[str, str]]]:
    """(line, row) for each row of a CSV whose header must name `columns`."""
    reader = csv.DictReader(io.StringIO(lines.read_text(str(path), AnnotationError), newline=""))
    missing = set(columns) - set(reader.fieldnames or [])
    if missing:
        raise AnnotationError(str(path), 1, f"header must name {list(columns)}; missing "
                              f"{sorted(missing)} (found {reader.fieldnames})")
    return [(reader.line_num, row) for row in reader]


def read_id_list(path: Path) -> list[str]:
    """One video id per line (blank lines skipped); a repeated id is an error."""
    seen = lines.UniqueIds(str(path), "video", AnnotationError)
    for number, line in lines.read_lines(str(path), AnnotationError):
        if line.strip():
            seen.add(check_video_id(line.strip(), f"{path}:{number}"), number)
    if not seen:
        raise AnnotationError(f"{path}: no video ids")
    return seen.ids()


def unique_ids(ids: Iterable[tuple[str, str]]) -> list[str]:
    """Video ids from (id, where) pairs, in order; a repeat is an AnnotationError naming both."""
    seen = lines.UniqueIds("", "video", AnnotationError)
    for video_id, where in ids:
        if video_id in seen:
            raise AnnotationError(f"{where}: duplicate video {video_id!r} (first at "
                                  f"{seen.first[video_id]})")
        seen.add(video_id, None, first_at=where)
    return seen.ids()


def caption_split(name: str, video_ids: list[str], captions_by_video: dict[str, list[str]],
                  files: list[str], known: KnownSize | None, protocol: str) -> Split:
    """A split whose every caption is both a training caption and an evaluation query.

    Query ids are `<video_id>#<n>` (n = the caption's 0-based position among the video's captions
    in the annotation file). Captions empty after `clean_text` are dropped and counted.
    """
    captions, queries, dropped = [], [], 0
    for video_id in video_ids:
        for number, raw in enumerate(captions_by_video[video_id]):
            text = clean_text(raw)
            if not text:
                dropped += 1
                continue
            captions.append((video_id, text))
            queries.append(EvalQuery(f"{video_id}#{number}", text, video_id))
    return Split(name, video_ids, captions, queries, protocol, files, known, dropped)


def find_videos(video_ids: Iterable[str], videos_dir: Path,
                file_names: Callable[[str], list[str]]) -> tuple[dict[str, Path], list[str]]:
    """({video_id: path} of the videos present directly in `videos_dir`, [missing ids]).

    The folder is listed once; for each id the first candidate name that exists wins.
    """
    if not videos_dir.is_dir():
        raise AnnotationError(f"{videos_dir}: videos folder not found")
    present = set(os.listdir(videos_dir))
    found: dict[str, Path] = {}
    missing: list[str] = []
    for video_id in video_ids:
        name = next((n for n in file_names(video_id) if n in present), None)
        if name is None:
            missing.append(video_id)
        else:
            found[video_id] = videos_dir.absolute() / name
    return found, missing
