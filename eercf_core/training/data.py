"""Training data: manifests, captions and sibling groups read as every job reads them, videos
decoded once with the extraction sampling, and the caption/video pairs the trainer consumes."""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

import eercf_core as ec
from eercf_core.errors import UserInputError
from eercf_core.files import inputs
from eercf_core.files.lines import FormatError, check_id, is_header, read_jsonl, read_lines
from eercf_core.progress import Progress
from eercf_core.training.trainer import TrainingPairs

log = logging.getLogger(__name__)


def read_manifest(path: str) -> dict[str, str]:
    """video_id -> uri from a manifest, parsed as `eercf extract` parses it (TSV/CSV/JSONL,
    fsspec URLs, URIs relative to the manifest); duplicate ids are an error."""
    refs = inputs.read_manifest(str(path))
    inputs.check_unique(refs)
    return {ref.video_id: ref.uri for ref in refs}


def read_captions(path: str, split: str | None) -> list[tuple[str, str]]:
    """(video_id, text) pairs from JSONL `{video_id, text[, split]}` (filtered by `split` where
    rows carry one) or TSV `video_id<TAB>text` (header optional); local path or fsspec URL, a
    BOM is fine, errors name file:line (the text layer, eercf_core.files.lines)."""
    rows: list[tuple[int, Any, Any]]
    if str(path).endswith((".jsonl", ".ndjson")):
        rows = [(n, row.get("video_id"), row.get("text")) for n, row in read_jsonl(path)
                if not split or row.get("split", split) == split]
    else:
        rows = []
        for n, line in read_lines(path):
            fields = line.split("\t", 1)
            if not line.strip() or (not rows and is_header(fields, ("video_id", "text"))):
                continue
            if len(fields) != 2:
                raise FormatError(path, n, "expected 'video_id<TAB>text' (no tab found)")
            rows.append((n, fields[0], fields[1]))
    pairs = []
    for n, video_id, text in rows:
        if not video_id or not isinstance(text, str) or not text.strip():
            raise FormatError(path, n, "a caption needs a video_id and non-empty text")
        pairs.append((check_id(video_id, path, n, "video_id"), text))
    if not pairs:
        raise UserInputError(f"{path}: no captions{f' in split {split!r}' if split else ''}")
    return pairs


def decode_all(uris: dict[str, str], image_size: int, num_frames: int, workers: int
               ) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Decode every video (method §2.1 sampling, early resize): ids, frames [V,T,S,S,3], mask [V,T].

    Decoding runs in the extract job's isolated pool: a video whose decoder fails, crashes or
    hangs is skipped with a warning, never the training run.
    """
    from eercf_core.video.decode import DecodeOptions, decode_job
    from eercf_core.video.isolation import IsolatedPool

    options = DecodeOptions(num_frames=num_frames, image_size=image_size)
    ids = list(uris)
    frames = np.zeros((len(ids), num_frames, image_size, image_size, 3), np.uint8)
    mask = np.zeros((len(ids), num_frames), bool)
    ok = np.zeros(len(ids), bool)
    progress = Progress("train decode", len(ids), "videos", logger=log)
    with IsolatedPool(decode_job, workers=max(1, workers)) as pool:
        for outcome in pool.imap_unordered([(uris[v], options) for v in ids]):
            i = outcome.index
            if outcome.ok:
                frames[i], mask[i], ok[i] = outcome.value.frames, outcome.value.mask, True
            else:
                log.warning("train: skipping video %s (%s): %s", ids[i], uris[ids[i]],
                            outcome.error)
            progress.add(1, failed=0 if outcome.ok else 1)
    keep = np.flatnonzero(ok)
    return [ids[i] for i in keep], frames[keep], mask[keep]


def load_model_for_training(init: str, pretrained: str | None, num_frames: int, seed: int,
                            device: str | None) -> ec.EercfModel:
    """A model with the EERCF head: from a checkpoint file, or a new one on an architecture."""
    if os.path.isfile(init):
        model = ec.load_model(init, device=device)
        if model.head is None:
            raise UserInputError(f"{init}: a zero-shot model has no EERCF head to train; pass an "
                                 "architecture name with --pretrained instead")
        return model
    return ec.create_model(init, pretrained=pretrained, head="eercf", num_frames=num_frames,
                           seed=seed, device=device)


def read_groups(corpus: Path) -> dict[str, int]:
    """video_id -> sibling group id, from a synthetic corpus's videos.jsonl."""
    path = str(corpus / "videos.jsonl")
    groups = {}
    for n, row in read_jsonl(path):
        try:
            groups[str(row["video_id"])] = int(row["group"])
        except (ValueError, KeyError, TypeError) as exc:
            raise FormatError(path, n, f"needs video_id and group: {exc!r}") from None
    return groups


def training_pairs(model: ec.EercfModel, video_ids: list[str], frames: np.ndarray, mask: np.ndarray,
                   captions: list[tuple[str, str]], groups: dict[str, int] | None = None
                   ) -> TrainingPairs:
    index = {v: i for i, v in enumerate(video_ids)}
    usable = [(index[v], t) for v, t in captions if v in index]
    dropped = len(captions) - len(usable)
    if dropped:
        log.warning("train: %d captions name videos that are missing or failed to decode", dropped)
    if not usable:
        raise UserInputError("no caption matches a decoded video")
    return TrainingPairs(torch.from_numpy(frames), torch.from_numpy(mask),
                         model.tokenize([t for _, t in usable]),
                         torch.tensor([i for i, _ in usable], dtype=torch.long),
                         None if groups is None else
                         torch.tensor([groups.get(v, -1 - i) for i, v in enumerate(video_ids)]))
