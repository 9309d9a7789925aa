"""The one text-reading layer under every line-based input: query files, ground truth, ranked
output, video manifests, training captions and dataset annotation files.

- `read_lines(path)`: (1-based line, text) of a local path or fsspec URL, UTF-8, a leading BOM
  dropped (Excel and Windows tools write one), line endings stripped; undecodable bytes are a
  `FormatError` naming `file:line`.
- `read_text(path)`: the whole file decoded the same way (for the csv and json modules).
- `read_jsonl(path)`: (line, object) per non-blank line; anything but a JSON object is an error.
- `is_header(fields, names)`: whether a first line is the optional header `names`.
- `check_id(value, path, line, field)`: an id stripped; empty, or holding a control character
  (eercf_core.files.ids), is an error.
- `UniqueIds`: remembers where each id was first seen; a repeat is an error naming both places.

Every error is a `FormatError` (or the subclass a caller passes as `error`, e.g. the dataset
importers' `AnnotationError`) whose message starts with `file:line:` (or `file:` when no line
applies).
"""
from __future__ import annotations

import json
from collections.abc import Iterator, Sequence

from eercf_core.errors import UserInputError
from eercf_core.files import paths
from eercf_core.files.ids import control_character_problem

BOM = "\ufeff"


class FormatError(UserInputError):
    """A malformed input file; the message names the file and line."""

    def __init__(self, path: str, line: int | None, message: str) -> None:
        where = f"{path}:{line}" if line is not None else str(path)
        super().__init__(f"{where}: {message}")
        self.path, self.line = str(path), line


def _decode(raw: bytes, path: str, line: int | None, error: type[FormatError]) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise error(path, line, f"not valid UTF-8 ({exc.reason} at byte {exc.start})") from None


def read_lines(path: str, error: type[FormatError] = FormatError) -> Iterator[tuple[int, str]]:
    """(1-based line number, decoded line without its line ending) of a local path or fsspec
    URL; a BOM before the first line is dropped; undecodable bytes -> `error` at file:line."""
    with paths.open_file(str(path), "rb") as handle:
        for number, raw in enumerate(handle, start=1):
            text = _decode(raw, path, number, error)
            if number == 1:
                text = text.removeprefix(BOM)
            yield number, text.rstrip("\r\n")


def read_text(path: str, error: type[FormatError] = FormatError) -> str:
    """The whole file (local path or fsspec URL) as text: UTF-8, a leading BOM dropped;
    undecodable bytes -> `error` naming the line they are on."""
    with paths.open_file(str(path), "rb") as handle:
        raw = handle.read()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[:exc.start].count(b"\n") + 1
        raise error(path, line, f"not valid UTF-8 ({exc.reason} at byte {exc.start})") from None
    return text.removeprefix(BOM)


def read_json(path: str, error: type[FormatError] = FormatError) -> object:
    """A JSON document (local path or fsspec URL, BOM allowed); bad JSON -> `error` at the
    line where it breaks."""
    try:
        return json.loads(read_text(path, error))
    except json.JSONDecodeError as exc:
        raise error(path, exc.lineno, f"not valid JSON: {exc.msg}") from None


def read_jsonl(path: str, error: type[FormatError] = FormatError) -> Iterator[tuple[int, dict]]:
    """(1-based line, object) for every non-blank line of a JSONL file (local path or fsspec
    URL); a line that is not a JSON object is an `error` naming `file:line`."""
    for number, line in read_lines(path, error):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise error(path, number, f"not a JSON object: {exc.msg}") from None
        if not isinstance(record, dict):
            raise error(path, number, f"expected a JSON object, got {type(record).__name__}")
        yield number, record


def is_header(fields: Sequence[str], names: Sequence[str]) -> bool:
    """True when a line's `fields` are the column `names` (case and surrounding space ignored):
    the optional header of a TSV."""
    return [f.strip().lower() for f in fields] == [n.lower() for n in names]


def check_id(value: object, path: str, line: int | None, field: str,
             error: type[FormatError] = FormatError) -> str:
    """`value` as a stripped id string; empty, or holding a control character (a TAB or line
    break would corrupt the TSV outputs), -> `error` naming file:line and the field."""
    text = "" if value is None else str(value).strip()
    if not text:
        raise error(path, line, f"missing {field}")
    problem = control_character_problem(text)
    if problem:
        raise error(path, line, f"{field} {text!r} {problem}")
    return text


class UniqueIds:
    """Ids seen so far in one file, each with the line it was first seen on; `add` raises on a
    repeat, naming both lines."""

    def __init__(self, path: str, field: str, error: type[FormatError] = FormatError) -> None:
        self.path, self.field, self.error = path, field, error
        self.first: dict[str, int | str | None] = {}

    def add(self, value: str, line: int | None, first_at: str | None = None) -> None:
        """Record `value` seen at `line` (or at `first_at`, a record name such as `sentences[3]`,
        for files without lines); an id already seen is an error."""
        if value in self.first:
            where = self.first[value]
            shown = f"line {where}" if isinstance(where, int) else str(where)
            raise self.error(self.path, line, f"duplicate {self.field} {value!r} (first on "
                                              f"{shown})")
        self.first[value] = first_at if first_at is not None else line

    def __contains__(self, value: object) -> bool:
        return value in self.first

    def __len__(self) -> int:
        return len(self.first)

    def ids(self) -> list[str]:
        """The ids in the order first seen."""
        return list(self.first)
