"""Scale benchmark: evaluate, build-index and query as the corpus and the query set grow.

Parts (`--parts=evaluate,recall`, default all):
- evaluate: a ranked TSV of Q queries x top-100 (default Q = 1,000,000: 100 M rows, ~3.5 GB) and
  its ground truth are generated under /tmp/i22/scale (`--work=DIR`), then `eercf evaluate` runs
  in a fresh process under `/usr/bin/time -v`: wall seconds, peak RSS, rows/s.
- build: committed feature shards of N synthetic videos (`--build-sizes=10000`; dims
  `--build-dims=T,P,D`, default 12,16,64 = eercf-tiny's, 12,49,512 = ViT-B/32's; 500 videos per
  shard) written with the public schema, then `eercf build-index --workers W` for W in
  `--build-workers=1,2`: wall seconds, ms/video, peak RSS, store and index bytes, recall
  record. `--baseline=DIR`: first the same build by the checkout DIR (an older commit, for
  side-by-side ratios); `--build-codec=SPEC[;SPEC..]`: also a build with `--fine-codec SPEC`;
  `--keep-shards`: keep the generated shards for the next run; `--build-dask=N`: also a build
  whose store fill runs on a `distributed.LocalCluster` of N worker processes (`--runner dask`).
- recall: coarse vectors of N tiny-dim videos (clustered, D = 64; `--recall-sizes=10000,100000,
  300000`) go through `recall.build_tuned` (index type by size, nprobe / efSearch tuned on
  held-out queries to recall@50 >= 0.95) in a fresh process under `/usr/bin/time -v`: build
  seconds per video, peak RSS, index bytes, recall measured, search latency per query.
- query (not in the default parts): `eercf query --top-n 100` peak RSS as the indexed corpus
  grows (`--query-sizes=10000,100000,1000000`, eercf-tiny dims T=12, P=16, D=64, `--query-codec
  SQ8` fine store, `--query-queries=10000`; `--query-model=ViT-B-32`: a random-init model of
  that open_clip config and its dims instead); each build and query one fresh process;
  `--baseline=DIR` also runs the query with that checkout, on the same index; `--keep-shards`
  keeps shards and index (reused by the next run).
Every measurement is one child process; the table reports its wall time and `Maximum resident set
size`. Usage: python -m bench scale [--quick] [--parts=evaluate,build,recall] [--queries=N]
"""
from __future__ import annotations

import functools
import json
import logging
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

log = logging.getLogger("bench.scale")
TOP_N = 100
NUM_VIDEOS = 100_000


def timed(argv: list[str], code: str | None = None) -> dict:
    """Run argv under /usr/bin/time -v with the checkout `code` (default: this one) first on
    PYTHONPATH; {"seconds", "peak_rss_mb", "stdout"}; raises on failure."""
    started = time.perf_counter()
    # cwd too: `python -m` / `-c` put the working directory first on sys.path, before PYTHONPATH
    proc = subprocess.run(["/usr/bin/time", "-v", *argv], capture_output=True, text=True,
                          cwd=code or os.getcwd(),
                          env={**os.environ, "PYTHONPATH": code or os.getcwd()})
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


def clustered_coarse(num_videos: int, dim: int, seed: int = 0, clusters: int = 1000
                     ) -> np.ndarray:
    """float16 [N, D] unit coarse vectors around `clusters` random centres (CLIP-like: videos of
    a topic share a direction), generated in chunks."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, dim)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    out = np.empty((num_videos, dim), np.float16)
    for begin in range(0, num_videos, 100_000):
        count = min(100_000, num_videos - begin)
        x = centres[rng.integers(0, clusters, count)] + 0.6 * rng.standard_normal(
            (count, dim)).astype(np.float32) / np.sqrt(dim)
        out[begin:begin + count] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out


def recall_child(num_videos: int, dim: int, work: Path) -> dict:
    """In the measured child process: build the default recall index over N clustered vectors,
    tune it on 1,000 held-out queries (recall@50 >= 0.95), time search; the record as JSON."""
    import faiss

    from eercf_core.index import recall

    coarse_path = work / f"coarse_{num_videos}_{dim}.npy"
    np.save(coarse_path, clustered_coarse(num_videos, dim))
    coarse = np.load(coarse_path, mmap_mode="r")
    started = time.perf_counter()
    factory = recall.default_factory(num_videos)
    index = recall.build(coarse, factory)
    built = time.perf_counter() - started
    queries = recall.held_out_queries(coarse, 1000, seed=1)
    tuned = recall.tune(index, coarse, queries, 50)
    tuned_seconds = time.perf_counter() - started - built
    path = work / f"recall_{num_videos}.faiss"
    recall.save(index, path)
    faiss.omp_set_num_threads(1)
    search_queries = recall.held_out_queries(coarse, 2000, seed=2)
    begin = time.perf_counter()
    recall.search(index, search_queries, 50)
    per_query = (time.perf_counter() - begin) / len(search_queries)
    size = path.stat().st_size
    path.unlink()
    coarse_path.unlink()
    return {"videos": num_videos, "dim": dim, "factory": factory,
            "build_s": round(built, 2), "build_ms_per_video": round(1e3 * built / num_videos, 4),
            "tune_s": round(tuned_seconds, 2), "index_mb": round(size / 2**20, 1),
            "index_bytes_per_video": round(size / num_videos, 1),
            "parameter": tuned.get("parameter"), "value": tuned["value"],
            "recall_at_50": tuned["recall"], "met": tuned["met"],
            "search_ms_per_query_1thread": round(1e3 * per_query, 3)}


def recall_part(work: Path, sizes: list[int], dim: int) -> dict:
    runs = []
    for size in sizes:
        run = timed([sys.executable, "-m", "bench.bench_scale", "recall", str(size), str(dim),
                     str(work)])
        record = json.loads(run["stdout"].strip().splitlines()[-1])
        record.update(wall_s=run["seconds"], peak_rss_mb=run["peak_rss_mb"])
        log.info("recall %d: %s", size, record)
        runs.append(record)
    return {"runs": runs, "extrapolated": extrapolate(runs)}


def extrapolate(runs: list[dict]) -> dict:
    """Least-squares fit build seconds = a + b·N, index bytes = c·N and peak RSS = d + e·N over
    the measured sizes, evaluated at 1M and 10M (labelled as a fit, not a measurement)."""
    n = np.array([r["videos"] for r in runs], float)
    if n.size < 2:
        return {}
    fits = {"build_s": np.polyfit(n, [r["build_s"] + r["tune_s"] for r in runs], 1),
            "peak_rss_mb": np.polyfit(n, [r["peak_rss_mb"] for r in runs], 1)}
    per_video = float(runs[-1]["index_bytes_per_video"])  # the codes the largest run used
    return {str(size): {"build_and_tune_s": round(float(np.polyval(fits["build_s"], size)), 1),
                        "peak_rss_mb": round(float(np.polyval(fits["peak_rss_mb"], size)), 1),
                        "index_mb_largest_runs_codes": round(per_video * size / 2**20, 1)}
            for size in (1_000_000, 10_000_000)}


def write_feature_shards(root: Path, num_videos: int, dims_tpd: tuple[int, int, int],
                         per_shard: int = 500, seed: int = 0,
                         identity: tuple[str, str] = ("bench-synthetic", "0" * 64)) -> None:
    """Committed shards (extract's format) of `num_videos` random float16 features (clustered
    unit-norm coarse vectors), stamped with `identity` = (model id, checkpoint sha256)."""
    from eercf_core.files.commits import commit_shard
    from schemas import FeatureDims

    t, p, d = dims_tpd
    dims = FeatureDims(num_frames=t, num_patches=p, embed_dim=d)
    rng = np.random.default_rng(seed)
    coarse_all = clustered_coarse(num_videos, d, seed)
    for number, begin in enumerate(range(0, num_videos, per_shard)):
        count = min(per_shard, num_videos - begin)
        rows = [{"video_id": f"v{i:08d}", "uri": f"file:///v{i}.mp4", "status": "ok",
                 "coarse_feature": coarse_all[i],
                 "frame_features": rng.standard_normal(t * d).astype(np.float16),
                 "context_frame_features": rng.standard_normal(t * d).astype(np.float16),
                 "patch_features": rng.standard_normal(t * p * d).astype(np.float16),
                 "frame_mask": np.ones(t, bool)} for i in range(begin, begin + count)]
        commit_shard(str(root / f"part-{number:05d}.parquet"), rows, dims, *identity)


def generated_shards(root: Path, num_videos: int, dims_tpd: tuple[int, int, int],
                     **options: Any) -> Path:
    """`root`, holding `write_feature_shards(root, num_videos, dims_tpd, **options)`: written
    unless a finished earlier run left them (its `done` file)."""
    import shutil

    if not (root / "done").exists():
        shutil.rmtree(root, ignore_errors=True)
        started = time.perf_counter()
        write_feature_shards(root, num_videos, dims_tpd, **options)
        (root / "done").write_text("")
        log.info("wrote %d videos of shards in %.0f s", num_videos, time.perf_counter() - started)
    return root


def build_part(work: Path, sizes: list[int], dims_tpd: tuple[int, int, int],
               workers: list[int], baseline: str | None = None, codec: str | None = None,
               keep_shards: bool = False, dask_address: str | None = None) -> dict:
    """`eercf build-index` over N synthetic videos for each W in `workers`, side by side in one
    run: with `baseline` (another checkout, e.g. a `git worktree` of an older commit) that
    code's build first on the same shards, with W = 1; with `codec` also this code's build
    with `--fine-codec codec` at the largest W."""
    import shutil

    runs = []
    for size in sizes:
        shards = generated_shards(work / f"shards_{size}_{'x'.join(map(str, dims_tpd))}", size,
                                  dims_tpd)
        plan: list[tuple[str, str | None, int, list[str]]] = []
        if baseline:
            plan.append(("baseline", baseline, 1, []))
        plan += [("this", None, count, []) for count in workers]
        for spec in (codec or "").split(";"):
            if spec:
                plan.append(("this", None, max(workers), ["--fine-codec", spec]))
        if dask_address:
            plan.append(("this", None, 0, ["--runner", "dask",
                                           f"--dask_client_address={dask_address}"]))
        for code_name, code, count, extra in plan:
            out = work / f"index_{size}_{count}"
            shutil.rmtree(out, ignore_errors=True)
            argv = [sys.executable, "-m", "pipelines.cli", "build-index", "--shards",
                    str(shards), "--output", str(out), *extra]
            if code_name == "this" and count:
                argv += ["--workers", str(count)]
            run = timed(argv, code)
            manifest = json.loads((out / "manifest.json").read_text())
            store = sum(f.stat().st_size for f in (out / "fine").iterdir())
            record = {"code": code_name, "videos": size, "dims_tpd": list(dims_tpd),
                      "workers": count or "dask",
                      "fine_codec": manifest["fine_store"].get("codec", "fp16"),
                      "seconds": run["seconds"],
                      "ms_per_video": round(1e3 * run["seconds"] / size, 3),
                      "peak_rss_mb": run["peak_rss_mb"], "store_mb": round(store / 2**20, 1),
                      "index_mb": round((out / "recall.faiss").stat().st_size / 2**20, 1),
                      "factory": manifest["index"]["factory"],
                      "recall": manifest["index"].get("recall_vs_exact", {}).get("recall", 1.0),
                      "build_seconds": manifest.get("build_seconds")}
            log.info("build %d videos (%s code, %d workers): %s", size, code_name, count, record)
            runs.append(record)
            shutil.rmtree(out, ignore_errors=True)
        if not keep_shards:
            shutil.rmtree(shards, ignore_errors=True)
    return {"runs": runs}


# `eercf ARGS`, then its resident set at exit split into anonymous memory and file pages (shared
# libraries and mapped index files, shared by every worker on a host), as one JSON line.
_STATUS_AT_EXIT = """import json, sys
from pipelines.cli import main
code = main(sys.argv[1:])
status = dict(line.split(":", 1) for line in open("/proc/self/status"))
print(json.dumps({key: int(status[key].split()[0]) // 1024 for key in ("VmRSS", "RssAnon",
                                                                       "RssFile")}))
sys.exit(code)
"""


def query_part(work: Path, sizes: list[int], num_queries: int, codec: str, workers: int,
               keep: bool = False, baseline: str | None = None,
               model_name: str = "eercf-tiny") -> dict:
    """`eercf query` peak RSS against the corpus size. For each N: committed shards of N random
    videos at eercf-tiny's dims stamped with a seeded eercf-tiny checkpoint's identity, `eercf
    build-index --fine-codec codec` (default factory by size, nprobe tuned), then `eercf query
    --top-n 100` of `num_queries` queries with that checkpoint in a fresh process (first by the
    `baseline` checkout when given, on the same index): wall seconds, peak RSS, index and store
    bytes, the manifest's recall record. `keep`: shards and index stay for the next run."""
    import shutil

    import eercf_core as ec
    from bench.bench_query_memory import _queries

    model = ec.create_model(model_name, seed=0)  # random init: its memory, not its quality
    tag = "" if model_name == "eercf-tiny" else f"_{model_name}"
    checkpoint = work / "query_model.pt"
    ec.save_model(model, str(checkpoint))
    identity = (model.identity.model_id, model.identity.checkpoint_sha256)
    dims = (model.dims.num_frames, model.dims.num_patches, model.dims.embed_dim)
    queries = _queries(work / f"queries_{num_queries}.tsv", num_queries)
    runs = []
    for size in sizes:
        shards = generated_shards(work / f"query_shards_{size}{tag}", size, dims,
                                  per_shard=5000, identity=identity)
        index = work / f"query_index_{size}_{codec}{tag}"
        ranked = work / f"query_ranked_{size}.tsv"
        build: dict = {"seconds": None, "peak_rss_mb": None, "reused": True}
        if not (index / "manifest.json").exists():
            shutil.rmtree(index, ignore_errors=True)
            build = timed([sys.executable, "-m", "pipelines.cli", "build-index", "--shards",
                           str(shards), "--output", str(index), "--fine-codec", codec,
                           "--workers", str(workers)])
        manifest = json.loads((index / "manifest.json").read_text())
        recall_record = manifest["index"].get("recall_vs_exact", {})
        for code_name, code in ([("baseline", baseline)] if baseline else []) + [("this", None)]:
            run = timed([sys.executable, "-c", _STATUS_AT_EXIT, "query", "--index", str(index),
                         "--model", str(checkpoint), "--queries", str(queries), "--output",
                         str(ranked), "--top-n", str(TOP_N)], code)
            at_exit = json.loads(run["stdout"].strip().splitlines()[-1])
            record = {
                "code": code_name, "model": model_name, "videos": size, "dims_tpd": list(dims),
                "fine_codec": codec,
                "build_seconds": build["seconds"], "build_peak_rss_mb": build["peak_rss_mb"],
                "store_mb": round(sum(f.stat().st_size for f in (index / "fine").iterdir())
                                  / 2**20, 1),
                "index_mb": round((index / "recall.faiss").stat().st_size / 2**20, 1),
                "factory": manifest["index"]["factory"], "nprobe": recall_record.get("value"),
                "recall_at_50_held_out": recall_record.get("recall", 1.0),
                "queries": num_queries, "query_seconds": run["seconds"],
                "queries_per_s": round(num_queries / run["seconds"], 1),
                "query_peak_rss_mb": run["peak_rss_mb"],
                "query_rss_at_exit_mb": at_exit,
                "ranked_mb": round(ranked.stat().st_size / 2**20, 1)}
            log.info("query over %d videos: %s", size, record)
            runs.append(record)
            ranked.unlink()
        if not keep:
            shutil.rmtree(index, ignore_errors=True)
            shutil.rmtree(shards, ignore_errors=True)
    return {"runs": runs}


def flag_options(flags: list[str]) -> dict[str, str]:
    """`--name=value` flags as {name: value}; a bare `--name` is "1"."""
    options: dict[str, str] = {}
    for flag in flags:
        name, _, value = flag.lstrip("-").partition("=")
        options[name] = value or "1"
    return options


def main(flags: list[str]) -> dict:
    options = flag_options(flags)
    quick = "quick" in options
    parts = options.get("parts", "evaluate,build,recall").split(",")
    work = Path(options.get("work", "/tmp/i22/scale"))
    work.mkdir(parents=True, exist_ok=True)
    results: dict = {"machine": f"{os.cpu_count()} cores, shared with other jobs",
                     "load_average_start": [round(x, 2) for x in os.getloadavg()]}
    if "evaluate" in parts:
        num_queries = int(options.get("queries", 20_000 if quick else 1_000_000))
        results["evaluate"] = evaluate_part(work, num_queries)
        log.info("evaluate: %s", results["evaluate"])
    if "build" in parts:
        t, p, d = (int(x) for x in options.get("build-dims", "12,16,64").split(","))
        build_sizes = options.get("build-sizes", "2000" if quick else "10000")
        build = functools.partial(
            build_part, work, [int(x) for x in build_sizes.split(",")], (t, p, d),
            [int(x) for x in options.get("build-workers", "1,2").split(",")],
            baseline=options.get("baseline"), codec=options.get("build-codec"),
            keep_shards="keep-shards" in options)
        if "build-dask" in options:  # also a fill by a LocalCluster of that many processes
            import distributed

            with distributed.LocalCluster(n_workers=int(options["build-dask"]),
                                          threads_per_worker=1, dashboard_address=None) as cluster:
                results["build"] = build(dask_address=cluster.scheduler_address)
        else:
            results["build"] = build()
    if "query" in parts:
        results["query"] = query_part(
            work, [int(x) for x in options.get("query-sizes", "10000,100000,1000000").split(",")],
            int(options.get("query-queries", 10_000)), options.get("query-codec", "SQ8"),
            int(options.get("query-build-workers", os.cpu_count() or 1)),
            keep="keep-shards" in options, baseline=options.get("baseline"),
            model_name=options.get("query-model", "eercf-tiny"))
    if "recall" in parts:
        sizes = [int(x) for x in options.get(
            "recall-sizes", "10000,30000" if quick else "10000,100000,300000").split(",")]
        results["recall"] = recall_part(work, sizes, int(options.get("dim", 64)))
    results["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    return results


if __name__ == "__main__":  # the measured child of recall_part
    if sys.argv[1] == "recall":
        print(json.dumps(recall_child(int(sys.argv[2]), int(sys.argv[3]), Path(sys.argv[4]))))
