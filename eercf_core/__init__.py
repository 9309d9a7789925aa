"""eercf_core: the EERCF method (AAAI 2024) on open_clip, and its data structures.

    import eercf_core as ec
    model = ec.load_model("pytorch_model.bin")              # official EERCF checkpoint, detected
    model = ec.load_model("ViT-B-32", pretrained="openai")  # plain open_clip, zero-shot mode
    video = model.encode_video(frames, mask)  # uint8 [B,T,H,W,3], bool [B,T] -> VideoFeatures
    text = model.encode_text(captions)        # list[str] -> [C, D]
    s = model.scores(text, video)             # {"S_V","S_Fw","S_Fs","S_Pw","S_Ps"}: [C, B] each
    ranking = ec.two_stage_rank(model, text, video, k=50)
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# Public names -> the submodule defining them. Imported on first use (PEP 562), so a process
# that needs only a light submodule (the decoder workers import eercf_core.video.decode) does not
# pay for torch and open_clip (~1 GB and seconds per process).
_LAZY = {
    "scores": "eercf_core.scoring.scores",
    "CheckpointError": "eercf_core.model.checkpoint", "create_model": "eercf_core.model.checkpoint",
    "load_model": "eercf_core.model.checkpoint", "save_model": "eercf_core.model.checkpoint",
    "NUM_FRAMES": "eercf_core.config", "RECALL_K": "eercf_core.config",
    "RerankWeights": "eercf_core.config", "ScoreConfig": "eercf_core.config",
    "VideoFeatures": "eercf_core.model.features",
    "EercfModel": "eercf_core.model.network", "ModelIdentity": "eercf_core.model.network",
    "Ranking": "eercf_core.scoring.ranking", "exhaustive_rank": "eercf_core.scoring.ranking",
    "rerank_candidates": "eercf_core.scoring.ranking",
    "two_stage_rank": "eercf_core.scoring.ranking",
    "ScoreParams": "eercf_core.scoring.scores",
}

__all__ = [
    "CheckpointError", "EercfModel", "ModelIdentity", "NUM_FRAMES", "RECALL_K", "Ranking",
    "RerankWeights", "ScoreConfig", "ScoreParams", "VideoFeatures", "create_model",
    "exhaustive_rank", "load_model", "rerank_candidates", "save_model", "scores", "two_stage_rank",
]

if TYPE_CHECKING:
    from eercf_core.config import NUM_FRAMES, RECALL_K, RerankWeights, ScoreConfig
    from eercf_core.model.checkpoint import CheckpointError, create_model, load_model, save_model
    from eercf_core.model.features import VideoFeatures
    from eercf_core.model.network import EercfModel, ModelIdentity
    from eercf_core.scoring import scores
    from eercf_core.scoring.ranking import (
        Ranking,
        exhaustive_rank,
        rerank_candidates,
        two_stage_rank,
    )
    from eercf_core.scoring.scores import ScoreParams


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'eercf_core' has no attribute {name!r}")
    module = importlib.import_module(_LAZY[name])
    value = module if module.__name__.rsplit(".", 1)[-1] == name else getattr(module, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
