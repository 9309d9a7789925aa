"""Video feature containers shared by the model, the scores, the shards and the fine store."""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields

import torch


@dataclass
class VideoFeatures:
    """The four feature granularities of B videos (method §4), all L2-normalised.

    coarse:  [B, D]      text-agnostic video vector v (the recall key)
    frame:   [B, T, D]   raw CLIP frame features f (gates and S_Fw)
    context: [B, T, D]   temporal-head frame outputs ĥ (the values of the frame TIB)
    patch:   [B, T*P, D] projected patch tokens p, frame-major (n = t*P + q)
    mask:    [B, T]      bool, False for zero-padded frame slots
    """

    coarse: torch.Tensor
    frame: torch.Tensor
    context: torch.Tensor
    patch: torch.Tensor
    mask: torch.Tensor

    def __post_init__(self) -> None:
        b, t, d = self.frame.shape
        if self.coarse.shape != (b, d) or self.context.shape != (b, t, d):
            raise ValueError(
                f"inconsistent video features: coarse {tuple(self.coarse.shape)}, frame "
                f"{tuple(self.frame.shape)}, context {tuple(self.context.shape)}")
        if self.patch.ndim != 3 or self.patch.shape[0] != b or self.patch.shape[2] != d \
                or self.patch.shape[1] % t:
            raise ValueError(f"patch features must be [B, T*P, D] = [{b}, T*P, {d}] with T={t}, "
                             f"got {tuple(self.patch.shape)}")
        if self.mask.shape != (b, t):
            raise ValueError(f"mask must be [B, T] = [{b}, {t}], got {tuple(self.mask.shape)}")

    @property
    def num_videos(self) -> int:
        return self.frame.shape[0]

    @property
    def num_frames(self) -> int:
        return self.frame.shape[1]

    @property
    def num_patches(self) -> int:
        """Patches per frame, P."""
        return self.patch.shape[1] // self.frame.shape[1]

    @property
    def embed_dim(self) -> int:
        return self.frame.shape[2]

    def __len__(self) -> int:
        return self.num_videos

    def _map(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> VideoFeatures:
        return VideoFeatures(**{f.name: fn(getattr(self, f.name)) for f in fields(self)})

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None
           ) -> VideoFeatures:
        """Move to `device`; cast the float features (not the mask) to `dtype` if given."""
        def move(x: torch.Tensor) -> torch.Tensor:
            return x.to(device=device, dtype=dtype if dtype is not None and x.is_floating_point()
                        else None)
        return self._map(move)

    def detach(self) -> VideoFeatures:
        return self._map(lambda x: x.detach())

    def index(self, rows: torch.Tensor | Sequence[int] | slice) -> VideoFeatures:
        """The subset of videos at `rows` (indices, a bool mask or a slice)."""
        if not isinstance(rows, (slice, torch.Tensor)):
            rows = torch.as_tensor(rows, dtype=torch.long)
        return self._map(lambda x: x[rows])

    @staticmethod
    def cat(parts: Sequence[VideoFeatures]) -> VideoFeatures:
        """Concatenate along the video dimension."""
        if not parts:
            raise ValueError("cannot concatenate an empty list of VideoFeatures")
        return VideoFeatures(**{f.name: torch.cat([getattr(p, f.name) for p in parts])
                                for f in fields(VideoFeatures)})
