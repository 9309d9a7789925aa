"""Training throughput (optimiser steps/s) of the EERCF objective.

CUDA: ViT-B-32 (random weights: speed does not depend on them), batch 64 x 12 frames at 224 px,
AMP. CPU: eercf-tiny, batch 64 x 12 frames at 64 px. `--quick`: a few steps of a smaller batch.
Usage: python -m bench train [--quick] [--cpu]
"""
from __future__ import annotations

import time
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from eercf_core.model.network import EercfModel
    from eercf_core.training.trainer import TrainingPairs


def _random_pairs(model: EercfModel, videos: int, captions: int) -> TrainingPairs:
    """Random frames and captions: speed does not depend on the content."""
    from eercf_core.training.trainer import TrainingPairs

    s = model.image_size
    generator = torch.Generator().manual_seed(0)
    frames = torch.randint(0, 256, (videos, model.num_frames, s, s, 3), dtype=torch.uint8,
                           generator=generator)
    words = ["red", "blue", "circle", "square", "flashes", "on", "a", "striped", "background"]
    texts = [" ".join(words[(i + j) % len(words)] for j in range(8)) for i in range(captions)]
    return TrainingPairs(frames, torch.ones(videos, model.num_frames, dtype=torch.bool),
                         model.tokenize(texts), torch.arange(captions) % videos)


def main(flags: list[str]) -> dict:
    import eercf_core as ec
    from eercf_core.training.trainer import TrainConfig, Trainer

    quick = "--quick" in flags
    cuda = torch.cuda.is_available() and "--cpu" not in flags
    arch = "ViT-B-32" if cuda else "eercf-tiny"
    batch = 16 if quick else 64
    warmup, steps = (1, 3) if quick else (3, 20)
    model = ec.create_model(arch, seed=0, device="cuda" if cuda else "cpu")
    data = _random_pairs(model, videos=batch * 2, captions=batch * 2)
    config = TrainConfig(steps=warmup + steps, batch_size=batch, clip_lr=1e-5, log_every=10**9,
                         amp=True)
    trainer = Trainer(model, data, config)
    trainer.train(until=warmup)
    if cuda:
        torch.cuda.synchronize()
    start = time.perf_counter()
    trainer.train(until=warmup + steps)
    if cuda:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    rate = steps / seconds
    result = {"device": torch.cuda.get_device_name() if cuda else f"cpu x{torch.get_num_threads()}",
              "arch": arch, "batch_size": batch, "frames_per_video": model.num_frames,
              "image_size": model.image_size, "amp": cuda, "steps": steps,
              "steps_per_s": round(rate, 3), "videos_per_s": round(rate * batch, 1),
              "frames_per_s": round(rate * batch * model.num_frames, 1)}
    if cuda:
        result["peak_gpu_memory_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
    return result
