"""--device and precision: `auto` resolution, refusals, the fp16 path (on the CPU here, on CUDA
where a GPU exists), and the launcher's model when the workers have a device it lacks."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from eercf_core.errors import UserInputError
from eercf_core.model import device as device_module
from eercf_core.model.device import autocast_dtype, resolve_device, usable_here
from pipelines.beam.inference import ModelSpec, build_model
from pipelines.commands import extract

SPEC = ModelSpec("eercf-tiny", random_init=True, head="eercf", seed=0, device="cpu")
HAS_CUDA = torch.cuda.is_available()


def pretend_cuda(monkeypatch, available: bool) -> None:
    monkeypatch.setattr(device_module, "cuda_available", lambda: available)


@pytest.mark.parametrize(("name", "available", "expected"), [
    ("auto", True, "cuda"), ("auto", False, "cpu"), (None, True, "cuda"), (None, False, "cpu"),
    ("cpu", True, "cpu")])
def test_auto_picks_a_gpu_when_there_is_one(monkeypatch, name, available, expected):
    pretend_cuda(monkeypatch, available)
    assert resolve_device(name).type == expected


def test_cuda_without_a_gpu_is_refused_naming_the_flag(monkeypatch):
    pretend_cuda(monkeypatch, False)
    with pytest.raises(UserInputError, match=r"--device cuda:1: no CUDA GPU is visible"):
        resolve_device("cuda:1")
    assert not usable_here("cuda") and usable_here("auto") and usable_here("cpu")


def test_bad_device_names_fail_at_parse_time(capsys):
    with pytest.raises(SystemExit) as exc:
        extract.build_parser().parse_args(["--input", "x", "--output", "y", "--device", "gpu"])
    assert exc.value.code == 2
    assert "unknown device 'gpu': expected auto, cpu, cuda or cuda:N" in capsys.readouterr().err
    args = extract.build_parser().parse_args(["--input", "x", "--output", "y"])
    assert args.device is None  # = auto
    assert resolve_device(args.device) == resolve_device("auto")


def test_fp16_autocast_follows_the_device_unless_forced():
    assert autocast_dtype(torch.device("cuda")) is torch.float16
    assert autocast_dtype(torch.device("cpu")) is None
    assert autocast_dtype(torch.device("cpu"), half_precision=True) is torch.float16
    assert autocast_dtype(torch.device("cuda"), half_precision=False) is None


def _frames(model, videos: int = 3, seed: int = 0):
    rng = np.random.default_rng(seed)
    frames = rng.integers(0, 256, (videos, model.num_frames, 64, 64, 3), dtype=np.uint8)
    mask = np.ones((videos, model.num_frames), bool)
    mask[1, -3:] = False
    frames[~mask] = 0
    return frames, mask


def _per_frame_cosine(a, b) -> torch.Tensor:
    """Cosine per valid frame of raw, contextual and patch features (flattened together)."""
    cos = [torch.nn.functional.cosine_similarity(a.frame, b.frame, dim=-1)[a.mask],
           torch.nn.functional.cosine_similarity(a.context, b.context, dim=-1)[a.mask],
           torch.nn.functional.cosine_similarity(a.patch, b.patch, dim=-1).flatten()]
    return torch.cat([c.flatten() for c in cos])


def test_the_fp16_path_matches_fp32_within_tolerance_on_the_cpu():
    """The same code path CUDA runs (fp16 autocast on the image tower), forced on the CPU."""
    model = build_model(SPEC)
    frames, mask = _frames(model)
    reference = model.encode_video(frames, mask)
    try:
        model.half_precision = True
        half = model.encode_video(frames, mask)
    finally:
        model.half_precision = None
    assert half.frame.dtype == torch.float32  # features leave the model in fp32 either way
    assert not torch.equal(half.frame, reference.frame)  # fp16 really ran
    assert _per_frame_cosine(reference, half).min() >= 0.999


@pytest.mark.skipif(not HAS_CUDA, reason="no CUDA GPU: the device lines of this check skip")
def test_cuda_features_equal_cpu_features_within_fp16_tolerance():
    cpu = build_model(SPEC)
    gpu = build_model(ModelSpec("eercf-tiny", random_init=True, head="eercf", seed=0,
                                device="cuda"))
    assert gpu.identity == cpu.identity  # the same weights, whatever the device
    frames, mask = _frames(cpu)
    on_gpu = gpu.encode_video(frames, mask)
    assert on_gpu.frame.device.type == "cpu"  # results come back to the CPU
    assert _per_frame_cosine(cpu.encode_video(frames, mask), on_gpu).min() >= 0.999


def test_the_launcher_of_gpu_workers_reads_the_model_on_its_cpu(monkeypatch):
    pretend_cuda(monkeypatch, False)
    gpu_spec = ModelSpec("eercf-tiny", random_init=True, device="cuda")
    assert extract.launcher_spec(gpu_spec, ["--runner", "DataflowRunner"]).device == "cpu"
    # in process, the launcher's model is the workers' model: a missing GPU is an error there
    assert extract.launcher_spec(gpu_spec, []) is gpu_spec
    auto = ModelSpec("eercf-tiny", random_init=True, device="auto")
    assert extract.launcher_spec(auto, ["--runner", "DataflowRunner"]) is auto


def test_extract_on_a_missing_gpu_fails_before_decoding(monkeypatch, tmp_path):
    pretend_cuda(monkeypatch, False)
    video = tmp_path / "v.mp4"
    video.write_bytes(b"x")
    with pytest.raises(UserInputError, match="--device cuda: no CUDA GPU is visible"):
        extract.run(["--input", str(video), "--output", str(tmp_path / "out"), "--model",
                     "eercf-tiny", "--random-init", "--device", "cuda"])


def test_triton_is_not_loaded_on_a_host_without_a_gpu_and_stays_importable():
    """torchvision -> torch._dynamo -> Triton costs 75 MB per worker and is useless without a
    GPU (`lean_imports`); with a GPU, or when Triton is already loaded, imports are untouched."""
    pytest.importorskip("triton")
    from tests.helpers import run_fresh_python

    script = """if True:
        import sys
        import eercf_core.model.device as device
        device.cuda_available = lambda: {gpu}
        from eercf_core.model.lean_imports import import_open_clip
        import eercf_core.model.network
        import_open_clip()
        loaded = "triton" in sys.modules
        import triton  # still importable afterwards, by code that wants it
        print(loaded, "torchvision" in sys.modules, "open_clip" in sys.modules)
    """
    assert run_fresh_python(script.format(gpu=False), timeout=120) == "False True True"
    assert run_fresh_python(script.format(gpu=True), timeout=120) == "True True True"
