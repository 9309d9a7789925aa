"""ActivityNet Captions as released: `train.json`, `val_1.json` (and `val_2.json` if present).

Each file maps a video id (`v_<YouTube id>`) to {`duration`, `timestamps` [[start, end], ...],
`sentences` [...]}. Paragraph-to-video retrieval as the paper evaluates it: one query per video,
its sentences joined with spaces in time order (by start, then end, then file order); the query
id is the video id, and the paragraph is also the video's training caption. Video files:
`v_<id>.mp4` or `<id>.mp4` (both tried; then the same names with `.mkv`/`.webm`).
"""
from __future__ import annotations

from numbers import Real
from pathlib import Path

from eercf_core.datasets.common import (
    AnnotationError,
    Benchmark,
    EvalQuery,
    KnownSize,
    Split,
    check_video_id,
    clean_text,
    read_json,
)

SPLITS = {"train": ("train.json", KnownSize(10009, 10009, "ActivityNet Captions release")),
          "val_1": ("val_1.json", KnownSize(4917, 4917, "ActivityNet Captions release")),
          "val_2": ("val_2.json", KnownSize(4885, 4885, "ActivityNet Captions release"))}
SUFFIXES = (".mp4", ".mkv", ".webm")


def video_file_names(video_id: str) -> list[str]:
    bare = video_id[2:] if video_id.startswith("v_") else video_id
    return [stem + suffix for suffix in SUFFIXES for stem in (f"v_{bare}", bare)]


def paragraph(sentences: list[str], timestamps: list[list[float]]) -> str:
    """The sentences joined with single spaces in time order (start, end, then given order)."""
    order = sorted(range(len(sentences)), key=lambda i: (timestamps[i][0], timestamps[i][1], i))
    return " ".join(t for t in (clean_text(sentences[i]) for i in order) if t)


def _is_span(item: object) -> bool:
    return (isinstance(item, list) and len(item) == 2
            and all(isinstance(x, Real) and not isinstance(x, bool) for x in item))


def _split(name: str, path: Path, known: KnownSize) -> Split:
    data = read_json(path)
    if not isinstance(data, dict):
        raise AnnotationError(f"{path}: expected an object video id -> {{sentences, timestamps}}")
    queries = []
    for video_id, entry in data.items():
        where = f"{path}: video {video_id!r}"
        check_video_id(video_id, where)
        sentences = entry.get("sentences") if isinstance(entry, dict) else None
        timestamps = entry.get("timestamps") if isinstance(entry, dict) else None
        if (not isinstance(sentences, list) or not all(isinstance(s, str) for s in sentences)
                or not isinstance(timestamps, list) or not all(map(_is_span, timestamps))):
            raise AnnotationError(f"{where}: needs 'sentences' (strings) and 'timestamps' "
                                  "([start, end] numbers)")
        if len(sentences) != len(timestamps):
            raise AnnotationError(f"{where}: {len(sentences)} sentences but {len(timestamps)} "
                                  "timestamps")
        text = paragraph(sentences, timestamps)
        if not text:
            raise AnnotationError(f"{where}: all sentences are empty")
        queries.append(EvalQuery(video_id, text, video_id))
    return Split(name, [q.video_id for q in queries], [(q.video_id, q.text) for q in queries],
                 queries, "one paragraph per video: its sentences in time order", [str(path)],
                 known)


def load(annotations: Path) -> Benchmark:
    """The ActivityNet Captions splits whose files are in `annotations`."""
    splits, notes = [], []
    for name, (file_name, known) in SPLITS.items():
        path = annotations / file_name
        if path.is_file():
            splits.append(_split(name, path, known))
        else:
            notes.append(f"{file_name} not found: split {name} not written")
    if not splits:
        raise AnnotationError(f"{annotations}: no ActivityNet Captions files found (expected "
                              f"{', '.join(f for f, _ in SPLITS.values())})")
    return Benchmark("activitynet", splits, video_file_names, notes)
