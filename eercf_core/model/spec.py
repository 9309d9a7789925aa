"""What `--model` means in every job: one spec, one way to build it, no implicit random weights.

`ModelSpec` is the model flags of a job (`--model`, `--pretrained`, `--random-init`, `--head`,
`--seed`, `--num-frames`); `load_model_spec` turns it into a model the same way in `eercf
extract` and `eercf query`, so one name always means one model:

- a checkpoint file or URL (official EERCF or `eercf train`): loaded as is;
- a name with `--pretrained` (an open_clip tag or a local open_clip file): zero-shot mode;
- a name with `--random-init`: seeded random weights with the EERCF head (default) or
  `--head zero-shot` — for tests and demos only, recorded as such;
- a bare name without weights is refused with a message showing how to pass them.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from eercf_core.config import NUM_FRAMES
from eercf_core.errors import UserInputError

if TYPE_CHECKING:  # the model module imports torch: loaded only when a model is built
    from eercf_core.model.network import EercfModel

HEADS = ("eercf", "zero-shot")


@dataclass(frozen=True)
class ModelSpec:
    """The model flags of a job. `source` is a checkpoint path/URL or an open_clip name."""

    source: str
    pretrained: str | None = None
    random_init: bool = False
    head: str | None = None  # random-init models only: "eercf" (default) | "zero-shot"
    seed: int = 0  # random-init models only
    device: str | None = None
    num_frames: int = NUM_FRAMES

    def describe(self) -> dict[str, Any]:
        """Where the weights came from, for summary.json and query metadata."""
        info: dict[str, Any] = {"source": self.source, "pretrained": self.pretrained,
                                "random_init": self.random_init}
        if self.random_init:
            info.update(head=self.head or "eercf", seed=self.seed)
        return info


def _missing_weights(spec: ModelSpec) -> UserInputError:
    return UserInputError(
        f"--model {spec.source}: no weights given, and random weights give useless features. "
        f"Pass weights: --model {spec.source} --pretrained openai (an open_clip tag) or "
        f"--pretrained /path/to/open_clip_weights.bin; or a checkpoint: --model path/to/model.pt "
        f"(from eercf train) or --model pytorch_model.bin (official EERCF). For tests and demos "
        f"only: --random-init (seeded random weights, seed --seed).")


def load_model_spec(spec: ModelSpec) -> EercfModel:
    """Build or load the model of `spec` (see module docstring), in eval mode.

    Raises UserInputError for a bare name without weights, conflicting flags or an unknown
    name; FileNotFoundError / CheckpointError for a bad checkpoint.
    """
    from eercf_core.model.checkpoint import (
        check_model_name,
        create_model,
        is_checkpoint_source,
        load_model,
    )

    if spec.head is not None and spec.head not in HEADS:
        raise UserInputError(f"--head must be one of {HEADS}, got {spec.head!r}")
    if spec.head is not None and not spec.random_init:
        raise UserInputError(f"--head {spec.head} applies to --random-init models only (a "
                             "checkpoint brings its head; --pretrained weights are zero-shot)")
    checkpoint = is_checkpoint_source(spec.source)
    if spec.random_init and (checkpoint or spec.pretrained):
        given = (f"--pretrained {spec.pretrained}" if spec.pretrained
                 else f"checkpoint {spec.source}")
        raise UserInputError(f"--random-init conflicts with {given}: pass one or the other")
    if checkpoint or spec.pretrained:
        return load_model(spec.source, pretrained=spec.pretrained, device=spec.device,
                          num_frames=spec.num_frames).eval()
    if not spec.random_init:
        check_model_name(spec.source)  # an unknown name says so first
        raise _missing_weights(spec)
    return create_model(spec.source, head=spec.head or "eercf", seed=spec.seed,
                        device=spec.device, num_frames=spec.num_frames).eval()
