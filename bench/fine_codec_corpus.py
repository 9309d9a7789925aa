"""A clustered synthetic corpus of ViT-B/32-sized video features, generated video by video.

Meant to look like CLIP features where it matters to a codec: anisotropic (a shared mean direction
and a power-law spectrum, as projected CLIP tokens have), clustered at every level, and with
patches that share a per-video vocabulary of "visual words":
- 64 topic centres; video v has topic z_v; coarse = norm(topic + 0.6·noise).
- frame t = norm(coarse + 0.5·noise), context t = norm(frame + 0.3·noise).
- 2,048 patch words; each video draws 24 of them; patch (t, q) =
  norm(0.5·frame_t + word + 0.45·noise), its word drawn from the video's 24.
noise = anisotropic Gaussian (eigenvalues ∝ 1/rank, a fixed random rotation, unit expected norm)
plus a shared mean direction (weight 0.5) on every vector, as CLIP features have.

Video i of a corpus is generated from (seed, i) alone, so any subset of a corpus of any size
(10,000 videos: ~6.3 GB as float16) is produced without generating the rest: the codec benchmark
materialises only the training and held-out samples it draws.
"""
from __future__ import annotations

import numpy as np
import torch

from eercf_core.model.features import VideoFeatures
from schemas import FeatureDims

VIT_B32 = FeatureDims(12, 49, 512)
_TOPICS, _WORDS, _WORDS_PER_VIDEO = 64, 2048, 24


def _norm(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True).clip(1e-12)


class ClusteredCorpus:
    """`num_videos` synthetic videos with dims `dims`; `videos(ids)` returns their features."""

    def __init__(self, num_videos: int, dims: FeatureDims = VIT_B32, seed: int = 0) -> None:
        self.num_videos, self.dims, self.seed = num_videos, dims, seed
        rng = np.random.default_rng([seed, 2**31])
        d = dims.embed_dim
        # Anisotropic noise: a random rotation of a 1/rank spectrum, scaled to unit expected norm.
        rotation, _ = np.linalg.qr(rng.standard_normal((d, d)))
        spectrum = 1.0 / np.arange(1, d + 1)
        self._mix = (rotation * np.sqrt(spectrum / spectrum.sum())).astype(np.float32).T
        self._mean = _norm(rng.standard_normal(d)).astype(np.float32)
        self._topics = _norm(self._noise(rng, (_TOPICS,)) + self._mean)
        self._words = _norm(self._noise(rng, (_WORDS,)) + 0.5 * self._mean)

    def _noise(self, rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
        """Anisotropic Gaussian vectors [*shape, D] with E|x|^2 = 1."""
        d = self.dims.embed_dim
        return (rng.standard_normal((*shape, d), dtype=np.float32) @ self._mix).astype(np.float32)

    def video(self, index: int) -> dict[str, np.ndarray]:
        """Features of video `index` (float32): coarse [D], frame/context [T, D], patch [T*P, D],
        mask [T]."""
        if not 0 <= index < self.num_videos:
            raise IndexError(f"video {index} outside the corpus of {self.num_videos}")
        t, p = self.dims.num_frames, self.dims.num_patches
        rng = np.random.default_rng([self.seed, index])
        coarse = _norm(self._topics[rng.integers(_TOPICS)] + 0.6 * self._noise(rng, ()))
        frame = _norm(coarse + 0.5 * self._noise(rng, (t,)))
        context = _norm(frame + 0.3 * self._noise(rng, (t,)))
        words = rng.choice(_WORDS, _WORDS_PER_VIDEO, replace=False)
        word = self._words[words[rng.integers(_WORDS_PER_VIDEO, size=t * p)]]
        patch = _norm(0.5 * np.repeat(frame, p, axis=0) + word + 0.45 * self._noise(rng, (t * p,)))
        return {"coarse": coarse, "frame": frame, "context": context, "patch": patch,
                "mask": np.ones(t, dtype=bool)}

    def videos(self, ids: np.ndarray) -> VideoFeatures:
        """Features of the videos `ids`, float16 as a shard stores them (VideoFeatures, B =
        len(ids))."""
        rows = [self.video(int(i)) for i in ids]
        return VideoFeatures(**{
            kind: torch.from_numpy(np.stack([r[kind] for r in rows]).astype(
                bool if kind == "mask" else np.float16)) for kind in rows[0]})
