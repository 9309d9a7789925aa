"""`eercf extract` end to end on whatever this machine has (CPU, or a CUDA GPU), against its two
stages alone: is the model keeping up with the decoders, and where does the time go?

    python -m bench extract [--quick] [--clips=N] [--videos=DIR] [--repeat=N] [--device=auto]
                            [--batch-size=32] [--workers=N] [--model=ViT-B-32] [--no-previews]
                            [--infer-videos=N] [--parity-videos=N]

Inputs: N (200; --quick 20) generated H.264 clips, 5-10 s, 320x240, 24-30 fps, moving content
(eercf_core.video.writer, cached in bench_out/extract_clips/), or every video under --videos=DIR
(e.g. ../shared/videos); either set listed --repeat times (ids r<k>/<id>, the same files) so a
fast machine runs for a few minutes. The model is `--model` with seeded random weights (no
weights download offline; the speed is the same), on --device (auto: CUDA when visible).

Measurements, in this order, on the same inputs:
1. end to end: `eercf extract` in a subprocess (Beam FnApiRunner, decode worker processes,
   decode-ahead queue, RunInference, shards written), fresh output: videos/s; its peak RSS (the
   largest of its processes, getrusage of waited-for children); on CUDA the GPU busy fraction
   sampled by NVML (`nvidia-smi --query-gpu=utilization.gpu -lms 200`) while it runs;
2. decode only: the pipeline's decode step alone (same options, same number of processes);
3. inference only: the model on decoded frames already in memory (batches of --batch-size videos,
   the unique decoded videos cycled up to --infer-videos, default all inputs), frames/s and
   videos/s; on CUDA the GPU time of each batch from CUDA events, so busy = event time / wall;
4. parity: features of --parity-videos (16; 2 without a GPU) decoded videos on --device vs CPU
   fp32, cosine per valid frame (raw, contextual, patch tokens); without a GPU the fp16 path
   forced on the CPU (`half_precision`, slow there) stands in, and the result says which ran.

Derived: `end_to_end_vs_decode` = end-to-end videos/s / decode-only videos/s (the GPU target is
>= 0.9: the model and the pipeline cost less than 10 % of the decoders' rate);
`model_seconds_per_decode_second` = inference-only seconds / decode-only seconds (below 1 the
model keeps up, and overlap can hide it); `gpu_busy_estimate` = inference-only GPU seconds /
end-to-end seconds when NVML is not there. `device` names the card or says "no GPU".
Peak RSS of the bench itself: run it under `/usr/bin/time -v`.
"""
from __future__ import annotations

import json
import logging
import os
import resource
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from eercf_core.files.atomic import local_temp_path
from eercf_core.files.inputs import VideoRef, read_inputs
from eercf_core.video.decode import DecodedVideo, DecodeOptions, decode_job
from eercf_core.video.isolation import IsolatedPool

if TYPE_CHECKING:
    import torch

    from eercf_core.model.network import EercfModel
    from eercf_core.model.spec import ModelSpec

log = logging.getLogger(__name__)
MODEL = "ViT-B-32"
OUT = Path("bench_out")


def make_clips(root: Path, count: int, seed: int = 0) -> list[Path]:
    """`count` H.264 clips (5-10 s, 320x240, 24-30 fps) of moving gradients and blocks.

    Reuses clips already in `root` (the file name encodes the clip's parameters)."""
    from eercf_core.video.writer import write_video

    rng = np.random.default_rng(seed)
    paths = []
    yy, xx = np.mgrid[0:240, 0:320].astype(np.float32)
    for i in range(count):
        seconds, fps = int(rng.integers(5, 11)), int(rng.choice([24, 25, 30]))
        colour = rng.integers(0, 256, size=3)
        path = root / f"clip{i:04d}_{seconds}s_{fps}fps.mp4"
        paths.append(path)
        if path.exists():
            continue
        n = seconds * fps
        frames = np.empty((n, 240, 320, 3), dtype=np.uint8)
        for k in range(n):
            phase = k / fps
            base = 127 + 100 * np.sin(xx / 23.0 + yy / 41.0 + 2.0 * phase)
            frames[k] = base[..., None].astype(np.uint8)
            y0, x0 = int(100 + 80 * np.sin(phase)), int(150 + 120 * np.cos(0.7 * phase))
            frames[k, y0:y0 + 40, x0:x0 + 40] = colour
        with local_temp_path(path) as temp:
            write_video(temp, frames, fps=fps)
    return paths


def repeated(refs: list[VideoRef], repeat: int) -> list[VideoRef]:
    """`refs` listed `repeat` times under distinct ids (r<k>/<id>), same files."""
    if repeat == 1:
        return list(refs)
    return [VideoRef(f"r{k}/{ref.video_id}", ref.uri) for k in range(repeat) for ref in refs]


class NvmlSampler:
    """GPU utilisation samples (NVML, through `nvidia-smi -lms`) while it runs; `mean()` is the
    busy fraction (the share of time a kernel ran), None where nvidia-smi is missing."""

    def __init__(self, period_ms: int = 200):
        self.samples: list[float] = []
        self.process: subprocess.Popen | None = None
        executable = shutil.which("nvidia-smi")
        if executable is None:
            return
        self.process = subprocess.Popen(
            [executable, "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits",
             f"-lms={period_ms}", "-i", "0"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            text=True)
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        for line in self.process.stdout:
            try:
                self.samples.append(float(line.strip()) / 100.0)
            except ValueError:
                continue

    def stop(self) -> float | None:
        if self.process is None:
            return None
        self.process.terminate()
        self.process.wait(10)
        self.thread.join(5)
        return round(float(np.mean(self.samples)), 4) if self.samples else None


def device_facts(device: torch.device) -> dict:
    """The device the model ran on, in words: the card's name, or "no GPU"."""
    import torch

    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        return {"device": f"{props.name} ({props.total_memory / 2**30:.0f} GiB)",
                "cuda": torch.version.cuda, "gpu_count": torch.cuda.device_count()}
    return {"device": f"no GPU (CPU, {torch.get_num_threads()} torch threads)", "cuda": None,
            "gpu_count": 0}


def run_pipeline(refs: list[VideoRef], output: Path, model: str, device: str, batch_size: int,
                 workers: int, previews: bool, sample_gpu: bool) -> dict:
    """`eercf extract` over `refs` in a subprocess; seconds, peak RSS, NVML busy fraction."""
    shutil.rmtree(output, ignore_errors=True)
    manifest = OUT / "extract_manifest.jsonl"
    manifest.write_text("".join(json.dumps({"video_id": r.video_id, "uri": r.uri}) + "\n"
                                for r in refs))
    command = [sys.executable, "-m", "pipelines.cli", "extract", "--input", str(manifest),
               "--output", str(output), "--model", model, "--random-init", "--device", device,
               "--batch-size", str(batch_size), "--workers", str(workers),
               "--progress-seconds", "30"] + ([] if previews else ["--no-previews"])
    sampler = NvmlSampler() if sample_gpu else None
    started = time.perf_counter()
    code = subprocess.call(command)
    seconds = time.perf_counter() - started
    busy = sampler.stop() if sampler is not None else None
    summary = json.loads((output / "summary.json").read_text())
    if code != 0 or summary["videos"] != len(refs):
        raise RuntimeError(f"extract failed: exit {code}, {summary['by_status']}")
    # ru_maxrss: KiB on Linux, the largest waited-for descendant (this runs before any other)
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return {"seconds": seconds, "by_status": summary["by_status"], "peak_rss_mb": peak_mb,
            "nvml_busy": busy}


def decode_only(refs: list[VideoRef], options: DecodeOptions, workers: int) -> tuple[float, list]:
    """Decode every ref in `workers` isolated processes; (seconds, decoded videos of the first
    occurrence of each file, ok ones only). Pool start-up is not timed."""
    first: dict[str, int] = {}
    for i, ref in enumerate(refs):
        first.setdefault(ref.uri, i)
    keep = set(first.values())
    with IsolatedPool(decode_job, workers=workers, timeout=120) as pool:
        list(pool.imap_unordered([(refs[0].uri, options)] * workers))
        started = time.perf_counter()
        kept = {o.index: o.value for o in pool.imap_unordered([(r.uri, options) for r in refs])
                if o.ok and o.index in keep}
        seconds = time.perf_counter() - started
    return seconds, [kept[i] for i in sorted(kept)]


def inference_only(model: EercfModel, videos: list[DecodedVideo], count: int, batch_size: int
                   ) -> dict:
    """`model.encode_video` on `count` videos cycled from the decoded `videos`, batches stacked
    beforehand (frames from memory); wall seconds and, on CUDA, GPU seconds from CUDA events."""
    import torch

    batches = []
    for start in range(0, count, batch_size):
        chunk = [videos[i % len(videos)] for i in range(start, min(start + batch_size, count))]
        batches.append((np.stack([v.frames for v in chunk]), np.stack([v.mask for v in chunk])))
    cuda = model.device.type == "cuda"
    model.encode_video(*batches[0], batch_size=batch_size)  # warm-up (kernels, allocator)
    if cuda:
        torch.cuda.synchronize(model.device)
    gpu_ms = 0.0
    started = time.perf_counter()
    for frames, mask in batches:
        if cuda:
            begin = torch.cuda.Event(enable_timing=True)
            end = torch.cuda.Event(enable_timing=True)
            begin.record()
        model.encode_video(frames, mask, batch_size=batch_size)  # returns on the CPU: synced
        if cuda:
            end.record()
            end.synchronize()
            gpu_ms += begin.elapsed_time(end)
    seconds = time.perf_counter() - started
    frames_total = int(sum(m.sum() for _, m in batches))
    return {"seconds": seconds, "videos": count, "frames": frames_total,
            "gpu_seconds": gpu_ms / 1000 if cuda else None}


def parity(model: EercfModel, spec: ModelSpec, videos: list[DecodedVideo]) -> dict:
    """Per-frame cosine of `model`'s features against CPU fp32 ones on `videos` (raw, contextual
    and patch tokens of valid frames). On a CPU model, the fp16 path forced on the CPU."""
    import dataclasses

    import torch

    from eercf_core.model.spec import load_model_spec

    frames = np.stack([v.frames for v in videos])
    mask = np.stack([v.mask for v in videos])
    if model.device.type == "cuda":
        reference = load_model_spec(dataclasses.replace(spec, device="cpu"))
        what = f"{model.device} fp16 autocast vs CPU fp32"
        candidate = model.encode_video(frames, mask)
        expected = reference.encode_video(frames, mask)
    else:
        what = "no GPU: fp16 autocast forced on the CPU vs CPU fp32"
        expected = model.encode_video(frames, mask)
        model.half_precision = True
        try:
            candidate = model.encode_video(frames, mask)
        finally:
            model.half_precision = None
    valid = expected.mask
    cosines = {
        "frame": torch.nn.functional.cosine_similarity(expected.frame, candidate.frame, -1)[valid],
        "context": torch.nn.functional.cosine_similarity(expected.context, candidate.context,
                                                         -1)[valid],
        "patch": torch.nn.functional.cosine_similarity(expected.patch, candidate.patch, -1),
        "coarse": torch.nn.functional.cosine_similarity(expected.coarse, candidate.coarse, -1)}
    worst = {name: round(float(c.min()), 6) for name, c in cosines.items()}
    return {"compared": what, "videos": len(videos), "min_cosine": worst,
            "holds_0_999": min(worst.values()) >= 0.999}


def main(flags: list[str]) -> dict:
    import torch

    from eercf_core.model.device import resolve_device
    from eercf_core.model.spec import ModelSpec, load_model_spec

    quick = "--quick" in flags
    batch_size = int(_flag(flags, "--batch-size", 32))
    workers = int(_flag(flags, "--workers", os.cpu_count() or 1))
    repeat = int(_flag(flags, "--repeat", 1))
    model_name = str(_flag(flags, "--model", MODEL))
    device_flag = str(_flag(flags, "--device", "auto"))
    previews = "--no-previews" not in flags
    device = resolve_device(device_flag)

    started = time.perf_counter()
    videos_dir = _flag(flags, "--videos", None)
    if videos_dir:
        base = read_inputs([str(Path(videos_dir).resolve())])
    else:
        count = int(_flag(flags, "--clips", 20 if quick else 200))
        clips = make_clips(OUT / "extract_clips", count)
        base = [VideoRef(p.stem, str(p.resolve())) for p in clips]
    refs = repeated(base, repeat)
    log.info("%d inputs (%d files x %d) ready in %.1f s", len(refs), len(base), repeat,
             time.perf_counter() - started)

    # 1. end to end (first: its peak RSS is read from this process's waited-for children)
    e2e = run_pipeline(refs, OUT / "extract_features", model_name, device_flag, batch_size,
                       workers, previews, sample_gpu=device.type == "cuda")

    started = time.perf_counter()
    spec = ModelSpec(model_name, random_init=True, device=device_flag)
    model = load_model_spec(spec)
    model_build_s = time.perf_counter() - started

    log.info("end to end: %.1f s; decode only next", e2e["seconds"])
    # 2. decode only, as the pipeline decodes (same options and number of processes)
    options = DecodeOptions(num_frames=model.num_frames, image_size=model.image_size)
    decode_s, decoded = decode_only(refs, options, workers)
    if not decoded:
        raise RuntimeError("no input decoded: nothing to run the model on")

    log.info("decode only: %.1f s; inference only next", decode_s)
    # 3. inference only, frames from memory
    infer = inference_only(model, decoded, int(_flag(flags, "--infer-videos", len(refs))),
                           batch_size)

    log.info("inference only: %.1f s; parity next", infer["seconds"])
    # 4. features on this device vs CPU fp32
    # (on a CPU the forced fp16 path is slow, emulated: 2 videos there by default)
    parity_videos = int(_flag(flags, "--parity-videos", 16 if device.type == "cuda" else 2))
    check = parity(model, spec, decoded[:parity_videos])

    decode_rate = len(refs) / decode_s
    e2e_rate = len(refs) / e2e["seconds"]
    infer_rate = infer["videos"] / infer["seconds"]
    model_per_decode = (len(refs) / infer_rate) / decode_s
    result = {
        **device_facts(device), "model": model_name, "weights": "random init (seed 0)",
        "inputs": len(refs), "files": len(base), "repeat": repeat,
        "source": videos_dir or "generated clips (320x240 H.264, 5-10 s)",
        "by_status": e2e["by_status"], "batch_size": batch_size, "decode_workers": workers,
        "previews": previews, "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "model_build_s": round(model_build_s, 2),
        "end_to_end_s": round(e2e["seconds"], 2),
        "end_to_end_videos_per_s": round(e2e_rate, 3),
        "end_to_end_peak_rss_mb": round(e2e["peak_rss_mb"], 1),
        "decode_only_s": round(decode_s, 2),
        "decode_only_videos_per_s": round(decode_rate, 3),
        "inference_only_s": round(infer["seconds"], 2),
        "inference_only_videos_per_s": round(infer_rate, 2),
        "inference_only_frames_per_s": round(infer["frames"] / infer["seconds"], 1),
        "end_to_end_vs_decode": round(e2e_rate / decode_rate, 3),
        "model_seconds_per_decode_second": round(model_per_decode, 3),
        "parity": check,
    }
    if device.type == "cuda":
        result["inference_only_gpu_busy"] = round(infer["gpu_seconds"] / infer["seconds"], 4)
        result["end_to_end_gpu_busy_nvml"] = e2e["nvml_busy"]
        result["end_to_end_gpu_busy_estimate"] = round(
            infer["gpu_seconds"] / infer["videos"] * len(refs) / e2e["seconds"], 4)
        result["gpu_target_end_to_end_ge_0_9_of_decode"] = e2e_rate / decode_rate >= 0.9
    else:
        result["gpu_busy"] = "no GPU"
    return result


def _flag(flags: list[str], name: str, default: Any) -> Any:
    """The value of `--name=VALUE` in `flags`, else `default`."""
    for flag in flags:
        if flag.startswith(name + "="):
            return flag.split("=", 1)[1]
    return default
