"""Loading: the official EERCF layout, project checkpoints, open_clip names; and bad sources."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import eercf_core as ec
from schemas import FeatureDims
from tests.official_checkpoint import make_official_state_dict
from tests.reference import reference_temporal_head


@pytest.fixture(scope="module")
def official(tmp_path_factory):
    sd = make_official_state_dict(seed=3)
    path = tmp_path_factory.mktemp("official") / "pytorch_model.bin"
    torch.save(sd, path)
    return path, sd


@pytest.mark.slow
def test_official_checkpoint_layout_loads_and_reproduces_equations(official):
    import open_clip

    path, sd = official
    assert len(sd) == 353 and sum(k.startswith("clip.") for k in sd) == 302
    assert sum(v.numel() for k, v in sd.items() if not k.startswith("clip.")) == 12_911_248
    assert sd["clip.visual.conv1.weight"].dtype == torch.float16
    assert sd["clip.visual.ln_pre.weight"].dtype == torch.float32

    model = ec.load_model(str(path), device="cpu")
    assert model.mode == "eercf" and model.arch == "ViT-B-32"
    assert model.dims == FeatureDims(num_frames=12, num_patches=49, embed_dim=512)
    assert model.identity.model_id == "ViT-B-32/eercf/T12"

    # The CLIP part equals open_clip's forward on the same weights.
    reference = open_clip.create_model("ViT-B-32", force_quick_gelu=True)
    reference.load_state_dict({k[5:]: v.float() for k, v in sd.items() if k.startswith("clip.")})
    reference.eval()
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (2, 12, 224, 224, 3), dtype=np.uint8)
    mask = np.ones((2, 12), bool)
    mask[1, 9:] = False
    video = model.encode_video(frames, mask)
    pixels = model.preprocess_frames(frames).flatten(0, 1) * torch.as_tensor(mask).view(-1, 1, 1, 1)
    with torch.no_grad():
        visual = reference.visual
        tokens = visual.ln_post(visual.transformer(visual._embeds(pixels))) @ visual.proj
        image = reference.encode_image(pixels)
    cls, patches = tokens[:, 0], tokens[:, 1:]
    torch.testing.assert_close(cls, image, rtol=1e-4, atol=1e-4)
    norm = torch.nn.functional.normalize
    torch.testing.assert_close(video.frame, norm(cls, dim=-1).view(2, 12, 512),
                               rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(video.patch, norm(patches, dim=-1).reshape(2, 12 * 49, 512),
                               rtol=1e-4, atol=1e-4)
    # The head reproduces method §4 from the raw checkpoint tensors.
    h, v = reference_temporal_head(cls.view(2, 12, 512), torch.as_tensor(mask), sd, heads=8)
    torch.testing.assert_close(video.context, h, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(video.coarse, v, rtol=1e-4, atol=1e-4)
    # Text: the EOT feature of the text tower.
    captions = ["a man is playing a guitar", "two dogs run on the beach at sunset"]
    with torch.no_grad():
        expected = norm(reference.encode_text(open_clip.tokenize(captions)), dim=-1)
    torch.testing.assert_close(model.encode_text(captions), expected, rtol=1e-4, atol=1e-4)
    params = model.score_params
    torch.testing.assert_close(params.global_weight.detach(), sd["global_mat_weight"])
    torch.testing.assert_close(params.frame_logit_weight.detach(), sd["frame_logit_weight"])


def test_project_checkpoint_round_trip(tiny_model, tmp_path):
    path = tmp_path / "model.pt"
    digest = ec.save_model(tiny_model, str(path), extra={"step": 3})
    assert digest == tiny_model.identity.checkpoint_sha256
    raw = torch.load(path, weights_only=True)  # loadable without executing code
    assert raw["extra"] == {"step": 3}
    loaded = ec.load_model(str(path), device="cpu")
    assert loaded.identity == tiny_model.identity
    frames = np.random.default_rng(1).integers(0, 256, (2, 12, 64, 64, 3), dtype=np.uint8)
    mask = np.ones((2, 12), bool)
    a, b = tiny_model.encode_video(frames, mask), loaded.encode_video(frames, mask)
    torch.testing.assert_close(a.coarse, b.coarse)
    torch.testing.assert_close(a.patch, b.patch)


def test_zero_shot_project_checkpoint_round_trip(tmp_path):
    model = ec.create_model("eercf-tiny", head="zero-shot", seed=1)
    ec.save_model(model, str(tmp_path / "zs.pt"))
    loaded = ec.load_model(str(tmp_path / "zs.pt"))
    assert loaded.mode == "zero-shot" and loaded.identity == model.identity


def test_identity_depends_on_weights():
    a = ec.create_model("eercf-tiny", seed=1)
    b = ec.create_model("eercf-tiny", seed=1)
    c = ec.create_model("eercf-tiny", seed=2)
    assert a.identity == b.identity
    assert a.identity.checkpoint_sha256 != c.identity.checkpoint_sha256


def test_unknown_layout_lists_keys(tmp_path):
    path = tmp_path / "weird.bin"
    torch.save({"encoder.weight": torch.zeros(2), "decoder.bias": torch.zeros(1)}, path)
    with pytest.raises(ec.CheckpointError, match=r"unknown checkpoint "
                                                 r"layout.*decoder\.bias.*encoder\.weight"):
        ec.load_model(str(path))


def test_official_layout_with_bad_head_names_the_keys(tmp_path, official):
    _, sd = official
    broken = dict(sd)
    broken.pop("transformerClip.resblocks.3.ln_2.bias")
    path = tmp_path / "broken.bin"
    torch.save(broken, path)
    with pytest.raises(ec.CheckpointError, match=r"resblocks.3.ln_2.bias"):
        ec.load_model(str(path), device="cpu")


def test_not_a_checkpoint(tmp_path):
    path = tmp_path / "garbage.pt"
    path.write_bytes(b"not a zip or pickle")
    with pytest.raises(ec.CheckpointError, match=r"garbage.pt"):
        ec.load_model(str(path))


def test_missing_file_and_unknown_name():
    with pytest.raises(FileNotFoundError, match=r"nowhere/model.pt"):
        ec.load_model("nowhere/model.pt")
    with pytest.raises(ValueError, match="unknown model name 'ViT-Q-99'"):
        ec.load_model("ViT-Q-99")
    with pytest.raises(ValueError, match="pretrained 'bogus-tag'"):
        ec.load_model("eercf-tiny", pretrained="bogus-tag")


def test_local_open_clip_checkpoint_zero_shot(tmp_path):
    """`load_model(name, pretrained=<local open_clip file>)`: those weights, zero-shot mode."""
    import open_clip

    from eercf_core.model.checkpoint import register_model_configs

    register_model_configs()
    torch.manual_seed(11)
    clip = open_clip.create_model("eercf-tiny")
    path = tmp_path / "open_clip_tiny.bin"
    torch.save(clip.state_dict(), path)
    model = ec.load_model("eercf-tiny", pretrained=str(path), device="cpu")
    assert model.mode == "zero-shot"
    for key, value in clip.state_dict().items():
        torch.testing.assert_close(model.clip.state_dict()[key], value)
