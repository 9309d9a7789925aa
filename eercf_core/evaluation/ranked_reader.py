"""A ranked TSV read in one pass as column blocks, with memory bounded by the block size.

`ranked_blocks(path)` yields `RankedBlock`s (Arrow string columns for the ids, numpy columns for
rank and scores) of at most about `block_bytes` of text each, in file order. The fast path is
Arrow's streaming CSV reader (tab-delimited, no quoting); the file must be what
`eercf_core.files.text_formats.read_ranked` accepts (header optional, ranks 1, 2, ... per query,
grouped by query, finite scores).

Errors: the fast path checks what it can vectorised (parse, finite scores; `RankedGroups` checks
ranks and grouping). When anything fails there, `python_blocks` re-reads the file line by line
with the exact rules of `read_ranked` and raises its `FormatError` naming `file:line`; a file the
Arrow parser refuses but the line rules accept (e.g. spaces around a number) is read by that path
to the end, with the same O(block) memory, only slower.
"""
from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from eercf_core.files import paths
from eercf_core.files.lines import is_header
from eercf_core.files.text_formats import RANKED_COLUMNS, iter_ranked_rows

log = logging.getLogger(__name__)

DEFAULT_BLOCK_BYTES = 4 << 20
PYTHON_BLOCK_ROWS = 200_000


@dataclass
class RankedBlock:
    """Rows [n] of a ranked TSV: query_id, video_id (pa.StringArray), rank (int64), score and
    coarse_score (float64); `first_line` is the 1-based file line of row 0 when known."""
    query_id: pa.Array
    rank: np.ndarray
    video_id: pa.Array
    score: np.ndarray
    coarse_score: np.ndarray

    def __len__(self) -> int:
        return len(self.rank)


class FastPathRefused(Exception):
    """The Arrow path cannot read or check this file; the line-by-line path decides."""


def _header_lines(path: str) -> int:
    """1 when the first line is the ranked header, 0 when it is data; FastPathRefused when the
    file starts with a blank line (Arrow would count lines differently)."""
    with paths.open_file(str(path), "rb") as handle:
        first = handle.readline()
    text = first.decode("utf-8", errors="replace").lstrip("\ufeff").rstrip("\r\n")
    if not text.strip():
        raise FastPathRefused("blank first line")
    return int(is_header(text.split("\t"), RANKED_COLUMNS))


def _finite(block: RankedBlock) -> None:
    if not (np.isfinite(block.score).all() and np.isfinite(block.coarse_score).all()):
        raise FastPathRefused("non-finite score")


def arrow_blocks(path: str, block_bytes: int = DEFAULT_BLOCK_BYTES) -> Iterator[RankedBlock]:
    """Blocks of the ranked TSV through Arrow's streaming CSV reader; FastPathRefused on any
    parse problem (the caller falls back to `python_blocks`)."""
    skip = _header_lines(path)
    types = {"query_id": pa.string(), "rank": pa.int64(), "video_id": pa.string(),
             "score": pa.float64(), "coarse_score": pa.float64()}
    read = pacsv.ReadOptions(column_names=list(RANKED_COLUMNS), skip_rows=skip,
                             block_size=block_bytes, use_threads=False)
    parse = pacsv.ParseOptions(delimiter="\t", quote_char=False, escape_char=False,
                               newlines_in_values=False, ignore_empty_lines=True)
    convert = pacsv.ConvertOptions(column_types=types, strings_can_be_null=False,
                                   quoted_strings_can_be_null=False, null_values=[],
                                   check_utf8=True)
    try:
        with paths.open_file(str(path), "rb") as handle:
            reader = pacsv.open_csv(handle, read_options=read, parse_options=parse,
                                    convert_options=convert)
            for batch in reader:
                if batch.num_rows == 0:
                    continue
                block = RankedBlock(
                    batch.column(0), batch.column(1).to_numpy(),
                    batch.column(2), batch.column(3).to_numpy(), batch.column(4).to_numpy())
                _finite(block)
                yield block
    except (pa.ArrowInvalid, pa.ArrowTypeError, UnicodeDecodeError) as exc:
        raise FastPathRefused(str(exc).splitlines()[0]) from None


def python_blocks(path: str, rows_per_block: int = PYTHON_BLOCK_ROWS) -> Iterator[RankedBlock]:
    """Blocks of the ranked TSV parsed line by line with the rules of `read_ranked`, raising its
    FormatError (`file:line: ...`) at the first bad line, ranks and grouping included.

    Memory: one block plus a query -> row count map (O(queries)) for the grouping check."""
    columns: list[list] = [[], [], [], [], []]
    for row in iter_ranked_rows(path):
        for column, value in zip(columns, (row.query_id, row.rank, row.video_id, row.score,
                                           row.coarse_score)):
            column.append(value)
        if len(columns[0]) >= rows_per_block:
            yield _python_block(columns)
            columns = [[], [], [], [], []]
    if columns[0]:
        yield _python_block(columns)


def _python_block(columns: list[list]) -> RankedBlock:
    return RankedBlock(pa.array(columns[0], pa.string()), np.asarray(columns[1], np.int64),
                       pa.array(columns[2], pa.string()), np.asarray(columns[3], np.float64),
                       np.asarray(columns[4], np.float64))
