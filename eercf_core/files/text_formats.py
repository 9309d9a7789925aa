"""Text file formats of the query side: query files, ground truth, ranked output (design.md).

- Queries: TSV `query_id<TAB>text` (header `query_id<TAB>text` optional) or JSONL
  `{"query_id": ..., "text": ...}` (chosen by a `.jsonl`/`.json` suffix or a first line starting
  with `{`). Blank lines are skipped. Missing id, empty text, undecodable bytes, duplicate ids
  and ids with control characters (TAB, CR, ...: eercf_core.files.ids) are errors.
- Ground truth: TSV `query_id<TAB>video_id`, header optional, several rows per query allowed.
- Ranked output: TSV with header `query_id rank video_id score coarse_score`, ranks 1.. per query,
  finite scores (NaN/inf are refused).
- Training captions (what `eercf train --captions` reads): JSONL `{"video_id": ..., "text": ...}`.

Writers (`write_queries`, `write_ground_truth`, `write_captions`; `write_tsv` for two-column TSVs,
also the video manifest in eercf_core.files.inputs) produce exactly what the readers accept; a
field that
would break its line (a tab or newline) is a ValueError.

Lines are read by the one text layer (`eercf_core.files.lines`: fsspec, BOM, `file:line`
errors, header detection, id checks, duplicates). Every parse error is a `FormatError` whose
message starts with `file:line:`. Outputs are written
with `eercf_core.files.atomic`, so a failed run leaves no half-written file.
Paths are local or fsspec URLs.
"""
from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

from eercf_core.files import paths
from eercf_core.files.atomic import write_text
from eercf_core.files.ids import control_character_problem
from eercf_core.files.lines import (
    FormatError,
    UniqueIds,
    check_id,
    is_header,
    read_jsonl,
    read_lines,
)

RANKED_COLUMNS = ("query_id", "rank", "video_id", "score", "coarse_score")


@dataclass(frozen=True)
class Query:
    query_id: str
    text: str
    line: int  # 1-based line in its file


@dataclass(frozen=True)
class RankedRow:
    query_id: str
    rank: int  # 1-based
    video_id: str
    score: float
    coarse_score: float


def coarse_order(rows: Sequence[RankedRow]) -> list[RankedRow]:
    """One query's listed rows in coarse order (coarse_score descending, ties by rank)."""
    return sorted(rows, key=lambda r: (-r.coarse_score, r.rank))


def coarse_ranks(rows: Sequence[RankedRow]) -> dict[str, int]:
    """video_id -> 1-based rank in the coarse order of one query's listed rows: where each video
    stood before the rerank."""
    return {row.video_id: position for position, row in enumerate(coarse_order(rows), start=1)}


def ranked_meta_path(ranked_path: str) -> str:
    """`<ranked>.meta.json`: what the query job records beside a ranked TSV (mode, k, index)."""
    return f"{ranked_path}.meta.json"


def read_ranked_meta(ranked_path: str) -> dict:
    """The meta file beside a ranked TSV (see `ranked_meta_path`); {} when there is none."""
    fs, target = paths.filesystem(ranked_meta_path(ranked_path))
    return json.loads(fs.cat(target)) if fs.exists(target) else {}


def _is_jsonl(path: str) -> bool:
    if str(path).endswith((".jsonl", ".json")):
        return True
    for _, line in read_lines(path):
        if line.strip():
            return line.lstrip().startswith("{")
    return False


def read_queries(path: str) -> list[Query]:
    """Parse a query file (TSV or JSONL, see module doc) into queries in file order."""
    queries: list[Query] = []
    seen = UniqueIds(path, "query_id")
    rows: Iterator[tuple[int, object, object]]
    if _is_jsonl(path):
        rows = ((number, record.get("query_id"), record.get("text"))
                for number, record in read_jsonl(path))
    else:
        rows = _tsv_queries(path)
    for number, raw_id, text in rows:
        query_id = check_id(raw_id, path, number, "query_id")
        if text is not None and not isinstance(text, str):
            raise FormatError(path, number, f"text must be a string, got {type(text).__name__}")
        if text is None or not text.strip():
            raise FormatError(path, number, f"query {query_id!r} has empty text")
        seen.add(query_id, number)
        queries.append(Query(query_id, text.strip(), number))
    if not queries:
        raise FormatError(path, None, "no queries found")
    return queries


def _tsv_queries(path: str) -> Iterator[tuple[int, object, object]]:
    """(line, query_id, text) of a `query_id<TAB>text` file, its optional header skipped."""
    first = True
    for number, line in read_lines(path):
        if not line.strip():
            continue
        if first and is_header(line.split("\t")[:2], ("query_id", "text")):
            first = False
            continue
        first = False
        if "\t" not in line:
            raise FormatError(path, number, "expected 'query_id<TAB>text' (no tab found)")
        query_id, text = line.split("\t", 1)
        yield number, query_id, text


def read_ground_truth(path: str) -> dict[str, list[tuple[str, int]]]:
    """query_id -> [(video_id, line), ...] from a `query_id<TAB>video_id` TSV (header optional)."""
    truth: dict[str, list[tuple[str, int]]] = {}
    first = True
    for number, line in read_lines(path):
        if not line.strip():
            continue
        fields = line.split("\t")
        if first and is_header(fields, ("query_id", "video_id")):
            first = False
            continue
        first = False
        if len(fields) != 2:
            raise FormatError(path, number, f"expected 'query_id<TAB>video_id', got {len(fields)} "
                              "tab-separated fields")
        if not fields[0].strip() or not fields[1].strip():
            raise FormatError(path, number, "empty query_id or video_id")
        query_id = check_id(fields[0], path, number, "query_id")
        video_id = check_id(fields[1], path, number, "video_id")
        truth.setdefault(query_id, []).append((video_id, number))
    if not truth:
        raise FormatError(path, None, "no ground-truth rows found")
    return truth


def iter_ranked_rows(path: str) -> Iterator[RankedRow]:
    """The rows of a ranked TSV in file order, each checked as it is read: 5 fields, an integer
    rank, finite scores, ranks running 1, 2, ... per query (FormatError `file:line: ...`).
    Memory: one row plus a query -> rows-so-far count (O(queries))."""
    counts: dict[str, int] = {}
    header_seen = False
    for number, line in read_lines(path):
        if not line.strip():
            continue
        fields = line.split("\t")
        if not header_seen and is_header(fields, RANKED_COLUMNS):
            header_seen = True
            continue
        header_seen = True
        if len(fields) != len(RANKED_COLUMNS):
            raise FormatError(path, number, f"expected {len(RANKED_COLUMNS)} tab-separated fields "
                              f"{RANKED_COLUMNS}, got {len(fields)}")
        query_id, rank, video_id, score, coarse = fields
        try:
            row = RankedRow(query_id, int(rank), video_id, float(score), float(coarse))
        except ValueError:
            raise FormatError(path, number, "rank must be an integer and scores numbers") from None
        if not (math.isfinite(row.score) and math.isfinite(row.coarse_score)):
            raise FormatError(path, number, f"scores must be finite numbers, got score {score!r} "
                              f"and coarse_score {coarse!r}")
        listed = counts.get(query_id, 0)
        if row.rank != listed + 1:
            raise FormatError(path, number, f"query {query_id!r}: rank {row.rank} follows rank "
                              f"{listed} (ranks must run 1, 2, ... per query, grouped)")
        counts[query_id] = row.rank
        yield row
    if not counts:
        raise FormatError(path, None, "no ranked rows found")


def read_ranked(path: str) -> dict[str, list[RankedRow]]:
    """query_id -> rows in rank order from a ranked TSV; ranks must run 1, 2, ... per query."""
    ranked: dict[str, list[RankedRow]] = {}
    for row in iter_ranked_rows(path):
        ranked.setdefault(row.query_id, []).append(row)
    return ranked


def ranked_lines(rows: Iterable[Sequence]) -> Iterator[str]:
    """The ranked TSV text: header, then one line per (query_id, rank, video_id, score, coarse)."""
    yield "\t".join(RANKED_COLUMNS) + "\n"
    for query_id, rank, video_id, score, coarse in rows:
        yield f"{query_id}\t{rank}\t{video_id}\t{score:.6f}\t{coarse:.6f}\n"


def _tsv_field(value: str, what: str) -> str:
    value = str(value)
    if not value or any(ch in value for ch in "\t\r\n"):
        raise ValueError(f"{what} {value!r} is empty or holds a tab/newline: cannot be written as "
                         "a TSV field")
    problem = control_character_problem(value) if what.endswith("_id") else None
    if problem:  # the readers refuse such ids (eercf_core.files.ids): never write one
        raise ValueError(f"{what} {value!r} {problem}")
    return value


def write_tsv(path: str, header: tuple[str, str], rows: Iterable[tuple[str, str]]) -> int:
    """Write a two-column TSV with its header atomically; returns the number of rows."""
    lines = ["\t".join(header) + "\n"]
    lines += [f"{_tsv_field(a, header[0])}\t{_tsv_field(b, header[1])}\n" for a, b in rows]
    write_text(path, lines)
    return len(lines) - 1


def write_queries(path: str, queries: Iterable[tuple[str, str]]) -> int:
    """Query TSV (`query_id<TAB>text` with header) from (query_id, text); returns the count."""
    return write_tsv(path, ("query_id", "text"), queries)


def write_ground_truth(path: str, pairs: Iterable[tuple[str, str]]) -> int:
    """Ground-truth TSV (`query_id<TAB>video_id` with header); returns the number of rows."""
    return write_tsv(path, ("query_id", "video_id"), pairs)


def write_captions(path: str, captions: Iterable[tuple[str, str]]) -> int:
    """Training captions JSONL ({"video_id", "text"} per line, ASCII-escaped) for `eercf train`."""
    lines = [json.dumps({"video_id": video_id, "text": text}) + "\n" for video_id, text in captions]
    write_text(path, lines)
    return len(lines)
