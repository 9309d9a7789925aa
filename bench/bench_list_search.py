"""List-by-list (big-batch) recall search against query-by-query search, on on-disk IVF lists.

An on-disk IVF index of N clustered unit vectors (`--videos=1000000`, `--dim=512`: ViT-B/32's
coarse dims, `IVF4096,SQ8`, lists in `recall.ivfdata`, built once under `--work=/tmp/i22/lists`
and kept) is searched for Q held-out queries (`--queries=2048,16384`, top-100, `--nprobe=16`) by
FAISS's `index.search` and by `list_search.search_by_list`, each in a fresh process under
`/usr/bin/time -v`: seconds, bytes read from the device (/proc/self/io read_bytes), peak RSS,
overlap with the other method's top-100.
Two settings: `cached` (the lists in the page cache) and `bounded` (the process in a memory
cgroup of `--cache-mb=350` MB, page cache included, so the 496 MB of lists cannot stay cached:
a query worker on a host whose RAM is shared with other workers, or a 10M index of 5 GB).
`bounded` needs root and a cgroup v1 memory controller (/sys/fs/cgroup/memory); without them it
is reported as skipped. A method that runs past `--timeout=300` s is reported as such.
`--quick`: 200,000 vectors, 2,048 queries, a 140 MB cgroup for the ~100 MB of lists, timeout
120 s (under `--work=/tmp/i22/lists_quick`).
Usage: python -m bench list_search [--quick] [--videos=N] [--dim=D] [--nlist=L] [--queries=A,B]
[--cache-mb=M] [--settings=cached,bounded]
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import time
from pathlib import Path

import numpy as np

from bench.bench_scale import flag_options, timed

log = logging.getLogger("bench.list_search")

CGROUP_ROOT = Path("/sys/fs/cgroup/memory")

_SEARCH = """import json, sys, time
import numpy as np
from eercf_core.index import list_search, recall
work, method, count, nprobe = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
queries = np.load(work + "/queries.npy")[:count]
index = recall.load(work + "/recall.faiss", nprobe=nprobe)
def read_bytes():
    return int(open("/proc/self/io").read().split("read_bytes:")[1].split()[0])
before, start = read_bytes(), time.perf_counter()
if method == "by_list":
    scores, rows = list_search.search_by_list(index, queries, 100)
else:
    scores, rows = index.search(queries, 100)
seconds = time.perf_counter() - start
np.save(work + f"/rows_{method}_{count}.npy", rows)
print(json.dumps({"search_seconds": round(seconds, 3),
                  "read_mb": round((read_bytes() - before) / 2**20, 1)}))
"""


def build(work: Path, videos: int, dim: int, nlist: int = 4096, seed: int = 0) -> dict:
    """The on-disk index and 16,384 held-out queries under `work` (kept for the next run)."""
    from eercf_core.index import recall

    if (work / "recall.faiss").exists() and (work / "queries.npy").exists():
        return {"reused": True}
    work.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((2048, dim)).astype(np.float32)
    coarse = np.lib.format.open_memmap(work / "coarse.npy", "w+", np.float32, (videos, dim))
    for begin in range(0, videos, 100_000):
        count = min(100_000, videos - begin)
        block = centres[rng.integers(0, len(centres), count)]
        block += 0.7 * rng.standard_normal((count, dim)).astype(np.float32)
        coarse[begin:begin + count] = block / np.linalg.norm(block, axis=1, keepdims=True)
    coarse.flush()
    started = time.perf_counter()
    index = recall.build(coarse, f"IVF{nlist},SQ8", nprobe=16, ondisk_dir=work)
    recall.save(index, work / "recall.faiss")
    np.save(work / "queries.npy", recall.held_out_queries(coarse, 16_384, seed=seed + 1))
    del index, coarse
    os.remove(work / "coarse.npy")
    return {"reused": False, "build_seconds": round(time.perf_counter() - started, 1)}


def _cgroup(limit_mb: int) -> Path | None:
    group = CGROUP_ROOT / "eercf_bench_lists"
    try:
        group.mkdir(exist_ok=True)
        (group / "memory.limit_in_bytes").write_text(str(limit_mb << 20))
    except OSError as exc:
        log.warning("no memory cgroup (%s): the bounded runs are skipped", exc)
        return None
    return group


def _drop_caches() -> None:
    os.sync()
    with contextlib.suppress(OSError):  # not root: the cgroup still bounds the cache
        Path("/proc/sys/vm/drop_caches").write_text("3")


def _warm(path: Path) -> None:
    """Read `path` once, so that the cached runs find it in the page cache."""
    with path.open("rb") as stream:
        while stream.read(1 << 24):
            pass


def run_one(work: Path, method: str, count: int, nprobe: int, group: Path | None,
            timeout: int) -> dict:
    argv = [sys.executable, "-c", _SEARCH, str(work), method, str(count), str(nprobe)]
    if group is not None:
        _drop_caches()
        argv = ["timeout", str(timeout), "bash", "-c",
                f'echo $$ > {group}/tasks && exec "$@"', "bash", *argv]
    try:
        result = timed(argv)
    except RuntimeError as exc:
        if "exited 124" in str(exc):
            return {"method": method, "queries": count, "timed_out_s": timeout}
        if group is not None and "exited 137" in str(exc):  # the cgroup's OOM killer
            return {"method": method, "queries": count, "killed": "out of memory in the cgroup"}
        raise
    return {"method": method, "queries": count, **json.loads(result["stdout"].splitlines()[-1]),
            "process_seconds": result["seconds"], "peak_rss_mb": result["peak_rss_mb"]}


def main(flags: list[str]) -> dict:
    options = flag_options(flags)
    quick = "quick" in options
    work = Path(options.get("work", "/tmp/i22/lists_quick" if quick else "/tmp/i22/lists"))
    videos = int(options.get("videos", 200_000 if quick else 1_000_000))
    dim = int(options.get("dim", 512))
    counts = [int(x) for x in options.get("queries", "2048" if quick else "2048,16384").split(",")]
    nprobe = int(options.get("nprobe", 16))
    timeout = int(options.get("timeout", 120 if quick else 300))
    nlist = int(options.get("nlist", 4096))
    results: dict = {"videos": videos, "dim": dim, "factory": f"IVF{nlist},SQ8", "nprobe": nprobe,
                     "index": build(work, videos, dim, nlist)}
    results["lists_mb"] = round((work / "recall.ivfdata").stat().st_size / 2**20, 1)
    runs = []
    for setting in options.get("settings", "cached,bounded").split(","):
        group = None
        if setting == "cached":
            _warm(work / "recall.ivfdata")
        if setting == "bounded":
            group = _cgroup(int(options.get("cache-mb", 140 if quick else 350)))
            if group is None:
                results["bounded"] = "skipped: no writable memory cgroup"
                break
        for count in counts:
            pair = {}
            for method in ("by_query", "by_list"):
                run = run_one(work, method, count, nprobe, group, timeout)
                run["setting"] = setting
                log.info("%s", run)
                runs.append(run)
                pair[method] = run
            if all("search_seconds" in r for r in pair.values()):
                a = np.load(work / f"rows_by_query_{count}.npy")
                b = np.load(work / f"rows_by_list_{count}.npy")
                pair["by_list"]["top100_overlap"] = round(float(np.mean(
                    [len(set(x) & set(y)) / x.size for x, y in zip(a, b)])), 6)
    results["runs"] = runs
    return results
