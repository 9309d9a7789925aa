"""Decode throughput and fidelity: decord accurate seek vs eercf's `exact` and `fast` qualities.

Every variant runs over the 42 shared real files (../shared/videos/robustness + captioned) in
worker processes (eercf_core.video.isolation, 2 by default = all cores), in one run; repeats are
interleaved (baseline, exact, fast, baseline, ...) so that load from other processes hits all
of them alike. Per variant:

- videos_per_s / frames_per_s: wall clock over the corpus (what a user sees);
- cpu_s_per_video: CPU seconds (all threads) spent inside the workers per video; the fair
  "same cores" comparison when the machine is busy. Both speedups are against the baseline;
- cpu_s_per_video_common_files / speedup_cpu_common_files: the same over the files that every
  variant decodes (a file the baseline rejects at once otherwise counts for it as a fast video);
- success_rate over the corpus;
- max_frame_offset_s: largest |presentation time of a sampled frame - its 1 fps target|;
  max_display_offset_s: largest distance from a target to the time span during which the
  chosen frame is on screen [pts, next pts) (0 when it is the frame showing at the target);
- drift_mean_abs / drift_max_video (variants that may change pixels): mean |uint8 difference|
  of the kept frames against the exact decode at equal times.
Offsets and drift come from a separate, untimed pass.

Fidelity (`fidelity`): the untimed pass's exact and fast frames of every file go through a
seeded random ViT-B-32 (eercf head, seed 0, CPU); per-video cosine of the coarse vector and of
the frame features (worst frame), min / 1st percentile / mean, and the issue's gate (both >=
0.999 at p1), and how many video-to-video top-10 lists (coarse vectors, exact queries) change
when the gallery is the fast decode. `fidelity_demo` (with --demo-dir=DIR, the --out of a
finished `eercf demo`): the trained demo model on the demo's test corpus, extracted exact and
fast with the real jobs: R@1/5/10 of coarse recall and two-stage ranking per quality, and how
many two-stage top-10 lists changed (bench/decode_fidelity.py).

Under --levers, `exact_floor` (bench/decode_floor.py): the codec work any bit-exact decode of
eercf's frames needs, against what `exact` and decord decode: the ceiling on `exact`'s speed-up.

    python -m bench decode [--quick] [--repeats=N] [--workers=N] [--levers] [--no-fidelity]
                           [--torch-threads=N] [--demo-dir=DIR] [--demo-model=PATH]
                           [--videos=DIR]   # default ../shared/videos
    python -m bench decode --demo-only --demo-dir=DIR   # add the demo fidelity to the last run
"""
from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench import decode_fidelity, decode_floor
from eercf_core.video.decode import (
    QUALITY_EXACT,
    QUALITY_FAST,
    DecodedVideo,
    DecodeOptions,
    decode_video,
    sample_times,
)
from eercf_core.video.decord_decoder import import_decord
from eercf_core.video.isolation import IsolatedPool, Outcome

log = logging.getLogger(__name__)
SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "videos"
BASELINE, EXACT, FAST = "decord_accurate_seek", QUALITY_EXACT, QUALITY_FAST


@dataclasses.dataclass(frozen=True)
class Variant:
    """One measured configuration: decode options (None = the decord baseline), processes."""

    options: DecodeOptions | None
    workers: int
    check_drift: bool = False
    keep_frames: bool = False  # the untimed pass returns the frames (feature fidelity)


def decord_baseline(uri: str) -> int:
    """Peers' path: VideoReader (accurate seek) + get_batch of 12 uniform frames, full size."""
    decord = import_decord()

    reader = decord.VideoReader(uri, ctx=decord.cpu(0), num_threads=1)
    frames = reader.get_batch(decode_floor.decord_indices(len(reader))).asnumpy()
    return int(frames.shape[0])


def _frame_offsets(uri: str, video: DecodedVideo) -> tuple[float, float]:
    """(max |frame time - target|, max distance of a target from its frame's display span)."""
    import av

    from eercf_core.video.pyav_decoder import index_packets

    targets = sample_times(video.duration or 0.0)
    times = np.asarray(video.frame_times)
    with av.open(uri) as container:
        stream = container.streams.video[0]
        index = index_packets(container, stream, uri)
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
    result: dict[str, Any] = {"cpu_s": time.process_time() - started,
                              "frames": int(video.mask.sum()),
              "frames_decoded": video.frames_decoded}
    if not check:
        result["pixels"] = video.frames
        return result
    if variant.options.backend == "pyav":
        result["offset_s"], result["display_offset_s"] = _frame_offsets(uri, video)
    if variant.check_drift:
        exact = decode_video(uri, dataclasses.replace(
            variant.options, quality=QUALITY_EXACT, codec_options=(), threads=1))
        same = [i for i, (a, b) in enumerate(zip(video.frame_times, exact.frame_times))
                if abs(a - b) < 1e-6]
        result["drift"] = float(np.abs(video.frames[same].astype(np.int16)
                                       - exact.frames[same]).mean()) if same else 0.0
    if variant.keep_frames:
        result.update(pixels=video.frames, mask=video.mask, times=list(video.frame_times))
    return result


def _strip(outcome: Outcome) -> Outcome:
    if outcome.ok:
        for key in ("pixels", "mask", "times"):  # keep the memory of many repeats small
            outcome.value.pop(key, None)
    return outcome


def variants(levers: bool, workers: int) -> dict[str, Variant]:
    """The measured configurations: the decord baseline first, then `exact` and `fast`
    (--levers adds the individual levers measured while building them)."""
    chosen = {
        BASELINE: Variant(None, workers),
        EXACT: Variant(DecodeOptions(quality=QUALITY_EXACT), workers, keep_frames=True),
        FAST: Variant(DecodeOptions(quality=QUALITY_FAST), workers, True, keep_frames=True),
    }
    if levers:
        def exact(**changes: Any) -> DecodeOptions:
            return DecodeOptions(quality=EXACT, **changes)

        chosen.update({
            "exact_frames(max_offset=0)": Variant(exact(max_offset=0.0), workers),
            "exact_no_nonref_skipping": Variant(exact(skip_window=-1), workers),
            f"exact_{workers}_procs_x_2_threads": Variant(exact(threads=2), workers),
            "exact+skip_loop_filter(bicubic)": Variant(
                exact(codec_options=(("skip_loop_filter", "all"),)), workers, True),
            "decord_path_resized": Variant(DecodeOptions(backend="decord"), workers),
        })
    return chosen


def _files(quick: bool, videos: Path = SHARED) -> list[str]:
    files = sorted(str(p) for d in ("robustness", "captioned") for p in (videos / d).iterdir()
                   if p.suffix.lower() not in (".tsv", ".jsonl"))
    return files[::3] if quick else files


def main(flags: list[str]) -> dict:
    if "--demo-only" in flags:
        return demo_only(flags)
    quick = "--quick" in flags
    repeats = int(_flag(flags, "--repeats", 1 if quick else 3))
    workers = int(_flag(flags, "--workers", os.cpu_count() or 1))
    files = _files(quick, Path(_flag(flags, "--videos", SHARED)))
    chosen = variants("--levers" in flags, workers)
    log.info("%d files, %d variants, %d workers, %d interleaved repeats, load average %s",
             len(files), len(chosen), workers, repeats, os.getloadavg())
    runs: dict[str, list] = defaultdict(list)  # variant -> [(seconds, outcomes)]
    pools = {n: IsolatedPool(bench_job, workers=n, timeout=120)
             for n in sorted({v.workers for v in chosen.values()})}
    try:
        for n, pool in pools.items():  # start-up and imports are not measured
            list(pool.imap_unordered([(f, chosen[EXACT], False) for f in files[:n]]))
        for repeat in range(repeats):
            for name, variant in chosen.items():
                started = time.perf_counter()
                outcomes = [_strip(o) for o in pools[variant.workers].imap_unordered(
                    [(f, variant, False) for f in files])]
                runs[name].append((time.perf_counter() - started, outcomes))
            log.info("repeat %d/%d done, load average %s", repeat + 1, repeats, os.getloadavg())
        checks = {name: {o.index: o.value for o in pools[workers].imap_unordered(
                      [(f, variant, True) for f in files]) if o.ok}
                  for name, variant in chosen.items() if variant.options is not None}
    finally:
        for pool in pools.values():
            pool.close()
    results: dict = {"files": len(files), "workers": workers, "repeats": repeats,
                     "load_average_end": [round(x, 2) for x in os.getloadavg()]}
    # files every variant decoded in every repeat: a file the baseline fails on at once would
    # otherwise count for it as a fast video
    common = set.intersection(*({o.index for _, batch in runs[name] for o in batch if o.ok}
                                for name in chosen))
    results["files_all_decoded"] = len(common)
    base = None
    for name in chosen:
        checked = list(checks.get(name, {}).values())
        stats = _summarize(runs[name], checked, common)
        if base is None:
            base = stats
        else:
            stats["speedup_wall"] = round(stats["videos_per_s"] / base["videos_per_s"], 2)
            stats["speedup_cpu"] = round(base["cpu_s_per_video"] / stats["cpu_s_per_video"], 2)
            stats["speedup_cpu_common_files"] = round(
                base["cpu_s_per_video_common_files"] / stats["cpu_s_per_video_common_files"], 2)
        results[name] = stats
        log.info("%s: %s", name, stats)
    if "--levers" in flags:
        results["exact_floor"] = decode_floor.exact_floor(files)
        log.info("exact decode floor: %s", results["exact_floor"])
    if "--no-fidelity" not in flags:
        threads = _flag(flags, "--torch-threads", None)
        results["fidelity"] = random_vit_fidelity(files, checks[EXACT], checks[FAST],
                                                  int(threads) if threads else None)
        log.info("fidelity (seeded random ViT-B-32): %s", results["fidelity"])
    demo = demo_fidelity(flags, workers)
    if demo:
        results["fidelity_demo"] = demo
    return results


def demo_fidelity(flags: list[str], workers: int) -> dict | None:
    """The trained-demo ranking fidelity when --demo-dir is given (None otherwise)."""
    demo_dir = _flag(flags, "--demo-dir", None)
    if not demo_dir:
        log.info("no --demo-dir: the trained-demo fidelity (rankings) is not measured")
        return None
    demo = Path(demo_dir)
    model = Path(_flag(flags, "--demo-model", demo / "train" / "model.pt"))
    result = decode_fidelity.demo_rankings(
        model, demo / "corpus", Path("bench_out") / "decode_fidelity", (EXACT, FAST), workers)
    log.info("fidelity (demo model): %s", result)
    return result


def demo_only(flags: list[str]) -> dict:
    """--demo-only: measure the trained-demo fidelity alone and add it to the last decode
    results in bench_out/results.json (the throughput runs are not repeated)."""
    import json

    if not _flag(flags, "--demo-dir", None):
        raise SystemExit("bench decode --demo-only needs --demo-dir=DIR")
    demo = demo_fidelity(flags, int(_flag(flags, "--workers", os.cpu_count() or 1)))
    path = Path("bench_out") / "results.json"  # read now: a decode run may have ended meanwhile
    previous = json.loads(path.read_text()).get("bench_decode", {}) if path.exists() else {}
    if not previous:
        log.warning("no earlier decode results in %s: only the demo fidelity is recorded", path)
    return {**previous, "fidelity_demo": demo}


def random_vit_fidelity(files: list[str], exact: dict[int, dict], fast: dict[int, dict],
                        threads: int | None = None) -> dict:
    """Per-video cosine of seeded random ViT-B-32 features (coarse, worst frame) of the fast
    frames against the exact frames, over the files both decoded, at the same frame times."""
    from eercf_core.model.spec import ModelSpec, load_model_spec

    both = sorted(set(exact) & set(fast))
    moved = [files[i] for i in both if exact[i]["times"] != fast[i]["times"]]
    if moved:
        raise RuntimeError(f"fast sampled other frame times than exact for {moved}")
    model = load_model_spec(ModelSpec("ViT-B-32", random_init=True, seed=0, device="cpu"))
    if threads:
        torch.set_num_threads(threads)  # one thread is faster on an oversubscribed machine
    started = time.perf_counter()
    with torch.no_grad():
        encoded = [model.encode_video(np.stack([d[i]["pixels"] for i in both]),
                                      np.stack([d[i]["mask"] for i in both]), batch_size=4)
                   for d in (exact, fast)]
    cosines = decode_fidelity.feature_cosines(*encoded)
    stats = {kind: decode_fidelity.cosine_stats(values) for kind, values in cosines.items()}
    worst = int(np.argmin(cosines["frame"]))
    return {**stats, "gate_p1_0.999": decode_fidelity.gate(stats),
            "video_to_video": decode_fidelity.neighbour_lists_changed(encoded[0], encoded[1]),
            "worst_frame_video": Path(files[both[worst]]).name,
            "model": "ViT-B-32, random weights (seed 0), eercf head", "videos": len(both),
            "encode_seconds": round(time.perf_counter() - started, 1)}


def _summarize(runs: list, checked: list[dict], common: set[int]) -> dict:
    seconds = sum(s for s, _ in runs)
    outcomes = [o for _, batch in runs for o in batch]
    ok = [o.value for o in outcomes if o.ok]
    in_common = [o.value["cpu_s"] for o in outcomes if o.ok and o.index in common]
    stats = {
        "videos_per_s": round(len(outcomes) / seconds, 2),
        "frames_per_s": round(sum(v["frames"] for v in ok) / seconds, 1),
        "cpu_s_per_video": round(sum(v["cpu_s"] for v in ok) / len(outcomes), 4),
        "cpu_s_per_video_common_files": round(sum(in_common) / max(1, len(in_common)), 4),
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


def _flag(flags: list[str], name: str, default: Any) -> Any:
    """The value of `--name=VALUE` in `flags`, else `default`."""
    for flag in flags:
        if flag.startswith(name + "="):
            return flag.split("=", 1)[1]
    return default
