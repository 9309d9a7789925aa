"""Decode throughput: the shipped path vs decord `get_batch` (accurate seek, 12 uniform frames).

Both run over the shared real files (../shared/videos/robustness + captioned) in the same
number of worker processes (all cores), in one run. Reports videos/s, frames/s, success rate,
and for the shipped path the largest distance of a sampled frame from its 1 fps target.
Variants (exact frames, decoder threads) show which lever wins.

    python -m bench decode [--quick] [--repeats N] [--workers N]
"""
from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import numpy as np

from eercf_core.decode import DecodeOptions, decode_job, sample_times
from eercf_core.isolation import IsolatedPool

log = logging.getLogger("bench.decode")
SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "videos"


def decord_baseline(uri: str) -> int:
    """Peers' path: VideoReader (accurate seek) + get_batch of 12 uniform frames, full size."""
    import decord

    reader = decord.VideoReader(uri, ctx=decord.cpu(0), num_threads=1)
    indices = np.linspace(0, len(reader) - 1, 12).round().astype(int).tolist()
    frames = reader.get_batch(indices).asnumpy()
    return int(frames.shape[0])


def _files(quick: bool) -> list[str]:
    files = sorted(str(p) for d in ("robustness", "captioned") for p in (SHARED / d).iterdir()
                   if p.suffix.lower() not in (".tsv", ".jsonl"))
    return files[::3] if quick else files


def _run(fn, jobs, workers: int, repeats: int) -> dict:
    with IsolatedPool(fn, workers=workers, timeout=120) as pool:
        list(pool.imap_unordered(jobs[:workers]))  # warm the workers up
        started = time.perf_counter()
        outcomes = []
        for _ in range(repeats):
            outcomes += list(pool.imap_unordered(jobs))
        seconds = time.perf_counter() - started
    ok = [o for o in outcomes if o.ok]
    frames = sum(int(o.value.mask.sum()) if hasattr(o.value, "mask") else int(o.value)
                 for o in ok)
    return {"videos_per_s": round(len(outcomes) / seconds, 2),
            "frames_per_s": round(frames / seconds, 1),
            "success_rate": round(len(ok) / len(outcomes), 3), "seconds": round(seconds, 2),
            "_ok": ok}


def _max_offset(outcomes) -> float:
    worst = 0.0
    for o in outcomes:
        video = o.value
        targets = sample_times(video.duration)
        worst = max(worst, float(np.max(np.abs(np.asarray(video.frame_times) - targets))))
    return round(worst, 4)


def main(flags: list[str]) -> dict:
    quick = "--quick" in flags
    repeats = int(_flag(flags, "--repeats", 1 if quick else 3))
    workers = int(_flag(flags, "--workers", os.cpu_count() or 1))
    files = _files(quick)
    log.info("%d files, %d workers, %d repeats", len(files), workers, repeats)
    results: dict = {"files": len(files), "workers": workers, "repeats": repeats}
    base = _run(decord_baseline, files, workers, repeats)
    base.pop("_ok")
    results["decord_get_batch_baseline"] = base
    variants = {
        "shipped_pyav_keyframe_aware": DecodeOptions(),
        "pyav_exact_frames": DecodeOptions(max_offset=0.0),
        "pyav_2_threads": DecodeOptions(threads=2),
        "decord_path_resized": DecodeOptions(backend="decord"),
    }
    if quick:
        variants = {k: v for k, v in variants.items() if k == "shipped_pyav_keyframe_aware"}
    for name, options in variants.items():
        stats = _run(decode_job, [(f, options) for f in files], workers, repeats)
        ok = stats.pop("_ok")
        stats["max_frame_offset_s"] = _max_offset(ok) if options.backend == "pyav" else None
        stats["speedup_vs_baseline_videos"] = round(
            stats["videos_per_s"] / max(base["videos_per_s"], 1e-9), 2)
        results[name] = stats
        log.info("%s: %s", name, stats)
    return results


def _flag(flags: list[str], name: str, default):
    for flag in flags:
        if flag.startswith(name + "="):
            return flag.split("=", 1)[1]
    return default
