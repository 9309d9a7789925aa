"""The Beam `ModelHandler` of `eercf extract`: batches of decoded videos -> shard rows.

The model is loaded once per worker process (and reused from the launcher when the runner is
in-process); CUDA with fp16 autocast for the image tower when available, CPU fp32 otherwise.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from apache_beam.ml.inference.base import ModelHandler

from eercf_core.model.features import VideoFeatures
from eercf_core.model.network import EercfModel
from eercf_core.model.spec import ModelSpec, load_model_spec
from eercf_core.video.decode import DecodedVideo
from eercf_core.video.previews import encode_previews
from schemas import FEATURE_COLUMNS, FEATURE_OF_COLUMN, STATUS_OK

_LOADED: dict[ModelSpec, Any] = {}  # one model per process and spec


def build_model(spec: ModelSpec) -> EercfModel:
    """The model of `spec` (eercf_core.model.spec.load_model_spec), cached per process."""
    if spec not in _LOADED:
        _LOADED[spec] = load_model_spec(spec)
    return _LOADED[spec]


@dataclass
class DecodedItem:
    """A video on its way to the model, with the shard it belongs to.

    `decoded` holds its frames; a video that failed to decode has `decoded=None` and its finished
    shard row in `error_row` (it passes through the model step untouched).
    """

    shard: str
    shard_count: int  # rows the shard will hold
    video_id: str
    uri: str
    decoded: DecodedVideo | None
    error_row: dict | None = None


def feature_rows(items: Sequence[DecodedItem], features: VideoFeatures, previews: bool = True
                 ) -> list[dict]:
    """Shard rows (schema field names) for `items` and their VideoFeatures (same order).

    `previews`: add the preview JPEG columns, made from the decoded frames
    (eercf_core.video.previews).
    """
    as_f16 = {column: getattr(features, FEATURE_OF_COLUMN[column]).detach().cpu().numpy()
              .astype(np.float16) for column in FEATURE_COLUMNS}
    rows = []
    for i, item in enumerate(items):
        decoded = _decoded(item)
        row = {"video_id": item.video_id, "uri": item.uri, "status": STATUS_OK, "error": None,
               **decoded.facts(), "frame_mask": decoded.mask.copy()}
        for name, values in as_f16.items():
            row[name] = values[i].reshape(-1)
        if previews:
            row.update(encode_previews(decoded.frames, decoded.mask))
        rows.append(row)
    return rows


def _decoded(item: DecodedItem) -> DecodedVideo:
    """The decoded frames of an item that has them (an error item never reaches the model)."""
    if item.decoded is None:
        raise ValueError(f"{item.video_id}: no decoded frames (an error row)")
    return item.decoded


class EercfModelHandler(ModelHandler):
    """RunInference handler: DecodedItem batches -> (shard, shard_count, row) tuples.

    Its input elements are already batches (lists of DecodedItems, cut by the decode step from
    one chunk), so RunInference skips BatchElements: that transform holds its last batch until
    bundle end, and runners that drop bundle-end output (Beam's Dask runner) lost it.
    """

    def __init__(self, spec: ModelSpec, previews: bool = True):
        super().__init__()
        self.spec, self.previews = spec, previews

    def load_model(self) -> EercfModel:
        return build_model(self.spec)

    def run_inference(self, batch: Sequence[DecodedItem], model: Any,
                      inference_args: dict[str, Any] | None = None) -> Iterable[tuple]:
        import torch

        results = [(item.shard, item.shard_count, item.error_row) for item in batch
                   if item.decoded is None]
        ok = [item for item in batch if item.decoded is not None]
        if ok:
            frames = np.stack([_decoded(item).frames for item in ok])
            mask = np.stack([_decoded(item).mask for item in ok])
            with torch.inference_mode():
                features = model.encode_video(frames, mask, batch_size=len(ok))
            results += [(item.shard, item.shard_count, row)
                        for item, row in zip(ok, feature_rows(ok, features, self.previews))]
        return results

    def should_skip_batching(self) -> bool:
        return True

    def get_num_bytes(self, batch: Sequence[DecodedItem]) -> int:
        # Beam's default pickles the batch just to measure it.
        return sum(item.decoded.frames.nbytes for item in batch if item.decoded is not None)

    def get_metrics_namespace(self) -> str:
        return "eercf_extract"
