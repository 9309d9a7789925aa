"""eercf_core: the EERCF method (AAAI 2024) on open_clip, and its data structures.

    import eercf_core as ec
    model = ec.load_model("pytorch_model.bin")              # official EERCF checkpoint, detected
    model = ec.load_model("ViT-B-32", pretrained="openai")  # plain open_clip, zero-shot mode
    video = model.encode_video(frames, mask)  # uint8 [B,T,H,W,3], bool [B,T] -> VideoFeatures
    text = model.encode_text(captions)        # list[str] -> [C, D]
    s = model.scores(text, video)             # {"S_V","S_Fw","S_Fs","S_Pw","S_Ps"}: [C, B] each
    ranking = ec.two_stage_rank(model, text, video, k=50)
"""
from eercf_core import scores
from eercf_core.checkpoint import CheckpointError, create_model, load_model, save_model
from eercf_core.config import NUM_FRAMES, RECALL_K, RerankWeights, ScoreConfig
from eercf_core.features import VideoFeatures
from eercf_core.model import EercfModel, ModelIdentity
from eercf_core.ranking import Ranking, exhaustive_rank, rerank_candidates, two_stage_rank
from eercf_core.scores import ScoreParams

__all__ = [
    "CheckpointError", "EercfModel", "ModelIdentity", "NUM_FRAMES", "RECALL_K", "Ranking",
    "RerankWeights", "ScoreConfig", "ScoreParams", "VideoFeatures", "create_model",
    "exhaustive_rank", "load_model", "rerank_candidates", "save_model", "scores", "two_stage_rank",
]
