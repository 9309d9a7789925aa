"""MSVD in the CLIP4Clip-style layout.

- `raw-captions.pkl`: video id -> list of captions, each a list of tokens (joined with spaces) or
  a string; loaded with `safe_pickle` (untrusted input: only dicts, lists and strings);
- `train_list.txt`, `val_list.txt`, `test_list.txt`: one video id per line -> splits `train`,
  `val`, `test`; every caption of a video is a training caption and a query (the multi-caption
  protocol: each caption ranks the videos).
Videos: `<id>.avi`.
"""
from __future__ import annotations

from pathlib import Path

from eercf_core.datasets.common import (
    AnnotationError,
    Benchmark,
    KnownSize,
    caption_split,
    read_id_list,
    require,
)
from eercf_core.datasets.safe_pickle import load_plain_pickle

CAPTIONS = "raw-captions.pkl"
SPLITS = {"train": ("train_list.txt", KnownSize(1200, source="MSVD standard split")),
          "val": ("val_list.txt", KnownSize(100, source="MSVD standard split")),
          "test": ("test_list.txt", KnownSize(670, source="MSVD standard split"))}


def video_file_names(video_id: str) -> list[str]:
    return [f"{video_id}.avi"]


def read_captions(path: Path) -> dict[str, list[str]]:
    """video id -> caption strings from raw-captions.pkl (token lists joined with spaces)."""
    data = load_plain_pickle(path)
    if not isinstance(data, dict):
        raise AnnotationError(f"{path}: expected a dict video id -> captions, got "
                              f"{type(data).__name__}")
    out: dict[str, list[str]] = {}
    for video_id, captions in data.items():
        where = f"{path}: video {video_id!r}"
        if not isinstance(video_id, str) or not isinstance(captions, list):
            raise AnnotationError(f"{where}: expected a string id mapping to a list of captions")
        texts = []
        for number, caption in enumerate(captions):
            if isinstance(caption, list) and all(isinstance(t, str) for t in caption):
                texts.append(" ".join(caption))
            elif isinstance(caption, str):
                texts.append(caption)
            else:
                raise AnnotationError(f"{where}: caption {number} is neither a list of token "
                                      "strings nor a string")
        out[video_id] = texts
    return out


def load(annotations: Path) -> Benchmark:
    """The MSVD splits whose list files are in `annotations` (raw-captions.pkl is required)."""
    present = {n: f for n, (f, _) in SPLITS.items() if (annotations / f).is_file()}
    if not present:
        raise AnnotationError(f"{annotations}: no MSVD split lists found (expected "
                              f"{', '.join(f for f, _ in SPLITS.values())} with {CAPTIONS})")
    captions_path = require(annotations, CAPTIONS)
    by_video = read_captions(captions_path)
    splits = []
    for name, file_name in present.items():
        path = annotations / file_name
        ids = read_id_list(path)
        lacking = [v for v in ids if v not in by_video]
        if lacking:
            raise AnnotationError(f"{path}: {len(lacking)} videos have no captions in {CAPTIONS} "
                                  f"(e.g. {lacking[0]!r})")
        splits.append(caption_split(name, ids, by_video, [str(path), str(captions_path)],
                                    SPLITS[name][1], "every caption is a query (multi-caption)"))
    notes = [f"{f} not found: split {n} not written" for n, (f, _) in SPLITS.items()
             if n not in present]
    return Benchmark("msvd", splits, video_file_names, notes)
