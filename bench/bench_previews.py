"""What previews cost at extraction: bytes per video, and extraction time with vs without them.

Side by side in one run, on the same clips (bench_extract's generated H.264 clips, 320x240,
5-10 s; N = 40, --quick 10) and the same model (ViT-B-32, random init, seed 0, S = 224):

1. `eercf extract` (Beam pipeline, in a subprocess) with previews and with `--no-previews`,
   fresh output each time, alternating, --repeats times (2): end-to-end seconds (best of the
   repeats, model build included in both) and the shard bytes per video of each;
2. preview bytes per video (middle-frame JPEG, frame strip) from the shards of (1), and from the
   real videos in ../shared/videos/captioned (decoded as the pipeline does, when present);
3. `encode_previews` alone on the decoded frames: ms per video (the CPU the previews add).

    python -m bench previews [--quick] [--clips=N] [--repeats=2] [--workers=N]
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

import numpy as np

from bench.bench_extract import MODEL, OUT, _flag, make_clips
from eercf_core.files import shards
from eercf_core.video.decode import DecodeOptions, decode_job
from eercf_core.video.isolation import IsolatedPool
from eercf_core.video.previews import PREVIEW_COLUMNS, encode_previews

log = logging.getLogger("bench.previews")
REAL_VIDEOS = Path(__file__).resolve().parents[1].parent / "shared" / "videos" / "captioned"


def _extract(manifest: Path, output: Path, workers: int, previews: bool) -> float:
    shutil.rmtree(output, ignore_errors=True)
    started = time.perf_counter()
    code = subprocess.call([sys.executable, "-m", "pipelines.cli", "extract", "--input",
                            str(manifest), "--output", str(output), "--model", MODEL,
                            "--random-init", "--decode-workers", str(workers),
                            "--progress-seconds", "60",
                            *([] if previews else ["--no-previews"])])
    seconds = time.perf_counter() - started
    if code != 0:
        raise RuntimeError(f"extract failed with exit code {code}")
    return seconds


def _preview_bytes(output: Path) -> dict[str, float]:
    """Mean bytes per ok video of each preview column, and shard bytes per video."""
    sizes: dict[str, list[int]] = {column: [] for column in PREVIEW_COLUMNS}
    videos = 0
    for path in shards.list_shards(str(output)):
        table = shards.read_shard(path, columns=["status", *PREVIEW_COLUMNS])
        videos += table.num_rows
        for column in PREVIEW_COLUMNS:
            sizes[column] += [len(b) for b in table.column(column).to_pylist() if b]
    shard_bytes = sum(Path(p).stat().st_size for p in shards.list_shards(str(output)))
    return {**{f"{c}_bytes_per_video": round(float(np.mean(v)), 1) if v else 0.0
               for c, v in sizes.items()},
            "shard_bytes_per_video": round(shard_bytes / max(1, videos), 1)}


def _decode_all(paths: list[Path], image_size: int, workers: int) -> list:
    options = DecodeOptions(num_frames=12, image_size=image_size)
    with IsolatedPool(decode_job, workers=workers, timeout=120) as pool:
        outcomes = sorted(pool.imap_unordered([(str(p), options) for p in paths]),
                          key=lambda o: o.index)
    return [o.value for o in outcomes if o.ok]


def main(flags: list[str]) -> dict:
    import eercf_core as ec

    quick = "--quick" in flags
    count = int(_flag(flags, "--clips", 10 if quick else 40))
    repeats = int(_flag(flags, "--repeats", 2))
    workers = int(_flag(flags, "--workers", os.cpu_count() or 1))
    clips = make_clips(OUT / "extract_clips", count)
    manifest = OUT / "previews_manifest.jsonl"
    manifest.write_text("".join(json.dumps({"video_id": p.stem, "uri": str(p.resolve())}) + "\n"
                                for p in clips))
    image_size = ec.create_model(MODEL, seed=0).image_size

    timings: dict[bool, list[float]] = {True: [], False: []}
    for repeat in range(repeats):
        for previews in ((False, True) if repeat % 2 == 0 else (True, False)):
            output = OUT / f"previews_{'on' if previews else 'off'}"
            timings[previews].append(_extract(manifest, output, workers, previews))
            log.info("extract %s previews: %.2f s", "with" if previews else "without",
                     timings[previews][-1])
    with_previews = _preview_bytes(OUT / "previews_on")
    without = _preview_bytes(OUT / "previews_off")

    videos = _decode_all(clips, image_size, workers)
    started = time.perf_counter()
    for video in videos:
        encode_previews(video.frames, video.mask)
    encode_ms = 1000 * (time.perf_counter() - started) / max(1, len(videos))

    real = {}
    real_paths = sorted(REAL_VIDEOS.glob("*.mp4")) if REAL_VIDEOS.is_dir() else []
    if real_paths:
        encoded = [encode_previews(v.frames, v.mask)
                   for v in _decode_all(real_paths, image_size, workers)]
        real = {"real_videos": len(encoded), **{
            f"real_{c}_bytes_per_video": round(float(np.mean([len(e[c] or b"")
                                                               for e in encoded])), 1)
            for c in PREVIEW_COLUMNS}}

    best_on, best_off = min(timings[True]), min(timings[False])
    return {
        "clips": len(clips), "model": MODEL, "image_size": image_size,
        "decode_workers": workers, "repeats": repeats,
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "extract_s_with_previews": [round(t, 2) for t in timings[True]],
        "extract_s_without_previews": [round(t, 2) for t in timings[False]],
        "best_s_with_previews": round(best_on, 2), "best_s_without_previews": round(best_off, 2),
        "time_ratio_with_vs_without": round(best_on / best_off, 3),
        "extra_ms_per_video": round(1000 * (best_on - best_off) / len(clips), 1),
        "encode_previews_ms_per_video": round(encode_ms, 2),
        **with_previews,
        "shard_bytes_per_video_without_previews": without["shard_bytes_per_video"],
        **real,
    }
