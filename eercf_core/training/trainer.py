"""Training an EercfModel with the EERCF objective (method §7.2, §7.3).

- Parameter groups: CLIP parameters (`clip.*`) at `clip_lr` (default lr × coef_lr = 1e-4 × 1e-3),
  the EERCF head at `lr`; AdamW β = (0.9, 0.98), eps 1e-6, decoupled weight decay 0.2 on every
  parameter whose name has no "bias" (as the official BertAdam: LayerNorm weights, W_g, W_f decay).
- Frozen (§7.3): token embedding, text positional embedding, visual conv1, class embedding, visual
  positional embedding, visual ln_pre.
- Schedule: linear warm-up over `warmup_proportion` of the steps, then lr · ½(1 + cos(π·step/steps))
  (the official `warmup_cosine`, progress counted from step 0). Global grad-norm clip 1.0.
  τ = exp(logit_scale) is clamped to ≤ 100 after each step.
- AMP on CUDA (the image tower already runs under fp16 autocast; a GradScaler guards the grads).
- Sampling: every (video, caption) pair is a sample; each epoch is a seeded permutation (seed +
  epoch), batches drop the remainder. With `group_batches` (and `TrainingPairs.video_group`) a
  batch is instead made of whole video groups (e.g. the synthetic corpus's sibling groups), one
  caption per video: the hard negatives always meet in a batch, and no video appears twice. The
  loss is unchanged; this is only which pairs share a batch. Resume is exact: the permutation is
  recomputed and the position inside it follows from the step.
- Checkpoints (`TrainState` in `<output>/train_state.pt`, atomic) hold model, optimiser, scheduler,
  scaler, step and RNG states.
"""
from __future__ import annotations

import logging
import math
import random
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from eercf_core.config import ScoreConfig
from eercf_core.errors import UserInputError
from eercf_core.files.atomic import open_atomic
from eercf_core.model.network import EercfModel
from eercf_core.progress import Progress
from eercf_core.training.losses import LossWeights, eercf_loss

log = logging.getLogger(__name__)

# Parameters frozen by the official code (--freeze_layer_num 0; CLIP4Clip behaviour), method §7.3.
FROZEN_PARAMETERS = (
    "clip.token_embedding.weight",
    "clip.positional_embedding",
    "clip.visual.conv1.weight",
    "clip.visual.class_embedding",
    "clip.visual.positional_embedding",
    "clip.visual.ln_pre.weight",
    "clip.visual.ln_pre.bias",
)
MAX_LOGIT_SCALE = math.log(100.0)
STATE_FILE = "train_state.pt"


@dataclass
class TrainConfig:
    """Optimisation knobs; defaults are the official values (method §7.2) where one exists."""

    steps: int = 1000
    batch_size: int = 64  # official global batch: 240
    lr: float = 1e-4  # new modules (head, W_g, W_f)
    coef_lr: float = 1e-3  # CLIP lr = lr · coef_lr unless clip_lr is set
    clip_lr: float | None = None  # explicit CLIP lr (from-scratch models need a real one)
    weight_decay: float = 0.2
    betas: tuple[float, float] = (0.9, 0.98)
    eps: float = 1e-6
    warmup_proportion: float = 0.1
    grad_clip: float = 1.0
    freeze_embeddings: bool = True
    amp: bool = True  # mixed precision; only takes effect on CUDA
    seed: int = 42
    log_every: int = 20
    checkpoint_every: int = 0  # steps between train-state checkpoints (0: only at the end)
    group_batches: bool = False  # batches of whole video groups, one caption per video
    loss_weights: LossWeights = field(default_factory=LossWeights)
    score_config: ScoreConfig = field(default_factory=ScoreConfig)

    @property
    def effective_clip_lr(self) -> float:
        return self.lr * self.coef_lr if self.clip_lr is None else self.clip_lr

    def to_dict(self) -> dict:
        out = asdict(self)
        out["effective_clip_lr"] = self.effective_clip_lr
        return out


@dataclass
class TrainingPairs:
    """The training set, decoded once and held in memory.

    frames:        uint8 [V, T, S, S, 3] (already at the model's image size S)
    mask:          bool  [V, T] (False = padded frame slot)
    tokens:        long  [C, L] caption token ids (model.tokenize)
    caption_video: long  [C] index into the videos of each caption's video
    video_group:   long  [V] group id of each video (optional; for `TrainConfig.group_batches`)
    """

    frames: torch.Tensor
    mask: torch.Tensor
    tokens: torch.Tensor
    caption_video: torch.Tensor
    video_group: torch.Tensor | None = None

    def __post_init__(self) -> None:
        v, c = self.frames.shape[0], self.tokens.shape[0]
        if self.frames.dtype != torch.uint8 or self.frames.ndim != 5:
            raise ValueError(f"frames must be uint8 [V, T, S, S, 3], got {self.frames.dtype} "
                             f"{tuple(self.frames.shape)}")
        if self.mask.shape != self.frames.shape[:2]:
            raise ValueError(f"mask must be [V, T] = {tuple(self.frames.shape[:2])}, got "
                             f"{tuple(self.mask.shape)}")
        if self.caption_video.shape != (c,) or c == 0:
            raise ValueError(f"caption_video must be [C={c}] (C > 0), got "
                             f"{tuple(self.caption_video.shape)}")
        if int(self.caption_video.min()) < 0 or int(self.caption_video.max()) >= v:
            raise ValueError(f"caption_video indexes outside the {v} videos")
        if self.video_group is not None and self.video_group.shape != (v,):
            raise ValueError(f"video_group must be [V={v}], got {tuple(self.video_group.shape)}")

    @property
    def num_pairs(self) -> int:
        return self.tokens.shape[0]


def freeze_embeddings(model: EercfModel) -> list[str]:
    """Freeze the §7.3 embedding parameters (requires_grad False). Returns their names."""
    names = dict(model.named_parameters())
    frozen = [n for n in FROZEN_PARAMETERS if n in names]
    for n in frozen:
        names[n].requires_grad_(False)
    return frozen


def parameter_groups(model: EercfModel, config: TrainConfig) -> list[dict]:
    """AdamW groups: {CLIP, head} x {decay, no decay (name contains "bias")}; frozen ones left
    out."""
    groups: dict[tuple[bool, bool], list] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        key = (name.startswith("clip."), "bias" in name)
        groups.setdefault(key, []).append(param)
    out = []
    for (is_clip, no_decay), params in sorted(groups.items()):
        out.append({"params": params,
                    "lr": config.effective_clip_lr if is_clip else config.lr,
                    "weight_decay": 0.0 if no_decay else config.weight_decay,
                    "name": f"{'clip' if is_clip else 'head'}{'_no_decay' if no_decay else ''}"})
    return out


def warmup_cosine(step: int, total: int, warmup_proportion: float) -> float:
    """The official schedule multiplier: x/warmup below warm-up, else ½(1 + cos(π x)), x =
    step/total."""
    x = step / max(1, total)
    if x < warmup_proportion:
        return x / warmup_proportion
    return 0.5 * (1.0 + math.cos(math.pi * x))


def _rng_state() -> dict:
    """RNG states as tensors and plain tuples, so the state file loads with weights_only=True."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {"torch": torch.get_rng_state(),
             "numpy": (kind, torch.from_numpy(np.asarray(keys, dtype=np.int64)), int(pos),
                       int(has_gauss),
                       float(cached)),
             "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class Trainer:
    """Owns the optimiser, schedule and step counter for one model and one training set."""

    def __init__(self, model: EercfModel, data: TrainingPairs, config: TrainConfig,
                 out_dir: str | Path | None = None):
        if data.num_pairs < config.batch_size:
            raise UserInputError(f"{data.num_pairs} training pairs is fewer than one batch of "
                                 f"{config.batch_size}")
        if config.batch_size < 2:
            raise ValueError("batch_size must be >= 2 (contrastive loss)")
        self.model, self.data, self.config = model, data, config
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.device = model.device
        self.frozen = freeze_embeddings(model) if config.freeze_embeddings else []
        self.optimizer = torch.optim.AdamW(parameter_groups(model, config), betas=config.betas,
                                           eps=config.eps)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda s: warmup_cosine(s, config.steps, config.warmup_proportion))
        self.use_amp = bool(config.amp and self.device.type == "cuda")
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.use_amp)
        self.step = 0
        self.batches_per_epoch = data.num_pairs // config.batch_size
        if config.group_batches:
            self._init_groups()
        self.history: list[dict[str, float]] = []

    def _init_groups(self) -> None:
        """Index videos by group and captions by video for group batches."""
        if self.data.video_group is None:
            raise ValueError("group_batches needs TrainingPairs.video_group")
        captions_of: dict[int, list[int]] = {}
        for c, v in enumerate(self.data.caption_video.tolist()):
            captions_of.setdefault(v, []).append(c)
        groups: dict[int, list[int]] = {}
        for v, g in enumerate(self.data.video_group.tolist()):
            if v in captions_of:
                groups.setdefault(g, []).append(v)
        self.groups = [vs for _, vs in sorted(groups.items())]
        self.captions_of = captions_of
        largest = max(len(vs) for vs in self.groups)
        self.groups_per_batch = max(1, self.config.batch_size // largest)
        if len(self.groups) < self.groups_per_batch or self.groups_per_batch * largest < 2:
            raise UserInputError(f"{len(self.groups)} video groups (largest {largest}) cannot fill "
                                 f"a batch of {self.config.batch_size}")
        self.batches_per_epoch = len(self.groups) // self.groups_per_batch

    # ------------------------------------------------------------------ sampling
    def batch_indices(self, step: int) -> torch.Tensor:
        """Caption indices of batch `step`: epoch permutation seeded by seed + epoch, drop_last."""
        epoch, position = divmod(step, self.batches_per_epoch)
        generator = torch.Generator().manual_seed(self.config.seed + epoch)
        if self.config.group_batches:
            order = torch.randperm(len(self.groups), generator=generator).tolist()
            g = self.groups_per_batch
            pick = torch.Generator().manual_seed(self.config.seed * 1_000_003 + step)
            out = []
            for group in order[position * g:(position + 1) * g]:
                for v in self.groups[group]:
                    options = self.captions_of[v]
                    out.append(options[int(torch.randint(len(options), (1,), generator=pick))])
            return torch.tensor(out, dtype=torch.long)
        shuffled = torch.randperm(self.data.num_pairs, generator=generator)
        b = self.config.batch_size
        return shuffled[position * b:(position + 1) * b]

    # ------------------------------------------------------------------ one step
    def train_step(self) -> dict[str, float]:
        """One optimiser step on the next batch. Returns the loss terms as floats, and the lr."""
        self.model.train()
        captions = self.batch_indices(self.step)
        videos = self.data.caption_video[captions]
        pixels = self.model.preprocess_frames(self.data.frames[videos])
        mask = self.data.mask[videos].to(self.device)
        # The image tower autocasts itself on CUDA; the temporal head and scores stay fp32
        # (method §13.5); the text tower runs fp16 under AMP, as the official fp16 CLIP does.
        video = self.model.forward_video(pixels, mask)
        with torch.autocast("cuda", dtype=torch.float16, enabled=self.use_amp):
            text = self.model.forward_text(self.data.tokens[captions])
        terms = eercf_loss(text.float(), video.to(dtype=torch.float32), self.model.score_params,
                           self.config.loss_weights, self.config.score_config)
        loss = terms["loss"]
        if not torch.isfinite(loss):
            raise FloatingPointError(f"non-finite loss {loss.item()} at step {self.step}: "
                                     f"{ {k: float(v) for k, v in terms.items()} }")
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(self.optimizer)
        grad_norm = torch.nn.utils.clip_grad_norm_(
            [p for g in self.optimizer.param_groups for p in g["params"]], self.config.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        with torch.no_grad():
            self.model.clip.logit_scale.clamp_(0, MAX_LOGIT_SCALE)
        self.step += 1
        out = {k: float(v.detach()) for k, v in terms.items()}
        out["grad_norm"] = float(grad_norm)
        out["lr"] = self.optimizer.param_groups[0]["lr"]
        out["tau"] = float(self.model.clip.logit_scale.detach().exp())
        return out

    # ------------------------------------------------------------------ loop
    def train(self, until: int | None = None,
              on_step: Callable[[Trainer, dict[str, float]], None] | None = None) -> list[dict]:
        """Run steps up to `until` (default: config.steps), logging progress and checkpointing."""
        until = self.config.steps if until is None else min(until, self.config.steps)
        progress = Progress("train", self.config.steps, "steps", every=math.inf,
                            show_failed=False, already=self.step, logger=log)
        running: dict[str, float] = {}
        while self.step < until:
            terms = self.train_step()
            self.history.append({"step": self.step, **terms})
            for k, v in terms.items():
                running[k] = running.get(k, 0.0) + v
            if on_step is not None:
                on_step(self, terms)
            due = self.step % self.config.log_every == 0 or self.step == until
            detail = ""
            if due:
                n = max(1, min(self.step - progress.already, self.config.log_every))
                detail = (f"loss {running.get('loss', 0) / n:.4f} (weak "
                          f"{running.get('weak', 0) / n:.4f} strong "
                          f"{running.get('strong', 0) / n:.4f} intra "
                          f"{running.get('intra', 0) / n:.4f}) lr {terms['lr']:.2e} "
                          f"tau {terms['tau']:.1f}")
                running = {}
            progress.add(1, detail=detail, force=due)
            if (self.out_dir is not None and self.config.checkpoint_every
                    and self.step % self.config.checkpoint_every == 0 and self.step < until):
                self.save_state()
        self.model.eval()
        if self.out_dir is not None:
            self.save_state()
        return self.history

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict:
        return {"step": self.step, "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                "scaler": self.scaler.state_dict(), "rng": _rng_state(),
                "config": {k: v for k, v in self.config.to_dict().items()
                           if isinstance(v, (int, float, str, bool, type(None)))}}

    def save_state(self, path: str | Path | None = None) -> Path:
        """Write the full training state atomically (temp name, then rename)."""
        if path is None:
            if self.out_dir is None:
                raise ValueError("no output directory to save the training state in")
            self.out_dir.mkdir(parents=True, exist_ok=True)
            path = self.out_dir / STATE_FILE
        path = Path(path)
        with open_atomic(path) as handle:
            torch.save(self.state_dict(), handle)
        log.info("train: saved training state at step %d to %s", self.step, path)
        return path

    def load_state(self, path: str | Path) -> None:
        """Restore a state written by `save_state` (same model architecture and config)."""
        path = Path(path)
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise UserInputError(f"{path}: not a readable training state "
                                 f"({type(exc).__name__}: {exc})") from exc
        if not isinstance(state, dict) or "step" not in state or "model" not in state:
            raise UserInputError(f"{path}: not an eercf training state (no step/model)")
        saved_steps = state.get("config", {}).get("steps")
        if saved_steps is not None and saved_steps != self.config.steps:
            raise UserInputError(f"{path}: saved for {saved_steps} steps but this run has "
                                 f"{self.config.steps}; the schedule would differ")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        _set_rng_state(state["rng"])
        self.step = int(state["step"])
        log.info("train: resumed from %s at step %d", path, self.step)
