"""EercfModel: an open_clip backbone plus the EERCF temporal head (or none, zero-shot mode).

Shapes (method §4, §13): frames [B, T, H, W, 3] uint8 -> raw frame f [B, T, D], context ĥ
[B, T, D], coarse v [B, D], patches p [B, T*P, D]; captions -> sentence s [C, D]. All outputs are
L2-normalised float32. The image tower runs fp16 (autocast) on CUDA and fp32 on CPU.
"""
from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from eercf_core.config import MAX_TEXT_TOKENS, OPENAI_MEAN, OPENAI_STD, ScoreConfig
from eercf_core.model.device import autocast_dtype
from eercf_core.model.features import VideoFeatures
from eercf_core.model.lean_imports import import_open_clip, triton_hidden_without_gpu
from eercf_core.model.temporal import TemporalHead, masked_mean_normalised
from eercf_core.scoring.scores import ScoreParams, all_scores
from schemas import FeatureDims

with triton_hidden_without_gpu():  # see lean_imports: 75 MB per process on a CPU-only host
    from torchvision.transforms.v2 import functional as TF


@dataclass(frozen=True)
class ModelIdentity:
    """What made a set of features: architecture/mode/T, and a hash of every weight."""

    model_id: str
    checkpoint_sha256: str


class EercfModel(nn.Module):
    """The EERCF model on an open_clip CLIP.

    clip: an open_clip `CLIP` with a ViT image tower.
    head: the temporal head, or None for zero-shot mode (context = raw frames, coarse = normalised
          masked mean of the normalised frames, W_g = W_f = I).
    arch: the open_clip config name (recorded in checkpoints and the identity).
    """

    # open_clip is untyped: its towers and parameters are reached by attribute name.
    clip: Any
    pixel_mean: torch.Tensor  # buffers [3, 1, 1]
    pixel_std: torch.Tensor

    def __init__(self, clip: nn.Module, head: TemporalHead | None, arch: str, num_frames: int,
                 model_config: dict | None = None):
        super().__init__()
        visual = getattr(clip, "visual", None)
        if (visual is None or getattr(visual, "proj", None) is None
                or not hasattr(visual, "output_tokens")):
            raise ValueError(f"model {arch!r}: EERCF needs an open_clip ViT image tower with a "
                             "projection (patch tokens are projected with visual.proj)")
        if head is not None and head.num_frames != num_frames:
            raise ValueError(f"head has {head.num_frames} frames, model asked for {num_frames}")
        visual.output_tokens = True
        self.clip = clip
        self.head = head
        self.arch = arch
        self.num_frames = num_frames
        self.model_config = dict(model_config or {})
        size = visual.image_size
        self.image_size = int(size[0] if isinstance(size, (tuple, list)) else size)
        grid = visual.grid_size
        self.num_patches = int(grid[0] * grid[1])
        self.embed_dim = int(visual.proj.shape[1])
        open_clip = import_open_clip()

        cfg = open_clip.get_model_preprocess_cfg(clip) or {}
        self.register_buffer("pixel_mean", torch.tensor(cfg.get("mean", OPENAI_MEAN)).view(3, 1, 1),
                             persistent=False)
        self.register_buffer("pixel_std", torch.tensor(cfg.get("std", OPENAI_STD)).view(3, 1, 1),
                             persistent=False)
        self._tokenizer = None
        self._identity: ModelIdentity | None = None
        # None: fp16 autocast on CUDA, fp32 elsewhere; True / False: fp16 / fp32 on any device
        self.half_precision: bool | None = None

    # ----------------------------------------------------------------- identity and shapes
    @property
    def mode(self) -> str:
        return "zero-shot" if self.head is None else "eercf"

    @property
    def dims(self) -> FeatureDims:
        return FeatureDims(self.num_frames, self.num_patches, self.embed_dim)

    @property
    def device(self) -> torch.device:
        return self.clip.logit_scale.device

    @property
    def identity(self) -> ModelIdentity:
        """Architecture + content hash of every weight (cached; `refresh_identity` after
        training)."""
        if self._identity is None:
            self._identity = ModelIdentity(f"{self.arch}/{self.mode}/T{self.num_frames}",
                                           state_dict_sha256(self.state_dict()))
        return self._identity

    def refresh_identity(self) -> ModelIdentity:
        self._identity = None
        return self.identity

    @property
    def score_params(self) -> ScoreParams:
        """τ, W_g, W_f as (differentiable) views of this model's parameters."""
        tau = self.clip.logit_scale.exp()
        if self.head is None:
            eye_d = torch.eye(self.embed_dim, device=self.device)
            return ScoreParams(tau, eye_d, torch.eye(self.num_frames, device=self.device))
        return ScoreParams(tau, self.head.global_weight, self.head.frame_logit_weight)

    # ----------------------------------------------------------------- video
    def preprocess_frames(self, frames: np.ndarray | torch.Tensor) -> torch.Tensor:
        """OpenAI preprocessing: uint8 [B, T, H, W, 3] -> float [B, T, 3, S, S] on the model's
        device.

        Resize the shortest side to S (bicubic, antialiased), center-crop S, scale to [0, 1],
        normalise with the CLIP mean/std. Frames that are already S x S skip the resize.
        """
        x = torch.as_tensor(frames)
        if x.dtype != torch.uint8 or x.ndim != 5 or x.shape[-1] != 3:
            raise ValueError(f"frames must be uint8 [B, T, H, W, 3] RGB, got {x.dtype} "
                             f"{tuple(x.shape)}")
        b, t, h, w, _ = x.shape
        if h < 1 or w < 1:
            raise ValueError(f"frames have an empty spatial size {h}x{w}")
        s = self.image_size
        x = x.to(self.device).permute(0, 1, 4, 2, 3).reshape(b * t, 3, h, w)
        if (h, w) != (s, s):
            x = TF.center_crop(TF.resize(x, s, interpolation=TF.InterpolationMode.BICUBIC,
                                         antialias=True), [s, s])
        x = (x.float() / 255.0 - self.pixel_mean) / self.pixel_std
        return x.view(b, t, 3, s, s)

    def encode_frames(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Image tower on N frames: pixels [N, 3, S, S] -> CLS [N, D], patches [N, P, D]
        (unnormalised).

        Every token goes through ln_post and visual.proj (method §3, §13). On CUDA under fp16
        autocast (eercf_core.model.device.autocast_dtype, `half_precision` overrides); the
        outputs are fp32 either way.
        """
        visual = self.clip.visual
        dtype = autocast_dtype(pixels.device, self.half_precision)
        with torch.autocast(pixels.device.type, dtype=dtype or torch.float32,
                            enabled=dtype is not None):
            pooled, tokens = visual(pixels)
            patches = tokens @ visual.proj
        return pooled.float(), patches.float()

    def forward_video(self, pixels: torch.Tensor, mask: torch.Tensor) -> VideoFeatures:
        """Differentiable video features: pixels [B, T, 3, S, S] (normalised), mask [B, T]."""
        b, t = pixels.shape[:2]
        if t != self.num_frames:
            raise ValueError(f"videos have {t} frame slots, the model expects T={self.num_frames}")
        mask = torch.as_tensor(mask, device=pixels.device).bool()
        if mask.shape != (b, t):
            raise ValueError(f"mask must be [B, T] = [{b}, {t}], got {tuple(mask.shape)}")
        # Padded slots are all-zero inputs, as in the official loader.
        pixels = pixels * mask.view(b, t, 1, 1, 1).to(pixels.dtype)
        cls, patches = self.encode_frames(pixels.flatten(0, 1))
        raw = cls.view(b, t, -1)
        frame = F.normalize(raw, dim=-1)
        patch = F.normalize(patches.view(b, t * self.num_patches, -1), dim=-1)
        if self.head is None:
            context, coarse = frame, masked_mean_normalised(frame, mask)
        else:
            context, coarse = self.head(raw, mask)
        return VideoFeatures(coarse=coarse, frame=frame, context=context, patch=patch, mask=mask)

    @torch.inference_mode()
    def encode_video(self, frames: np.ndarray | torch.Tensor, mask: np.ndarray | torch.Tensor,
                     batch_size: int = 16) -> VideoFeatures:
        """Features of B videos: frames uint8 [B, T, H, W, 3], mask bool [B, T] -> VideoFeatures.

        Runs `batch_size` videos (batch_size·T frames) at a time; results on the CPU.
        """
        frames = torch.as_tensor(frames)
        mask = torch.as_tensor(mask)
        if frames.ndim != 5 or frames.shape[1] != self.num_frames:
            raise ValueError(f"frames must be uint8 [B, T={self.num_frames}, H, W, 3], got "
                             f"{frames.dtype} {tuple(frames.shape)}")
        if mask.shape != frames.shape[:2]:
            raise ValueError(f"mask must be [B, T] = {tuple(frames.shape[:2])}, got "
                             f"{tuple(mask.shape)}")
        if frames.shape[0] == 0:
            raise ValueError("no videos to encode")
        parts = []
        for start in range(0, frames.shape[0], batch_size):
            pixels = self.preprocess_frames(frames[start:start + batch_size])
            parts.append(self.forward_video(pixels, mask[start:start + batch_size].to(self.device))
                         .to("cpu"))
        return VideoFeatures.cat(parts)

    # ----------------------------------------------------------------- text
    @property
    def tokenizer(self) -> Any:  # an open_clip tokenizer
        if self._tokenizer is None:
            open_clip = import_open_clip()

            known = self.arch in open_clip.list_models()
            self._tokenizer = open_clip.get_tokenizer(self.arch if known else "ViT-B-32")
        return self._tokenizer

    @property
    def context_length(self) -> int:
        return int(self.clip.positional_embedding.shape[0])

    def tokenize(self, captions: Sequence[str], max_tokens: int = MAX_TEXT_TOKENS) -> torch.Tensor:
        """SOT + at most `max_tokens`-2 BPE tokens + EOT, zero-padded to the context length
        (method §2.3).

        Returns LongTensor [C, context_length]. Captions are cleaned (ftfy, html-unescape,
        whitespace collapse) and lower-cased by the CLIP tokenizer.
        """
        if isinstance(captions, str) or not isinstance(captions, Sequence):
            raise TypeError(f"captions must be a list of strings, got {type(captions).__name__}")
        if len(captions) == 0:
            raise ValueError("no captions to encode (empty list)")
        bad = [i for i, c in enumerate(captions) if not isinstance(c, str)]
        if bad:
            raise TypeError(f"caption {bad[0]} is {type(captions[bad[0]]).__name__}, not a string")
        tok = self.tokenizer
        length = self.context_length
        body = min(max_tokens, length) - 2
        ids = torch.zeros(len(captions), length, dtype=torch.long)
        for row, caption in enumerate(captions):
            tokens = [tok.sot_token_id] + tok.encode(caption)[:body] + [tok.eot_token_id]
            ids[row, :len(tokens)] = torch.tensor(tokens)
        return ids

    def forward_text(self, tokens: torch.Tensor) -> torch.Tensor:
        """Differentiable sentence features: token ids [C, L] -> s [C, D] (EOT token,
        normalised)."""
        return F.normalize(self.clip.encode_text(tokens.to(self.device)).float(), dim=-1)

    @torch.inference_mode()
    def encode_text(self, captions: Sequence[str], batch_size: int = 64) -> torch.Tensor:
        """Sentence features of the captions: list[str] -> [C, D] float32 on the CPU.

        Encoded `batch_size` captions at a time: the text tower's activations grow with the batch
        (eercf-tiny: +217 MB peak RSS at 256, +68 MB at 64, and 64 is also faster on a CPU)."""
        tokens = self.tokenize(captions)
        return torch.cat([self.forward_text(tokens[i:i + batch_size]).cpu()
                          for i in range(0, tokens.shape[0], batch_size)])

    # ----------------------------------------------------------------- scores
    @torch.inference_mode()
    def scores(self, text: torch.Tensor, video: VideoFeatures, config: ScoreConfig = ScoreConfig()
               ) -> dict[str, torch.Tensor]:
        """All five scores (evaluation form) for every caption x video: {name: [C, B]}."""
        params = self.score_params.detach().to("cpu")
        return all_scores(text.cpu(), video.to("cpu"), params, config)


def state_dict_sha256(state_dict: dict[str, torch.Tensor]) -> str:
    """A content hash of a state dict: names, dtypes, shapes and bytes, in sorted key order."""
    digest = hashlib.sha256()
    for name in sorted(state_dict):
        tensor = state_dict[name].detach().to("cpu").contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes()
                      if tensor.numel() else b"")
    return digest.hexdigest()
