"""Official EERCF constants and the knobs built on them (method §2, §5, §8.3, §11).

Every default is the released MSR-VTT configuration unless a comment says it is a project decision.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

NUM_FRAMES = 12  # --max_frames
SAMPLE_FPS = 1.0  # --feature_framerate
MAX_TEXT_TOKENS = 32  # --max_words: SOT + at most 30 BPE tokens + EOT
RECALL_K = 50  # --rerantopk
TEMPORAL_LAYERS = 4  # transformerClip depth
TEMPORAL_LN_EPS = 1e-12  # TF-style LayerNorm in the temporal transformer (§11 item 12)
FRAME_POSITIONS = 77  # rows of frame_position_embeddings (only the first T are used)
OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)
# Project decision: bound on the float32 elements of one block of pairwise similarities or
# gathered candidate features (32 MiB), shared by every blockwise scoring loop. A block's scoring
# holds several such tensors at once (softmax, pooling): at 1 << 25 the codec fidelity of a
# ViT-B/32 build peaked ~600 MB above its inputs.
BLOCK_ELEMENTS = 1 << 23


@dataclass(frozen=True)
class ScoreConfig:
    """Softmax temperatures of the fine scores (method §5, §6, §11 item 11).

    `mask_padded_frames`: the official code lets zero-padded frames take part in the S_Fw, S_Fs,
    S_Pw and S_Ps softmaxes; the project masks them (§11 item 10, a deliberate, tiny deviation that
    only matters for videos with fewer than T sampled frames). Set False for exact parity.
    """

    weak_frame_temperature: float = 0.01
    weak_patch_temperature: float = 0.01
    frame_gate_temperature: float = 0.1
    patch_gate_temperature: float = 0.01
    mask_padded_frames: bool = True


@dataclass(frozen=True)
class RerankWeights:
    """Weights of the rerank score: the official hard-coded evaluation mix (method §8.3)."""

    coarse: float = 0.5
    weak_frame: float = 0.8
    strong_frame: float = 0.2
    weak_patch: float = 0.2
    strong_patch: float = 0.0

    def as_score_weights(self) -> dict[str, float]:
        """The weights keyed by score name (S_V, S_Fw, S_Fs, S_Pw, S_Ps)."""
        return {"S_V": self.coarse, "S_Fw": self.weak_frame, "S_Fs": self.strong_frame,
                "S_Pw": self.weak_patch, "S_Ps": self.strong_patch}

    def to_dict(self) -> dict[str, float]:
        return asdict(self)
