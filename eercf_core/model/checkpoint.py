"""Model loading and saving: one entry point, three sources, recognised automatically.

- an open_clip model name, with a pretrained tag (`"openai"`) or a local open_clip checkpoint
  file: zero-shot mode (no EERCF head);
- the official EERCF `pytorch_model.bin` (method §9): `clip.*` into open_clip (QuickGELU), the 51
  extra tensors into the temporal head;
- the project's own checkpoints (`ec.save_model`, written by `eercf train`).
Checkpoints are read with `torch.load(weights_only=True)`: loading never executes code.
"""
from __future__ import annotations

import logging
import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from eercf_core.config import NUM_FRAMES
from eercf_core.errors import UserInputError
from eercf_core.files import paths
from eercf_core.files.atomic import open_atomic
from eercf_core.model.device import resolve_device
from eercf_core.model.lean_imports import import_open_clip
from eercf_core.model.network import EercfModel
from eercf_core.model.temporal import TemporalHead

log = logging.getLogger(__name__)

CHECKPOINT_FORMAT = "eercf-checkpoint"
CHECKPOINT_VERSION = 1
_CONFIG_DIR = Path(__file__).parent / "configs"
_HEAD_KEYS = ("global_mat_weight", "frame_logit_weight", "frame_position_embeddings.weight")
_HEAD_RENAMES = {"global_mat_weight": "global_weight", "frame_logit_weight": "frame_logit_weight",
                 "frame_position_embeddings.weight": "frame_position_embeddings.weight"}


class CheckpointError(UserInputError):
    """A checkpoint that cannot be loaded: unknown layout, missing or mismatched keys."""


def register_model_configs() -> None:
    """Register the project's tiny open_clip configs (eercf-tiny, eercf-small) with open_clip."""
    open_clip = import_open_clip()

    if "eercf-tiny" not in open_clip.list_models():
        open_clip.add_model_config(_CONFIG_DIR)


def check_model_name(name: str) -> None:
    """UserInputError unless `name` is an open_clip config (the project's tiny ones included)."""
    open_clip = import_open_clip()

    register_model_configs()
    if name not in open_clip.list_models():
        raise UserInputError(f"unknown model name {name!r}: not a file and not an open_clip "
                             "config; e.g. ViT-B-32, ViT-B-16, eercf-tiny "
                             "(open_clip.list_models() lists all)")


def _device(device: str | torch.device | None) -> torch.device:
    return resolve_device(device)  # None / "auto": CUDA when visible here


def _finish(model: EercfModel, device: torch.device) -> EercfModel:
    return model.float().to(device).eval()


def create_model(
    name: str,
    pretrained: str | None = None,
    head: str = "eercf",
    num_frames: int = NUM_FRAMES,
    seed: int | None = None,
    device: str | torch.device | None = None,
) -> EercfModel:
    """A new model on the open_clip architecture `name`.

    pretrained: None (random init), an open_clip tag such as "openai", or an open_clip
                checkpoint file (local, or a URL fetched once into the local cache).
    head: "eercf" (temporal head initialised as the official code does: text layers 0-3, text
          positions, W_g = W_f = I) or "zero-shot" (no head).
    seed: seeds torch/numpy/random before building, for reproducible random weights.
    """
    open_clip = import_open_clip()

    register_model_configs()
    if head not in ("eercf", "zero-shot"):
        raise ValueError(f"head must be 'eercf' or 'zero-shot', got {head!r}")
    check_model_name(name)
    if pretrained and paths.is_url(pretrained):  # open_clip takes a local file: fetched once
        pretrained = paths.fetch(pretrained)
    if pretrained and pretrained.lower() not in open_clip.list_pretrained_tags_by_model(name) \
            and not os.path.exists(pretrained):
        tags = open_clip.list_pretrained_tags_by_model(name)
        raise UserInputError(f"pretrained {pretrained!r} for {name}: neither a local file nor a "
                             f"known tag (known tags: {tags})")
    if seed is not None:
        torch.manual_seed(seed)
        np.random.seed(seed)
        random.seed(seed)
    clip = open_clip.create_model(name, pretrained=pretrained or None,
                                  force_quick_gelu=(pretrained or "").lower() == "openai")
    config = open_clip.get_model_config(name) or {}
    if (pretrained or "").lower() == "openai":
        config["quick_gelu"] = True
    temporal = None
    if head == "eercf":
        temporal = TemporalHead(int(clip.visual.proj.shape[1]), num_frames)
        temporal.init_from_text_tower(clip)
    return _finish(EercfModel(clip, temporal, name, num_frames, config), _device(device))


def save_model(model: EercfModel, path: str, extra: dict[str, Any] | None = None) -> str:
    """Write a project checkpoint (atomic: temp file, then rename). Returns the content hash."""
    identity = model.refresh_identity()
    payload = {
        "format": CHECKPOINT_FORMAT,
        "format_version": CHECKPOINT_VERSION,
        "arch": model.arch,
        "model_config": model.model_config,
        "head": model.mode,
        "num_frames": model.num_frames,
        "checkpoint_sha256": identity.checkpoint_sha256,
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "extra": extra or {},
    }
    with open_atomic(path) as handle:
        torch.save(payload, handle)
    return identity.checkpoint_sha256


def _read_checkpoint(path: str) -> dict:
    try:
        with paths.storage_errors(path, "read the checkpoint"), \
                open(paths.fetch(path), "rb") as f:
            data = torch.load(f, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise FileNotFoundError(f"checkpoint not found: {path}") from None
    except Exception as exc:  # pickle/zip errors come in many types
        raise CheckpointError(f"{path}: not a readable torch checkpoint ({type(exc).__name__}: "
                              f"{exc})") from exc
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: expected a dict, found {type(data).__name__}")
    return data


def _load_project(path: str, data: dict, device: torch.device) -> EercfModel:
    open_clip = import_open_clip()

    register_model_configs()
    if data.get("format_version", 0) > CHECKPOINT_VERSION:
        raise CheckpointError(f"{path}: checkpoint format version {data['format_version']} is "
                              f"newer than this eercf understands ({CHECKPOINT_VERSION})")
    arch, config = data["arch"], dict(data.get("model_config") or {})
    clip = open_clip.model.CLIP(**config) if config else open_clip.create_model(arch)
    num_frames = int(data["num_frames"])
    temporal = None if data["head"] == "zero-shot" else TemporalHead(int(clip.visual.proj.shape[1]),
                                                                     num_frames)
    model = EercfModel(clip, temporal, arch, num_frames, config)
    _load_strict(path, model, data["state_dict"])
    return _finish(model, device)


def _load_strict(path: str, model: torch.nn.Module, state_dict: dict) -> None:
    result = model.load_state_dict(state_dict, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise CheckpointError(
            f"{path}: keys do not match the model: missing {result.missing_keys[:10]}"
            f"{' ...' if len(result.missing_keys) > 10 else ''}, unexpected "
            f"{result.unexpected_keys[:10]}{' ...' if len(result.unexpected_keys) > 10 else ''}")


def _official_arch(clip_sd: dict[str, torch.Tensor]) -> str:
    width = clip_sd["visual.conv1.weight"].shape[0]
    patch = clip_sd["visual.conv1.weight"].shape[-1]
    layers = len({k.split(".")[3] for k in clip_sd
                  if k.startswith("visual.transformer.resblocks.")})
    known = {(768, 32, 12): "ViT-B-32", (768, 16, 12): "ViT-B-16", (1024, 14, 24): "ViT-L-14"}
    return known.get((width, patch, layers), f"openai-vit-w{width}-p{patch}-l{layers}")


def _load_official(path: str, state_dict: dict, device: torch.device) -> EercfModel:
    """The released EERCF checkpoint layout (method §9)."""
    build_model_from_openai_state_dict = import_open_clip().model.build_model_from_openai_state_dict

    clip_sd = {k[len("clip."):]: v for k, v in state_dict.items() if k.startswith("clip.")}
    try:
        clip = build_model_from_openai_state_dict(dict(clip_sd), quick_gelu=True, cast_dtype=None)
    except Exception as exc:
        raise CheckpointError(f"{path}: the clip.* tensors do not form an OpenAI CLIP ViT "
                              f"({type(exc).__name__}: {exc})") from exc
    embed_dim = int(clip.visual.proj.shape[1])
    num_frames = int(state_dict["frame_logit_weight"].shape[0])
    temporal = TemporalHead(embed_dim, num_frames)
    head_sd = {}
    for key, value in state_dict.items():
        if key.startswith("clip."):
            continue
        if key.startswith("transformerClip."):
            head_sd["transformer." + key[len("transformerClip."):]] = value.float()
        elif key in _HEAD_RENAMES:
            head_sd[_HEAD_RENAMES[key]] = value.float()
        else:
            head_sd[key] = value  # reported as unexpected below
    _load_strict(path, temporal, head_sd)
    arch = _official_arch(clip_sd)
    config = {"embed_dim": embed_dim, "quick_gelu": True,
              "vision_cfg": {"image_size": clip.visual.image_size[0] if isinstance(
                  clip.visual.image_size, tuple) else clip.visual.image_size,
                  "layers": len(clip.visual.transformer.resblocks),
                  "width": int(clip_sd["visual.conv1.weight"].shape[0]),
                  "patch_size": int(clip_sd["visual.conv1.weight"].shape[-1])},
              "text_cfg": {"context_length": int(clip_sd["positional_embedding"].shape[0]),
                           "vocab_size": int(clip_sd["token_embedding.weight"].shape[0]),
                           "width": int(clip_sd["ln_final.weight"].shape[0]),
                           "heads": int(clip_sd["ln_final.weight"].shape[0]) // 64,
                           "layers": len(clip.transformer.resblocks)}}
    log.info("loaded official EERCF checkpoint %s (%s, T=%d)", path, arch, num_frames)
    return _finish(EercfModel(clip, temporal, arch, num_frames, config), device)


def _looks_like_path(source: str) -> bool:
    return ("/" in source or os.sep in source or paths.is_url(source)
            or source.endswith((".bin", ".pt", ".pth", ".ckpt", ".safetensors")))


def is_checkpoint_source(source: str) -> bool:
    """True when `source` is an existing checkpoint file or URL, False for a model name.

    Raises FileNotFoundError when it looks like a path (a slash, a URL, a weights suffix) but
    nothing is there."""
    if os.path.isfile(source):
        return True
    if paths.is_url(source):
        fs, path = paths.filesystem(source)
        with paths.storage_errors(source, "look up the checkpoint"):
            if fs.exists(path):
                return True
    if _looks_like_path(source):
        raise FileNotFoundError(f"model checkpoint not found: {source}")
    return False


def load_model(
    source: str,
    pretrained: str | None = None,
    device: str | torch.device | None = None,
    num_frames: int = NUM_FRAMES,
) -> EercfModel:
    """Load a model from any supported source, in eval mode on `device` (default: CUDA if present).

    - `load_model("pytorch_model.bin")`: the official EERCF checkpoint, detected by its keys;
    - `load_model("run/model.pt")`: a project checkpoint (`ec.save_model` / `eercf train`);
    - `load_model("ViT-B-32", pretrained="openai")`: plain open_clip weights, zero-shot mode;
    - `load_model("ViT-B-32", pretrained="/path/open_clip.bin")`: a local open_clip checkpoint.
    """
    dev = _device(device)
    if is_checkpoint_source(source):
        data = _read_checkpoint(source)
        if data.get("format") == CHECKPOINT_FORMAT:
            return _load_project(source, data, dev)
        state_dict = (data.get("state_dict", data) if isinstance(data.get("state_dict"), dict)
                      else data)
        state_dict = {k[len("module."):] if k.startswith("module.") else k: v
                      for k, v in state_dict.items()}
        if "clip.visual.conv1.weight" in state_dict and all(k in state_dict for k in _HEAD_KEYS):
            return _load_official(source, state_dict, dev)
        sample = sorted(state_dict)[:12]
        raise CheckpointError(
            f"{source}: unknown checkpoint layout. Expected the official EERCF layout (keys "
            f"'clip.visual.conv1.weight', {', '.join(repr(k) for k in _HEAD_KEYS)}) or an eercf "
            f"checkpoint (format={CHECKPOINT_FORMAT!r}); none matched. Keys found "
            f"({len(state_dict)}): {sample}{' ...' if len(state_dict) > 12 else ''}. For a plain "
            f"open_clip checkpoint pass the architecture: load_model('ViT-B-32', pretrained=path)")
    return create_model(source, pretrained=pretrained, head="zero-shot", num_frames=num_frames,
                        device=dev)
