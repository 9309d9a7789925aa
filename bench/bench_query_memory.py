"""Query memory against the number of queries: `eercf query` streams its ranked rows.

A tiny model (eercf-tiny, seeded random weights, saved as a checkpoint) encodes 1,000 random
videos into shards; build-index makes the index; then `eercf query --top-n 100` runs, each in a
fresh process, on 5,000 and on 50,000 synthetic queries (5 M output rows). Reports each run's
peak RSS (the child's ru_maxrss), output size and queries/s, and the 50k/5k peak-RSS ratio: with
rows streamed to the output it stays ~1 while the output grows 10x.
Usage: python -m bench query_memory [--quick]   (--quick: 1,000 vs 10,000 queries)
"""
from __future__ import annotations

import itertools
import logging
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

log = logging.getLogger("bench.query_memory")
OUT = Path("bench_out") / "query_memory"
NUM_VIDEOS = 1000
TOP_N = 100
WORDS = ["red", "blue", "green", "dog", "cat", "car", "runs", "jumps", "sleeps", "beach",
         "kitchen", "street", "night", "snow", "a", "the", "two", "people", "dancing", "ball"]


def _index(root: Path) -> tuple[Path, Path]:
    """(checkpoint, index directory) of NUM_VIDEOS random videos encoded by eercf-tiny."""
    import eercf_core as ec
    from eercf_core.files.shards import write_shard

    checkpoint, index = root / "model.pt", root / "index"
    shutil.rmtree(root / "shards", ignore_errors=True)
    shutil.rmtree(index, ignore_errors=True)
    model = ec.create_model("eercf-tiny", seed=0)
    ec.save_model(model, str(checkpoint))
    rng = np.random.default_rng(0)
    identity = model.identity
    for shard, begin in enumerate(range(0, NUM_VIDEOS, 250)):
        frames = rng.integers(0, 255, (250, model.num_frames, model.image_size, model.image_size,
                                       3), dtype=np.uint8)
        mask = np.ones((250, model.num_frames), dtype=bool)
        video = model.encode_video(frames, mask)
        rows = [{"video_id": f"v{begin + i:05d}", "uri": f"mem://{begin + i}", "status": "ok",
                 "coarse_feature": video.coarse[i].numpy(),
                 "frame_features": video.frame[i].numpy().ravel(),
                 "context_frame_features": video.context[i].numpy().ravel(),
                 "patch_features": video.patch[i].numpy().ravel(), "frame_mask": mask[i]}
                for i in range(250)]
        write_shard(str(root / "shards" / f"part-{shard:03d}.parquet"), rows, model.dims,
                    identity.model_id, identity.checkpoint_sha256)
    _eercf(["build-index", "--shards", str(root / "shards"), "--output", str(index)])
    return checkpoint, index


def _queries(path: Path, count: int) -> Path:
    if not path.exists():
        combos = itertools.product(WORDS, repeat=4)
        with path.open("w") as handle:
            handle.write("query_id\ttext\n")
            for i, words in zip(range(count), combos):
                handle.write(f"q{i:06d}\t{' '.join(words)}\n")
    return path


def _eercf(args: list[str]) -> tuple[float, int]:
    """Run `eercf ARGS` in a fresh process; (seconds, peak RSS bytes of that process)."""
    started = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-m", "pipelines.cli", *args],
                               stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise RuntimeError(f"eercf {' '.join(args)} exited {process.returncode}")
    return time.perf_counter() - started, usage.ru_maxrss * 1024


def main(flags: list[str]) -> dict:
    quick = "--quick" in flags
    counts = (1_000, 10_000) if quick else (5_000, 50_000)
    OUT.mkdir(parents=True, exist_ok=True)
    checkpoint, index = _index(OUT)
    results: dict = {"videos": NUM_VIDEOS, "top_n": TOP_N, "runs": {}}
    for count in counts:
        queries = _queries(OUT / f"queries_{count}.tsv", count)
        ranked = OUT / f"ranked_{count}.tsv"
        seconds, peak = _eercf(["query", "--index", str(index), "--model", str(checkpoint),
                                "--queries", str(queries), "--output", str(ranked),
                                "--top-n", str(TOP_N)])
        results["runs"][str(count)] = {
            "queries": count, "rows": count * TOP_N,
            "output_mb": round(ranked.stat().st_size / 2**20, 1),
            "peak_rss_mb": round(peak / 2**20, 1), "seconds": round(seconds, 1),
            "queries_per_s": round(count / seconds, 1)}
        log.info("%d queries: %s", count, results["runs"][str(count)])
    small, large = (results["runs"][str(c)] for c in counts)
    results["peak_rss_ratio_large_over_small"] = round(
        large["peak_rss_mb"] / small["peak_rss_mb"], 3)
    results["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    return results
