"""What a model is (identity, dims, T, image size) without loading its weights, when known before.

A model's identity is a hash of every weight (`EercfModel.identity`): learning it means loading
the model (ViT-B/32: ~7 s and ~2 GB). `eercf extract` needs the identity before it knows whether
anything is left to do (resume refuses another model's output), so it keeps the answer in the
output directory (`model_identity.json`), keyed by where the weights came from:

- a checkpoint or `--pretrained` file: its absolute path/URL, size and modification time;
- an open_clip `--pretrained` tag: the tag and the installed open_clip version;
- `--random-init`: the head and seed;
plus the model name, T, and the installed torch / open_clip versions. A rerun whose key matches
reads the identity from there and loads the model only when there is work; whenever the model is
loaded anyway its real identity is compared and the file rewritten.
"""
from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from importlib import metadata
from typing import Any

from eercf_core.files import paths
from eercf_core.files.atomic import write_json
from eercf_core.model.spec import ModelSpec
from schemas import FeatureDims

log = logging.getLogger(__name__)

CACHE_NAME = "model_identity.json"
CACHE_FORMAT = "eercf.model-identity"


@dataclass(frozen=True)
class ModelFacts:
    """What extract needs to know of a model: identity (`model_id`, `checkpoint_sha256`), feature
    `dims`, frames per video `num_frames` and input `image_size` (pixels)."""

    model_id: str
    checkpoint_sha256: str
    dims: FeatureDims
    num_frames: int
    image_size: int

    @classmethod
    def of(cls, model: Any) -> ModelFacts:
        """The facts of a loaded EercfModel."""
        identity = model.identity
        return cls(identity.model_id, identity.checkpoint_sha256, model.dims,
                   int(model.num_frames), int(model.image_size))


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _file_stamp(url: str) -> dict[str, Any] | None:
    """{"path", "size", "mtime"} of a weights file, None when it is not a file whose change can
    be seen (then nothing is cached)."""
    try:
        fs, path = paths.filesystem(url)
        info = fs.info(path)
    except (OSError, ValueError):
        return None
    if info.get("type") != "file":
        return None
    stamp = info.get("mtime") or info.get("LastModified") or info.get("updated") \
        or info.get("ETag") or info.get("etag")
    if stamp is None:
        return None
    full = paths.absolute(url)
    return {"path": full, "size": int(info["size"]), "mtime": str(stamp)}


def cache_key(spec: ModelSpec) -> dict[str, Any] | None:
    """The key of `spec`'s weights (see module docstring); None when they cannot be keyed."""
    key: dict[str, Any] = {"source": spec.source, "num_frames": spec.num_frames,
                           "torch": _version("torch"), "open_clip": _version("open_clip_torch")}
    if spec.random_init:
        return {**key, "random_init": True, "head": spec.head or "eercf", "seed": spec.seed}
    looks_like_file = os.path.isfile(spec.source) or paths.is_url(spec.source)
    if looks_like_file:
        stamp = _file_stamp(spec.source)
        return None if stamp is None else {**key, "checkpoint": stamp}
    if spec.pretrained:
        if os.path.isfile(spec.pretrained) or paths.is_url(spec.pretrained):
            stamp = _file_stamp(spec.pretrained)
            return None if stamp is None else {**key, "pretrained": stamp}
        return {**key, "pretrained": spec.pretrained}
    return None


def load(output: str, spec: ModelSpec) -> ModelFacts | None:
    """The cached facts of `spec`'s model in `output`, or None (no cache, another key, or an
    unreadable file)."""
    key = cache_key(spec)
    if key is None:
        return None
    fs, path = paths.filesystem(f"{output.rstrip('/')}/{CACHE_NAME}")
    try:
        with fs.open(path, "rb") as handle:
            data = json.loads(handle.read())
        if data.get("format") != CACHE_FORMAT or data.get("key") != key:
            return None
        return ModelFacts(str(data["model_id"]), str(data["checkpoint_sha256"]),
                          FeatureDims.from_dict(data["dims"]), int(data["num_frames"]),
                          int(data["image_size"]))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        log.warning("%s/%s unreadable (%s); the model is loaded to learn its identity", output,
                    CACHE_NAME, exc)
        return None


def store(output: str, spec: ModelSpec, facts: ModelFacts) -> None:
    """Remember `facts` for `spec` in `output` (atomically); nothing when the weights cannot
    be keyed."""
    key = cache_key(spec)
    if key is None:
        return
    write_json(f"{output.rstrip('/')}/{CACHE_NAME}", {
        "format": CACHE_FORMAT, "key": key, "model_id": facts.model_id,
        "checkpoint_sha256": facts.checkpoint_sha256, "dims": facts.dims.to_dict(),
        "num_frames": facts.num_frames, "image_size": facts.image_size})
