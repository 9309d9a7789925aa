"""The Beam `ModelHandler` of `eercf extract`: batches of decoded videos -> shard rows.

The model is loaded once per worker process (and reused from the launcher when the runner is
in-process); CUDA with fp16 autocast for the image tower when available, CPU fp32 otherwise.

Importing this module (and so building the extract graph) imports neither torch nor open_clip:
the launcher of a remote run, or of a dry run, never needs them (~750 MB). Beam's
`apache_beam.ml.inference.base` imports torch through its optional `ModelManager`
(`model_manager.py`, a module-level `import torch` inside a try/except ImportError); it is
imported here with that one submodule hidden, so `ModelManager` is None until Beam itself
imports it lazily where it is used (not on the path eercf takes). Workers that unpickle the
graph import Beam normally. Import `RunInference` from here, not from Beam, so this happens first.
"""
from __future__ import annotations

import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from eercf_core.model.identity_cache import CACHE_NAME, ModelFacts
from eercf_core.model.spec import ModelSpec, load_model_spec
from eercf_core.video.decode import DecodedVideo
from eercf_core.video.previews import encode_previews
from schemas import FEATURE_COLUMNS, FEATURE_OF_COLUMN, STATUS_OK

if TYPE_CHECKING:  # torch: imported where a model is loaded or run, never by the graph
    from eercf_core.model.features import VideoFeatures
    from eercf_core.model.network import EercfModel

_BEAM_INFERENCE = "apache_beam.ml.inference.base"
_TORCH_IMPORTER = "apache_beam.ml.inference.model_manager"


def _import_beam_inference_without_torch() -> None:
    """Import Beam's inference base with its torch-importing ModelManager module hidden (see
    the module docstring); nothing when it is already imported or torch already is."""
    if _BEAM_INFERENCE in sys.modules or "torch" in sys.modules \
            or _TORCH_IMPORTER in sys.modules:
        return
    sys.modules[_TORCH_IMPORTER] = None  # type: ignore[assignment]  # import -> ImportError
    try:
        import apache_beam.ml.inference.base  # noqa: F401
    finally:
        del sys.modules[_TORCH_IMPORTER]


_import_beam_inference_without_torch()
from apache_beam.ml.inference.base import ModelHandler, RunInference  # noqa: E402

__all__ = ["DecodedItem", "EercfModelHandler", "RunInference", "build_model", "feature_rows"]

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

    def __init__(self, spec: ModelSpec, previews: bool = True,
                 expected: ModelFacts | None = None):
        super().__init__()
        self.spec, self.previews, self.expected = spec, previews, expected

    def load_model(self) -> EercfModel:
        """The model, loaded once per process. With `expected` (the identity the launcher took
        from its cache without loading the weights), a model that is not that one is refused:
        its rows would go into an output of another model."""
        model = build_model(self.spec)
        if self.expected is not None:
            facts = ModelFacts.of(model)
            if facts != self.expected:
                raise RuntimeError(
                    f"the model loaded on this worker ({facts.model_id}, weights "
                    f"{facts.checkpoint_sha256[:12]}, dims {facts.dims}) is not the one "
                    f"{CACHE_NAME} in the output names ({self.expected.model_id}, weights "
                    f"{self.expected.checkpoint_sha256[:12]}): the weights changed behind the "
                    f"cache; delete {CACHE_NAME} from the output and rerun")
        return model

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
