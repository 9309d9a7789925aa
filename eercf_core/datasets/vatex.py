"""VATEX v1.0 as released: `vatex_training_v1.0.json`, `vatex_validation_v1.0.json`.

Each file is a list of {`videoID`, `enCap` (10 English captions), `chCap`, ...} -> splits `train`
and `val`; the English captions only. Every caption is a training caption and a query (the
multi-caption protocol). Videos are named by `videoID` (`<videoID>.mp4`, else `.mkv`/`.webm`: the
formats YouTube downloads come in). The 1,500/1,500 val/test halves some papers use need their
own split lists and are not produced.
"""
from __future__ import annotations

from pathlib import Path

from eercf_core.datasets.common import (
    AnnotationError,
    Benchmark,
    KnownSize,
    caption_split,
    check_video_id,
    read_json,
    unique_ids,
)

SPLITS = {"train": ("vatex_training_v1.0.json", KnownSize(25991, 259910, "VATEX v1.0 release")),
          "val": ("vatex_validation_v1.0.json", KnownSize(3000, 30000, "VATEX v1.0 release"))}
SUFFIXES = (".mp4", ".mkv", ".webm")


def video_file_names(video_id: str) -> list[str]:
    return [video_id + suffix for suffix in SUFFIXES]


def _read(path: Path) -> tuple[list[str], dict[str, list[str]]]:
    records = read_json(path)
    if not isinstance(records, list):
        raise AnnotationError(f"{path}: expected a JSON list of {{videoID, enCap}} records")
    by_video, places = {}, []
    for number, record in enumerate(records):
        where = f"{path}: record {number}"
        if not isinstance(record, dict):
            raise AnnotationError(f"{where}: expected an object")
        video_id = check_video_id(record.get("videoID"), where)
        captions = record.get("enCap")
        if not isinstance(captions, list) or not all(isinstance(c, str) for c in captions):
            raise AnnotationError(f"{where} ({video_id}): 'enCap' must be a list of strings")
        places.append((video_id, where))
        by_video[video_id] = captions
    return unique_ids(places), by_video


def load(annotations: Path) -> Benchmark:
    """The VATEX splits whose files are in `annotations`."""
    splits, notes = [], []
    for name, (file_name, known) in SPLITS.items():
        path = annotations / file_name
        if not path.is_file():
            notes.append(f"{file_name} not found: split {name} not written")
            continue
        ids, by_video = _read(path)
        splits.append(caption_split(name, ids, by_video, [str(path)], known,
                                    "every English caption is a query (multi-caption)"))
    if not splits:
        raise AnnotationError(f"{annotations}: no VATEX annotation files found (expected "
                              f"{' and/or '.join(f for f, _ in SPLITS.values())})")
    return Benchmark("vatex", splits, video_file_names, notes)
