"""Scale benchmark: evaluate, build-index and query as the corpus and the query set grow.

Parts (`--parts=evaluate,recall`, default all):
- evaluate: a ranked TSV of Q queries x top-100 (default Q = 1,000,000: 100 M rows, ~3.5 GB) and
  its ground truth are generated under /tmp/i22/scale (`--work=DIR`), then `eercf evaluate` runs
  in a fresh process under `/usr/bin/time -v`: wall seconds, peak RSS, rows/s.
- recall: coarse vectors of N tiny-dim videos (clustered, D = 64; `--recall-sizes=10000,100000,
  300000`) go through `recall.build_tuned` (index type by size, nprobe / efSearch tuned on
  held-out queries to recall@50 >= 0.95) in a fresh process under `/usr/bin/time -v`: build
  seconds per video, peak RSS, index bytes, recall measured, search latency per query.
Every measurement is one child process; the table reports its wall time and `Maximum resident set
size`. Usage: python -m bench scale [--quick] [--parts=evaluate,recall] [--queries=N]
"""
from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

log = logging.getLogger("bench.scale")
TOP_N = 100
NUM_VIDEOS = 100_000


def timed(argv: list[str]) -> dict:
    """Run argv under /usr/bin/time -v; {"seconds", "peak_rss_mb", "stdout"}; raises on failure."""
    started = time.perf_counter()
    proc = subprocess.run(["/usr/bin/time", "-v", *argv], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": os.getcwd()})
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {proc.returncode}: {proc.stderr[-3000:]}")
    peak = re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr)
    if peak is None:
        raise RuntimeError(f"no peak RSS in /usr/bin/time output: {proc.stderr[-500:]}")
    return {"seconds": round(seconds, 2), "peak_rss_mb": round(int(peak.group(1)) / 1024, 1),
            "stdout": proc.stdout}


def write_ranked(path: Path, truth_path: Path, num_queries: int, top_n: int = TOP_N,
                 chunk: int = 20_000, seed: int = 0) -> int:
    """A ranked TSV (grouped by query, ranks 1..top_n) and its ground truth; returns the bytes.

    Each query's ground-truth video sits at a random rank, or is absent (censored) 10% of the
    time; scores decrease with rank, coarse scores are the score plus noise."""
    rng = np.random.default_rng(seed)
    write = pacsv.WriteOptions(include_header=False, delimiter="\t", quoting_style="none")
    with path.open("wb") as ranked, truth_path.open("wb") as truth:
        ranked.write(b"query_id\trank\tvideo_id\tscore\tcoarse_score\n")
        truth.write(b"query_id\tvideo_id\n")
        for begin in range(0, num_queries, chunk):
            count = min(chunk, num_queries - begin)
            qids = np.char.add("q", np.arange(begin, begin + count).astype("U8"))
            videos = rng.integers(0, NUM_VIDEOS, (count, top_n))
            score = np.sort(rng.random((count, top_n)), axis=1)[:, ::-1]
            coarse = score + 0.1 * rng.standard_normal((count, top_n))
            target = rng.integers(0, NUM_VIDEOS, count)
            place = rng.integers(0, top_n, count)
            listed = rng.random(count) < 0.9
            videos[np.flatnonzero(listed), place[listed]] = target[listed]
            table = pa.table({
                "query_id": np.repeat(qids, top_n),
                "rank": np.tile(np.arange(1, top_n + 1), count),
                "video_id": np.char.add("v", videos.ravel().astype("U6")),
                "score": np.round(score.ravel(), 6), "coarse_score": np.round(coarse.ravel(), 6)})
            pacsv.write_csv(table, ranked, write)
            pacsv.write_csv(pa.table({"query_id": qids,
                                      "video_id": np.char.add("v", target.astype("U6"))}),
                            truth, write)
    return path.stat().st_size


def evaluate_part(work: Path, num_queries: int) -> dict:
    ranked, truth = work / f"ranked_{num_queries}.tsv", work / f"truth_{num_queries}.tsv"
    started = time.perf_counter()
    size = write_ranked(ranked, truth, num_queries)
    generated = time.perf_counter() - started
    log.info("generated %s (%.0f MB) in %.0f s", ranked, size / 2**20, generated)
    run = timed([sys.executable, "-m", "pipelines.cli", "evaluate", "--ranked", str(ranked),
                 "--ground-truth", str(truth), "--output", str(work / "eval"), "--no-plots"])
    metrics = json.loads((work / "eval" / "metrics.json").read_text())
    rows = num_queries * TOP_N
    result = {"queries": num_queries, "rows": rows, "ranked_mb": round(size / 2**20, 1),
              "seconds": run["seconds"], "peak_rss_mb": run["peak_rss_mb"],
              "rows_per_s": round(rows / run["seconds"]),
              "reranked_R@1": metrics["reranked"]["R@1"],
              "censored": metrics["reranked"]["censored"]}
    ranked.unlink()
    truth.unlink()
    return result


def main(flags: list[str]) -> dict:
    options = dict(f.lstrip("-").split("=", 1) if "=" in f else (f.lstrip("-"), "1")
                   for f in flags)
    quick = "quick" in options
    parts = options.get("parts", "evaluate").split(",")
    work = Path(options.get("work", "/tmp/i22/scale"))
    work.mkdir(parents=True, exist_ok=True)
    results: dict = {"machine": f"{os.cpu_count()} cores, shared with other jobs",
                     "load_average_start": [round(x, 2) for x in os.getloadavg()]}
    if "evaluate" in parts:
        num_queries = int(options.get("queries", 20_000 if quick else 1_000_000))
        results["evaluate"] = evaluate_part(work, num_queries)
        log.info("evaluate: %s", results["evaluate"])
    results["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    return results
