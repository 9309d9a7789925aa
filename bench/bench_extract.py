"""End-to-end `eercf extract` on CPU: generated short clips, ViT-B-32 (random init), and the
share of wall time spent decoding versus in the model.

Clips: N (200; --quick 20) generated H.264 clips, 5-10 s, 320x240, 24-30 fps, moving content
(eercf_core.video.writer, cached in bench_out/extract_clips/). Three measurements on the same
clips in one run, with the model built once beforehand (its build time reported apart):

1. pipeline: `eercf extract` in a subprocess (Beam FnApiRunner, decode worker processes,
   RunInference), fresh output directory: end-to-end videos/s (its own model build included);
2. decode only: the pipeline's decode step alone (same options, same worker processes);
3. model only: `model.encode_video` on the decoded frames of (2), batches of --batch-size.

decode_share / model_share = stage seconds / (decode + model seconds): where the work goes.
pipeline_vs_stage_sum = pipeline seconds / (decode + model seconds): below 1 means the stages
overlapped; above 1 is Beam, IPC and shard-writing overhead.

    python -m bench extract [--quick] [--clips=N] [--batch-size=32] [--workers=N]
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from eercf_core.files.atomic import local_temp_path
from eercf_core.video.decode import DecodeOptions, decode_job
from eercf_core.video.isolation import IsolatedPool

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


def main(flags: list[str]) -> dict:
    import torch

    from eercf_core.model.spec import ModelSpec, load_model_spec

    quick = "--quick" in flags
    count = int(_flag(flags, "--clips", 20 if quick else 200))
    batch_size = int(_flag(flags, "--batch-size", 32))
    workers = int(_flag(flags, "--workers", os.cpu_count() or 1))
    started = time.perf_counter()
    clips = make_clips(OUT / "extract_clips", count)
    log.info("%d clips ready in %.1f s", len(clips), time.perf_counter() - started)

    started = time.perf_counter()
    # as extract builds it from the flags below
    model = load_model_spec(ModelSpec(MODEL, random_init=True))
    model_build_s = time.perf_counter() - started

    # 1. the pipeline, end to end
    output = OUT / "extract_features"
    shutil.rmtree(output, ignore_errors=True)
    manifest = OUT / "extract_manifest.jsonl"
    manifest.write_text("".join(json.dumps({"video_id": p.stem, "uri": str(p.resolve())}) + "\n"
                                for p in clips))
    started = time.perf_counter()
    code = subprocess.call([sys.executable, "-m", "pipelines.cli", "extract",
                            "--input", str(manifest), "--output", str(output), "--model", MODEL,
                            "--random-init", "--batch-size", str(batch_size), "--decode-workers",
                            str(workers), "--progress-seconds", "30"])
    pipeline_s = time.perf_counter() - started
    summary = json.loads((output / "summary.json").read_text())
    if code != 0 or summary["by_status"].get("ok") != len(clips):
        raise RuntimeError(f"extract failed: exit {code}, {summary['by_status']}")

    # 2. decode only, as the pipeline decodes (same options and worker processes)
    options = DecodeOptions(num_frames=model.num_frames, image_size=model.image_size)
    with IsolatedPool(decode_job, workers=workers, timeout=120) as pool:
        list(pool.imap_unordered([(str(clips[0]), options)] * workers))  # start-up not measured
        started = time.perf_counter()
        outcomes = sorted(pool.imap_unordered([(str(p), options) for p in clips]),
                          key=lambda o: o.index)
        decode_s = time.perf_counter() - started
    videos = [o.value for o in outcomes if o.ok]

    # 3. model only, on the same frames
    started = time.perf_counter()
    with torch.inference_mode():
        for i in range(0, len(videos), batch_size):
            chunk = videos[i:i + batch_size]
            model.encode_video(np.stack([v.frames for v in chunk]),
                               np.stack([v.mask for v in chunk]), batch_size=len(chunk))
    model_s = time.perf_counter() - started

    frames = int(sum(v.mask.sum() for v in videos))
    stages = decode_s + model_s
    return {
        "clips": len(clips), "frames": frames, "model": MODEL, "batch_size": batch_size,
        "decode_workers": workers, "torch_threads": torch.get_num_threads(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "model_build_s": round(model_build_s, 2),
        "pipeline_s": round(pipeline_s, 2),
        "pipeline_videos_per_s": round(len(clips) / pipeline_s, 3),
        "pipeline_frames_per_s": round(frames / pipeline_s, 1),
        "decode_only_s": round(decode_s, 2),
        "decode_only_videos_per_s": round(len(videos) / decode_s, 2),
        "model_only_s": round(model_s, 2),
        "model_only_frames_per_s": round(frames / model_s, 1),
        "decode_share": round(decode_s / stages, 3),
        "model_share": round(model_s / stages, 3),
        "pipeline_vs_stage_sum": round(pipeline_s / stages, 3),
    }


def _flag(flags: list[str], name: str, default: Any) -> Any:
    """The value of `--name=VALUE` in `flags`, else `default`."""
    for flag in flags:
        if flag.startswith(name + "="):
            return flag.split("=", 1)[1]
    return default
