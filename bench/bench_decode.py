"""Decode throughput: the shipped path vs decord `get_batch` (accurate seek, 12 uniform frames).

Every variant runs over the shared real files (../shared/videos/robustness + captioned) in
worker processes (eercf_core.isolation, 2 by default = all cores), in one run; repeats are
interleaved (baseline, variant 1, variant 2, ..., baseline, ...) so that load from other
processes hits all of them alike. Per variant:

- videos_per_s / frames_per_s: wall clock over the corpus (what a user sees; on a shared
  machine, more decoder threads also means a bigger share of a contended CPU);
- cpu_s_per_video: CPU seconds (all threads) spent inside the workers per video; the fair
  "same cores" comparison when the machine is busy. Both speedups are against the baseline;
- success_rate over the corpus;
- max_frame_offset_s: largest |presentation time of a sampled frame - its 1 fps target|;
  max_display_offset_s: largest distance from a target to the time span during which the
  chosen frame is on screen [pts, next pts) (0 when it is the frame showing at the target:
  a variable-frame-rate file can show one frame for more than a second);
- drift_mean_abs (variants that may change pixels): mean |uint8 difference| of the kept frames
  against the exact reference decode (max_offset = 0, no frame skipping) at equal times.
Offsets and drift come from a separate, untimed pass.

    python -m bench decode [--quick] [--repeats=N] [--workers=N]
"""
from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

from eercf_core.decode import DecodeOptions, decode_video, sample_times
from eercf_core.isolation import IsolatedPool

log = logging.getLogger(__name__)
SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "videos"
REFERENCE = DecodeOptions(max_offset=0.0, skip_window=-1)


@dataclasses.dataclass(frozen=True)
class Variant:
    """One measured configuration: decode options (None = the decord baseline), processes."""

    options: DecodeOptions | None
    workers: int
    check_drift: bool = False


def decord_baseline(uri: str) -> int:
    """Peers' path: VideoReader (accurate seek) + get_batch of 12 uniform frames, full size."""
    import decord

    reader = decord.VideoReader(uri, ctx=decord.cpu(0), num_threads=1)
    indices = np.linspace(0, len(reader) - 1, 12).round().astype(int).tolist()
    frames = reader.get_batch(indices).asnumpy()
    return int(frames.shape[0])


def _frame_offsets(uri: str, video) -> tuple[float, float]:
    """(max |frame time - target|, max distance of a target from its frame's display span)."""
    import av

    from eercf_core.decode import _index_packets

    targets = sample_times(video.duration)
    times = np.asarray(video.frame_times)
    with av.open(uri) as container:
        stream = container.streams.video[0]
        index = _index_packets(container, stream, uri)
        pts = (index.pts - index.start) * float(stream.time_base)
        end = (index.end - index.start) * float(stream.time_base)
    following = np.append(pts, end)[np.searchsorted(pts, times + 1e-6, side="left")]
    outside = np.maximum(times - targets, 0) + np.maximum(targets - following, 0)
    return float(np.max(np.abs(times - targets))), float(np.max(outside))


def bench_job(job: tuple[str, Variant, bool]) -> dict:
    """Run one video through one variant in a worker; CPU time covers every thread.

    check=False: the timed pass (the decoded pixels travel back, as in the pipeline).
    check=True: the untimed accuracy pass (frame offsets; drift against the exact decode)."""
    uri, variant, check = job
    started = time.process_time()
    if variant.options is None:
        frames = decord_baseline(uri)
        return {"cpu_s": time.process_time() - started, "frames": frames}
    video = decode_video(uri, variant.options)
    result = {"cpu_s": time.process_time() - started, "frames": int(video.mask.sum()),
              "frames_decoded": video.frames_decoded}
    if not check:
        result["pixels"] = video.frames
        return result
    if variant.options.backend == "pyav":
        result["offset_s"], result["display_offset_s"] = _frame_offsets(uri, video)
    if variant.check_drift:
        exact = decode_video(uri, dataclasses.replace(
            variant.options, max_offset=REFERENCE.max_offset, skip_window=REFERENCE.skip_window,
            codec_options=REFERENCE.codec_options, threads=1))
        same = [i for i, (a, b) in enumerate(zip(video.frame_times, exact.frame_times))
                if abs(a - b) < 1e-6]
        result["drift"] = float(np.abs(video.frames[same].astype(np.int16)
                                       - exact.frames[same]).mean()) if same else 0.0
    return result


def _strip(outcome):
    if outcome.ok:
        outcome.value.pop("pixels", None)  # keep the memory of many repeats small
    return outcome


def variants(quick: bool, workers: int) -> dict[str, Variant]:
    """The measured configurations; the first is the baseline, the second the shipped default."""
    shipped = DecodeOptions()
    every = {
        "decord_get_batch_baseline": Variant(None, workers),
        "shipped_pyav": Variant(shipped, workers),
        "pyav_exact_frames(max_offset=0)": Variant(DecodeOptions(max_offset=0.0), workers),
        "pyav_no_nonref_skipping": Variant(DecodeOptions(skip_window=-1), workers),
        "pyav_nonref_window_0.25s(previous default)": Variant(DecodeOptions(skip_window=0.25),
                                                               workers),
        f"pyav_{workers}_procs_x_2_threads": Variant(DecodeOptions(threads=2), workers),
        "pyav_1_proc_x_2_threads": Variant(DecodeOptions(threads=2), 1),
        "pyav_skip_loop_filter(drifts)": Variant(
            DecodeOptions(codec_options=(("skip_loop_filter", "all"),)), workers, True),
        "decord_path_resized": Variant(DecodeOptions(backend="decord"), workers),
    }
    if quick:
        return {k: every[k] for k in ("decord_get_batch_baseline", "shipped_pyav")}
    return every


def _files(quick: bool) -> list[str]:
    files = sorted(str(p) for d in ("robustness", "captioned") for p in (SHARED / d).iterdir()
                   if p.suffix.lower() not in (".tsv", ".jsonl"))
    return files[::3] if quick else files


def main(flags: list[str]) -> dict:
    quick = "--quick" in flags
    repeats = int(_flag(flags, "--repeats", 1 if quick else 3))
    workers = int(_flag(flags, "--workers", os.cpu_count() or 1))
    files = _files(quick)
    chosen = variants(quick, workers)
    log.info("%d files, %d variants, %d workers, %d interleaved repeats, load average %s",
             len(files), len(chosen), workers, repeats, os.getloadavg())
    runs: dict[str, list] = defaultdict(list)  # variant -> [(seconds, outcomes)]
    pools = {n: IsolatedPool(bench_job, workers=n, timeout=120)
             for n in sorted({v.workers for v in chosen.values()})}
    try:
        for n, pool in pools.items():  # start-up and imports are not measured
            list(pool.imap_unordered([(f, chosen["shipped_pyav"], False) for f in files[:n]]))
        for _ in range(repeats):
            for name, variant in chosen.items():
                started = time.perf_counter()
                outcomes = [_strip(o) for o in pools[variant.workers].imap_unordered(
                    [(f, variant, False) for f in files])]
                runs[name].append((time.perf_counter() - started, outcomes))
        checks = {name: [o.value for o in pools[workers].imap_unordered(
                      [(f, variant, True) for f in files]) if o.ok]
                  for name, variant in chosen.items() if variant.options is not None}
    finally:
        for pool in pools.values():
            pool.close()
    results: dict = {"files": len(files), "workers": workers, "repeats": repeats,
                     "load_average_end": [round(x, 2) for x in os.getloadavg()]}
    base = None
    for name in chosen:
        stats = _summarize(runs[name], checks.get(name, []))
        if base is None:
            base = stats
        else:
            stats["speedup_wall"] = round(stats["videos_per_s"] / base["videos_per_s"], 2)
            stats["speedup_cpu"] = round(base["cpu_s_per_video"] / stats["cpu_s_per_video"], 2)
        results[name] = stats
        log.info("%s: %s", name, stats)
    return results


def _summarize(runs: list, checked: list[dict]) -> dict:
    seconds = sum(s for s, _ in runs)
    outcomes = [o for _, batch in runs for o in batch]
    ok = [o.value for o in outcomes if o.ok]
    stats = {
        "videos_per_s": round(len(outcomes) / seconds, 2),
        "frames_per_s": round(sum(v["frames"] for v in ok) / seconds, 1),
        "cpu_s_per_video": round(sum(v["cpu_s"] for v in ok) / len(outcomes), 4),
        "success_rate": round(len(ok) / len(outcomes), 3),
        "wall_s_per_repeat": [round(s, 2) for s, _ in runs],
    }
    if ok and "frames_decoded" in ok[0]:
        stats["frames_decoded_per_video"] = round(
            sum(v["frames_decoded"] for v in ok) / len(ok), 1)
    if checked and "offset_s" in checked[0]:
        stats["max_frame_offset_s"] = round(max(v["offset_s"] for v in checked), 4)
        stats["max_display_offset_s"] = round(max(v["display_offset_s"] for v in checked), 4)
    if checked and "drift" in checked[0]:
        stats["drift_mean_abs"] = round(float(np.mean([v["drift"] for v in checked])), 3)
        stats["drift_max_video"] = round(max(v["drift"] for v in checked), 3)
    return stats


def _flag(flags: list[str], name: str, default):
    for flag in flags:
        if flag.startswith(name + "="):
            return flag.split("=", 1)[1]
    return default
