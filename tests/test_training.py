"""Training: loss goes down, exact resume, frozen embeddings, parameter groups, schedule."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import eercf_core as ec
from eercf_core.datasets import synthetic
from eercf_core.training.losses import eercf_loss
from eercf_core.training.trainer import (
    FROZEN_PARAMETERS,
    TrainConfig,
    Trainer,
    TrainingPairs,
    parameter_groups,
    warmup_cosine,
)


def _pairs(model, num_videos: int = 24) -> TrainingPairs:
    config = synthetic.SynthConfig(num_train=num_videos, num_test=0, seed=3)
    specs = synthetic.plan_corpus(config)
    frames, masks = zip(*[synthetic.sample_frames_1fps(s, config) for s in specs])
    captions = [c for s in specs for c in synthetic.captions_for(s, config)]
    index = {s.video_id: i for i, s in enumerate(specs)}
    return TrainingPairs(torch.from_numpy(np.stack(frames)), torch.from_numpy(np.stack(masks)),
                         model.tokenize([c["text"] for c in captions]),
                         torch.tensor([index[c["video_id"]] for c in captions]),
                         torch.tensor([s.group for s in specs]))


def _model():
    return ec.create_model("eercf-tiny", seed=0, device="cpu")


def _config(**kw) -> TrainConfig:
    base = {"steps": 8, "batch_size": 8, "lr": 1e-3, "clip_lr": 1e-3, "log_every": 4, "seed": 1}
    base.update(kw)
    return TrainConfig(**base)


def _batch_loss(model, data: TrainingPairs, captions: torch.Tensor) -> float:
    model.eval()
    with torch.no_grad():
        videos = data.caption_video[captions]
        video = model.forward_video(model.preprocess_frames(data.frames[videos]), data.mask[videos])
        text = model.forward_text(data.tokens[captions])
        return float(eercf_loss(text, video, model.score_params)["loss"])


@pytest.mark.slow  # ~70 CPU-s: 40 s or more of wall time on 2 cores
def test_a_few_steps_reduce_the_loss():
    model = _model()
    data = _pairs(model)
    fixed = torch.arange(0, data.num_pairs, 3)[:16]
    before = _batch_loss(model, data, fixed)
    trainer = Trainer(model, data, _config(steps=30, batch_size=16, warmup_proportion=0.1))
    history = trainer.train()
    after = _batch_loss(model, data, fixed)
    assert len(history) == 30 and all(math.isfinite(h["loss"]) for h in history)
    assert after < before - 0.3, (before, after)


def test_frozen_embeddings_do_not_change_and_the_rest_does():
    model = _model()
    initial = {n: p.detach().clone() for n, p in model.named_parameters()}
    trainer = Trainer(model, _pairs(model), _config(steps=3))
    assert sorted(trainer.frozen) == sorted(FROZEN_PARAMETERS)
    trainer.train()
    after = dict(model.named_parameters())
    for name in FROZEN_PARAMETERS:
        assert not after[name].requires_grad
        assert torch.equal(after[name], initial[name]), name
    for name in ("clip.visual.transformer.resblocks.0.attn.in_proj_weight",
                 "clip.transformer.resblocks.0.mlp.c_fc.weight", "clip.visual.proj",
                 "head.global_weight", "head.transformer.resblocks.0.mlp.c_proj.weight"):
        assert not torch.equal(after[name], initial[name]), name


def test_parameter_groups_follow_the_official_recipe():
    model = _model()
    config = TrainConfig()  # official: lr 1e-4, CLIP at 1e-4 x 1e-3
    groups = {g["name"]: g for g in parameter_groups(model, config)}
    assert groups["clip"]["lr"] == pytest.approx(1e-7)
    assert groups["head"]["lr"] == pytest.approx(1e-4)
    assert groups["clip_no_decay"]["weight_decay"] == 0.0 and groups["clip"]["weight_decay"] == 0.2
    names = {id(p): n for n, p in model.named_parameters()}
    for group in groups.values():
        for p in group["params"]:
            assert ("bias" in names[id(p)]) == group["name"].endswith("no_decay")
            assert names[id(p)].startswith("clip.") == group["name"].startswith("clip")
    assert TrainConfig(clip_lr=5e-4).effective_clip_lr == 5e-4


def test_warmup_cosine_schedule():
    assert warmup_cosine(0, 100, 0.1) == 0.0
    assert warmup_cosine(5, 100, 0.1) == pytest.approx(0.5)
    assert warmup_cosine(10, 100, 0.1) == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.1)))
    assert warmup_cosine(100, 100, 0.1) == pytest.approx(0.0, abs=1e-12)


@pytest.mark.slow  # ~27 CPU-s; 70-90 s of wall time on the shared box
def test_checkpoint_resume_gives_the_same_state(tmp_path):
    config = _config(steps=6)
    straight_model = _model()
    data = _pairs(straight_model)
    Trainer(straight_model, data, config).train()

    first = _model()
    trainer = Trainer(first, data, config, out_dir=tmp_path)
    trainer.train(until=3)
    state = trainer.save_state()

    resumed_model = _model()
    resumed = Trainer(resumed_model, data, config, out_dir=tmp_path)
    resumed.load_state(state)
    assert resumed.step == 3
    resumed.train()
    assert resumed.step == 6
    pairs = zip(straight_model.state_dict().items(), resumed_model.state_dict().items())
    for (name, a), (_, b) in pairs:
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=name)
    assert resumed.scheduler.last_epoch == 6


def test_resume_refuses_a_different_schedule(tmp_path):
    model = _model()
    data = _pairs(model)
    trainer = Trainer(model, data, _config(steps=2), out_dir=tmp_path)
    trainer.train()
    other = Trainer(_model(), data, _config(steps=5), out_dir=tmp_path)
    with pytest.raises(ValueError, match="saved for 2 steps"):
        other.load_state(tmp_path / "train_state.pt")


def test_too_few_pairs_is_an_error():
    model = _model()
    data = _pairs(model, num_videos=2)
    with pytest.raises(ValueError, match="fewer than one batch"):
        Trainer(model, data, _config(batch_size=64))


def test_group_batches_hold_whole_sibling_groups_one_caption_per_video():
    model = _model()
    data = _pairs(model, num_videos=24)  # 8 groups of 3 siblings
    trainer = Trainer(model, data, _config(batch_size=9, group_batches=True))
    assert trainer.groups_per_batch == 3 and trainer.batches_per_epoch == 8 // 3
    seen_groups = set()
    for step in range(trainer.batches_per_epoch):
        captions = trainer.batch_indices(step)
        videos = data.caption_video[captions].tolist()
        # no video twice: no false negatives of itself
        assert len(videos) == 9 and len(set(videos)) == 9
        groups = data.video_group[videos].tolist()
        for g in set(groups):
            members = (data.video_group == g).nonzero().flatten().tolist()
            assert sorted(v for v in videos if data.video_group[v] == g) == members
        assert not seen_groups & set(groups)  # an epoch visits each group at most once
        seen_groups |= set(groups)
    assert torch.equal(trainer.batch_indices(5), trainer.batch_indices(5))  # deterministic (resume)
    no_groups = TrainingPairs(data.frames, data.mask, data.tokens, data.caption_video)
    with pytest.raises(ValueError, match="video_group"):
        Trainer(model, no_groups, _config(group_batches=True))


def test_decode_all_skips_broken_videos(tmp_path):
    """Training decodes in the isolated pool: a file that cannot be decoded is skipped, not
    fatal."""
    from eercf_core.training.data import decode_all
    from eercf_core.video.writer import write_video

    rng = np.random.default_rng(0)
    uris = {}
    for name in ("a", "b"):
        uris[name] = str(write_video(tmp_path / f"{name}.mp4",
                                     rng.integers(0, 256, (16, 64, 64, 3), dtype=np.uint8), fps=4))
    (tmp_path / "broken.mp4").write_bytes(b"not a video at all")
    uris["broken"] = str(tmp_path / "broken.mp4")
    ids, frames, mask = decode_all(uris, image_size=64, num_frames=12, workers=2)
    assert ids == ["a", "b"]
    assert frames.shape == (2, 12, 64, 64, 3) and mask.shape == (2, 12)
    assert mask.sum(1).tolist() == [4, 4]  # 4 s of video at 1 fps
