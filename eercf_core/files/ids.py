"""Validation of the ids that travel through every file format (video_id, query_id).

Ids end up in TSV files (ranked output, ground truth) and in line-based formats, where a TAB,
a line break or another control character silently shifts or splits a record. Such ids are
refused where they enter (manifests, query files, ground truth, shards), with file:line.
Refused: Unicode control characters (category Cc: C0 incl. TAB/LF/CR, DEL, C1) and the
line/paragraph separators U+2028/U+2029 (line breaks for str.splitlines and many tools).
"""
from __future__ import annotations

import unicodedata

_SEPARATORS = {"\u2028": "LINE SEPARATOR", "\u2029": "PARAGRAPH SEPARATOR"}
_NAMES = {"\t": "TAB", "\n": "LF (line feed)", "\r": "CR (carriage return)", "\x00": "NUL",
          "\x7f": "DEL"}


def control_character_problem(value: str) -> str | None:
    """None when `value` has no control character, else what and where, e.g.
    `contains a TAB (U+0009) at position 4`. Positions are 1-based characters."""
    if value.isprintable():  # fast path: no Cc, no U+2028/U+2029 (neither is printable)
        return None
    for position, char in enumerate(value, start=1):
        if char in _SEPARATORS or unicodedata.category(char) == "Cc":
            name = _NAMES.get(char) or _SEPARATORS.get(char) or "control character"
            return f"contains a {name} (U+{ord(char):04X}) at position {position}"
    return None
