"""MSR-VTT in the CLIP4Clip-style layout (the split files the official EERCF code reads).

- `MSRVTT_data.json`: `sentences` [{`video_id`, `caption`, ...}] (20 captions per video);
- `MSRVTT_train.9k.csv` / `MSRVTT_train.7k.csv`: a `video_id` column -> splits `train_9k`,
  `train_7k` (every caption of each video, from MSRVTT_data.json);
- `MSRVTT_JSFUSION_test.csv` (`key, vid_key, video_id, sentence`): the 1k-A test, one caption per
  video -> split `test_1k`, query id = `key` (e.g. `ret0`).
Videos: `<video_id>.mp4`. A split whose files are absent is skipped (noted); none at all is an
error.
"""
from __future__ import annotations

from pathlib import Path

from eercf_core.datasets.common import (
    AnnotationError,
    Benchmark,
    EvalQuery,
    KnownSize,
    Split,
    caption_split,
    check_video_id,
    clean_text,
    read_csv_rows,
    read_json,
    require,
    unique_ids,
)

DATA = "MSRVTT_data.json"
TEST = "MSRVTT_JSFUSION_test.csv"
TRAIN = {"train_9k": ("MSRVTT_train.9k.csv", KnownSize(9000, 180000, "CLIP4Clip 9k split")),
         "train_7k": ("MSRVTT_train.7k.csv", KnownSize(7010, 140200, "CLIP4Clip 7k split"))}
TEST_KNOWN = KnownSize(1000, 1000, "JSFusion 1k-A test")


def video_file_names(video_id: str) -> list[str]:
    return [f"{video_id}.mp4"]


def _captions_by_video(path: Path) -> dict[str, list[str]]:
    data = read_json(path)
    sentences = data.get("sentences") if isinstance(data, dict) else None
    if not isinstance(sentences, list):
        raise AnnotationError(f"{path}: expected an object with a 'sentences' list")
    by_video: dict[str, list[str]] = {}
    for number, item in enumerate(sentences):
        where = f"{path}: sentences[{number}]"
        if not isinstance(item, dict) or not isinstance(item.get("caption"), str):
            raise AnnotationError(f"{where}: needs 'video_id' and a string 'caption'")
        by_video.setdefault(check_video_id(item.get("video_id"), where), []).append(item["caption"])
    return by_video


def _train_split(annotations: Path, name: str, by_video: dict[str, list[str]]) -> Split:
    file_name, known = TRAIN[name]
    path = annotations / file_name
    ids = unique_ids((check_video_id((row["video_id"] or "").strip(), f"{path}:{line}"),
                      f"{path}:{line}") for line, row in read_csv_rows(path, ["video_id"]))
    lacking = [v for v in ids if v not in by_video]
    if lacking:
        raise AnnotationError(f"{path}: {len(lacking)} videos have no caption in {DATA} (e.g. "
                              f"{lacking[0]!r})")
    return caption_split(name, ids, by_video, [str(path), str(annotations / DATA)], known,
                         "every caption of every video is a training caption and a query")


def _test_split(path: Path) -> Split:
    queries, seen_keys = [], set()
    for line, row in read_csv_rows(path, ["key", "video_id", "sentence"]):
        where = f"{path}:{line}"
        key = (row["key"] or "").strip()
        if not key or key in seen_keys:
            raise AnnotationError(f"{where}: key {key!r} empty or repeated")
        seen_keys.add(key)
        text = clean_text(row["sentence"] or "")
        if not text:
            raise AnnotationError(f"{where}: empty sentence")
        video_id = check_video_id((row["video_id"] or "").strip(), where)
        queries.append((EvalQuery(key, text, video_id), where))
    ids = unique_ids((q.video_id, where) for q, where in queries)
    return Split("test_1k", ids, [(q.video_id, q.text) for q, _ in queries],
                 [q for q, _ in queries], "1k-A: one caption (the JSFusion sentence) per video",
                 [str(path)], TEST_KNOWN)


def load(annotations: Path) -> Benchmark:
    """The MSR-VTT splits whose files are in `annotations` (see module doc)."""
    splits, notes = [], []
    train_present = [n for n, (f, _) in TRAIN.items() if (annotations / f).is_file()]
    if train_present:
        by_video = _captions_by_video(require(annotations, DATA))
        splits += [_train_split(annotations, name, by_video) for name in train_present]
    notes += [f"{f} not found: split {n} not written" for n, (f, _) in TRAIN.items()
              if n not in train_present]
    if (annotations / TEST).is_file():
        splits.append(_test_split(annotations / TEST))
    else:
        notes.append(f"{TEST} not found: split test_1k not written")
    if not splits:
        raise AnnotationError(f"{annotations}: no MSR-VTT split files found (expected "
                              f"{TEST} and/or {', '.join(f for f, _ in TRAIN.values())} with "
                              f"{DATA})")
    return Benchmark("msrvtt", splits, video_file_names, notes)
