"""A rerun of `eercf extract` over finished videos, and a full read of a feature shard (v2 vs v3).

1. **rerun, ViT-B/32 size**: N videos (default 10,000; 20 shards of 500) of ViT-B/32-size features
   (D=512, T=12, P=49: 628 KB/video) written with the public writer
   (eercf_core.files.commits.commit_shard, schema v3 + commit record) under the identity of
   `--model ViT-B-32 --random-init --seed 0`, plus a manifest of the N ids. Then `eercf extract`
   on that manifest and output, in fresh processes: the first run learns the model's identity
   (loads it once) and finds nothing to do; the second (and third) are the reruns measured.
2. **rerun at 100,000 videos** (eercf-tiny dims: a commit record's cost does not depend on the
   feature size) in 200 shards of 500, and **10,000 videos at 100 / 500 / 2,000 per shard**
   (the cost must be flat in videos per shard).
3. **adoption**: the first rerun over a v2 output (no records: every page read once), then the
   next reruns (records only), at 10,000 ViT-B/32-size videos (20 shards of 500).
4. **feature read**: one ViT-B/32-size shard of 200 videos, schema v2 (fixed-size lists, zstd)
   vs v3 (fixed-size binary, plain), every feature column read to numpy
   (eercf_core.files.shards.read_shard + feature_arrays), best of 3, same process.
5. **launcher at 10,000 and 1,000,000 manifest lines** (`eercf extract --dry-run` into an empty
   output whose model identity is known): the manifest checked and streamed, the plan written,
   the whole extract graph built; its serialized size (what Dataflow receives) and the
   launcher's peak RSS. (A real run also loads the model in the launcher.)
Each extract run reports wall seconds and peak RSS from `/usr/bin/time -v`.
6. **launcher with 1,000,000 done ids** (`launcher_done`): 1M committed videos (eercf-tiny at
   T=1: 2.4 KB per row, the records cost the same at any feature size), then a dry-run launch of
   those 1M + 256 new lines and the no-op rerun of the 1M (see `_launcher_done`).
Usage: python -m bench rerun [--quick]
         [--only=read,vit,tiny100k,shard_sizes,adopt,launcher,launcher_done]
  (--quick: 2,000 ViT-B/32-size videos, 20,000 tiny, 100,000-line launcher manifest, 100,000
  done ids)
Data goes under $EERCF_BENCH_DIR (default /tmp/eercf-bench-rerun) and is deleted at the end.
"""
from __future__ import annotations

import functools
import logging
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from schemas import FeatureDims

Identity = tuple["FeatureDims", str, str]  # (dims, model_id, checkpoint_sha256)
log = logging.getLogger("bench.rerun")
ROOT = Path(__file__).resolve().parents[1]
VIT_B32 = ("ViT-B-32", 12, 49, 512)
TINY = "eercf-tiny"


def _work_dir() -> Path:
    return Path(os.environ.get("EERCF_BENCH_DIR", "/tmp/eercf-bench-rerun"))


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT)}


def _identity(model: str, num_frames: int = 12) -> Identity:
    """(dims, model_id, checkpoint_sha256) of `--model <model> --random-init --seed 0`
    (`--num-frames`), learned in a child process (ViT-B/32 weights: ~2 GB that this process
    should not keep)."""
    code = ("import json; from eercf_core.model.spec import ModelSpec, load_model_spec; "
            f"m = load_model_spec(ModelSpec({model!r}, random_init=True, seed=0, device='cpu', "
            f"num_frames={num_frames})); "
            "print(json.dumps([m.dims.to_dict(), m.identity.model_id, "
            "m.identity.checkpoint_sha256]))")
    out = subprocess.run([sys.executable, "-c", code], env=_env(), check=True,
                         capture_output=True, text=True).stdout.strip().splitlines()[-1]
    import json

    from schemas import FeatureDims

    dims, model_id, sha = json.loads(out)
    return FeatureDims.from_dict(dims), model_id, sha


def _write_output(root: Path, n: int, per_shard: int, identity: Identity,
                  version: int | None = None
                  ) -> Path:
    """N committed shards (or, with `version`, shards of that older schema without records)
    of random features, and a manifest of their ids; returns the manifest."""
    from eercf_core.files.commits import commit_shard
    from eercf_core.files.inputs import write_manifest
    from eercf_core.files.shards import write_shard

    dims, model_id, sha = identity
    sizes = dims.column_sizes()
    rng = np.random.default_rng(0)
    # one block of random rows reused by every shard: the bytes' content does not matter here
    block = {c: rng.standard_normal((per_shard, size), dtype=np.float32).astype(np.float16)
             for c, size in sizes.items() if c != "frame_mask"}
    shutil.rmtree(root, ignore_errors=True)
    (root / "out").mkdir(parents=True)
    ids = [f"video-{i:07d}" for i in range(n)]
    for number, begin in enumerate(range(0, n, per_shard)):
        rows = [{"video_id": vid, "uri": f"/corpus/{vid}.mp4", "status": "ok",
                 "decode_quality": "fast", "frame_mask": np.ones(dims.num_frames, dtype=bool),
                 **{c: block[c][i] for c in block}}
                for i, vid in enumerate(ids[begin:begin + per_shard])]
        path = str(root / "out" / f"part-{number:06d}.parquet")
        if version is None:
            commit_shard(path, rows, dims, model_id, sha)
        else:
            write_shard(path, rows, dims, model_id, sha, version=version)
    manifest = root / "manifest.tsv"
    write_manifest(str(manifest), ((vid, f"/corpus/{vid}.mp4") for vid in ids))
    return manifest


def _extract(root: Path, manifest: Path, model: str, *extra: str) -> dict[str, float]:
    """One `eercf extract` run in a fresh process: wall s, peak RSS MB, and what it logged."""
    cmd = ["/usr/bin/time", "-v", sys.executable, "-m", "pipelines.cli", "extract",
           "--input", str(manifest), "--output", str(root / "out"), "--model", model,
           "--random-init", "--seed", "0", "--device", "cpu", *extra]
    start = time.perf_counter()
    run = subprocess.run(cmd, env=_env(), capture_output=True, text=True, cwd=ROOT)
    wall = time.perf_counter() - start
    if run.returncode != 0:
        raise RuntimeError(f"extract failed ({run.returncode}): {run.stderr[-3000:]}")
    peak = re.search(r"Maximum resident set size \(kbytes\): (\d+)", run.stderr)
    if peak is None:
        raise RuntimeError(f"no peak RSS in /usr/bin/time's output: {run.stderr[-3000:]}")
    rss = int(peak.group(1))
    todo = re.search(r"(\d+) already in .*?, (\d+) to do", run.stderr)
    graph = re.search(r"pipeline graph: (\d+) bytes", run.stderr)
    return {"wall_s": round(wall, 2), "peak_rss_mb": round(rss / 1024, 1),
            "already_done": int(todo.group(1)) if todo else -1,
            "to_do": int(todo.group(2)) if todo else -1,
            "loaded_model": "known from" not in run.stderr,
            "adopted_shards": run.stderr.count("fully verified and committed"),
            **({"graph_bytes": int(graph.group(1))} if graph else {})}


def _reruns(root: Path, n: int, per_shard: int, identity: Identity, model: str,
            version: int | None = None) -> dict:
    manifest = _write_output(root, n, per_shard, identity, version)
    disk = sum(p.stat().st_size for p in (root / "out").iterdir())
    runs = [_extract(root, manifest, model) for _ in range(3)]
    result = {"videos": n, "per_shard": per_shard, "shards": -(-n // per_shard),
              "output_gb": round(disk / 1e9, 2), "first": runs[0], "reruns": runs[1:],
              "rerun_ms_per_video": round(min(r["wall_s"] for r in runs[1:]) * 1e3 / n, 4)}
    log.info("%s", result)
    shutil.rmtree(root, ignore_errors=True)
    return result


def _read_speed(root: Path, identity: Identity, videos: int = 200) -> dict:
    from eercf_core.files import shards

    dims = identity[0]
    result: dict[str, dict] = {}
    for version in (2, 3):
        manifest_root = root / f"v{version}"
        _write_output(manifest_root, videos, videos, identity, version=version)
        [path] = shards.list_shards(str(manifest_root / "out"))
        times = []
        for _ in range(3):
            start = time.perf_counter()
            arrays = shards.feature_arrays(shards.read_shard(path), dims)
            times.append(time.perf_counter() - start)
            assert arrays["patch"].shape == (videos, dims.num_frames * dims.num_patches,
                                             dims.embed_dim)
        result[f"v{version}"] = {"ms_per_video": round(min(times) * 1e3 / videos, 3),
                                 "file_mb": round(Path(path).stat().st_size / 1e6, 1)}
        shutil.rmtree(manifest_root, ignore_errors=True)
    result["speedup"] = round(result["v2"]["ms_per_video"] / result["v3"]["ms_per_video"], 1)
    log.info("feature read: %s", result)
    return result


def _launcher(root: Path, n: int) -> dict[str, object]:
    """`extract --dry-run` over an n-line manifest into an empty output (identity known)."""
    from eercf_core.files.inputs import write_manifest

    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    one = root / "one.tsv"
    write_manifest(str(one), [("warm", "/corpus/warm.mp4")])
    _extract(root, one, TINY, "--dry-run")  # learns the tiny model's identity (cached)
    manifest = root / "manifest.tsv"
    write_manifest(str(manifest), ((f"video-{i:08d}", f"/corpus/d{i % 1000:03d}/v{i:08d}.mp4")
                                   for i in range(n)))
    run = _extract(root, manifest, TINY, "--dry-run", "--shard-size", "256")
    result: dict[str, object] = {"manifest_lines": n,
                                 "manifest_mb": round(manifest.stat().st_size / 1e6, 1), **run}
    log.info("launcher: %s", result)
    shutil.rmtree(root, ignore_errors=True)
    return result


def _launcher_done(root: Path, n: int, new: int = 256) -> dict[str, object]:
    """The launcher with n done ids: an output of n committed videos (eercf-tiny at T=1, so
    1M rows fit in ~2.5 GB: a commit record's cost does not depend on the feature size), then
    (1) `extract --dry-run` on a manifest of those n plus `new` new lines (resume over every
    record, the plan of the new ones, the graph built: all a real launch does before the
    runner takes over), and (2) the no-op rerun on the n (resume, completeness, summary)."""
    from eercf_core.files.inputs import write_manifest

    identity = _identity(TINY, num_frames=1)
    manifest = _write_output(root, n, 1000, identity)
    disk = sum(p.stat().st_size for p in (root / "out").iterdir())
    more = root / "more.tsv"
    with open(manifest, encoding="utf-8") as done_lines:
        write_manifest(str(more), [*((f"new-{i:05d}", f"/corpus/new-{i:05d}.mp4")
                                     for i in range(new))])
        with open(more, "a", encoding="utf-8") as out:
            next(done_lines)  # header
            for line in done_lines:
                out.write(line)
    first = _extract(root, manifest, TINY, "--num-frames", "1")  # learns the identity
    launch = _extract(root, more, TINY, "--num-frames", "1", "--dry-run", "--shard-size", "256")
    noop = _extract(root, manifest, TINY, "--num-frames", "1")
    result: dict[str, object] = {"done_ids": n, "new": new, "output_gb": round(disk / 1e9, 2),
                                 "first": first, "dry_run_launch": launch, "noop_rerun": noop}
    log.info("launcher with done ids: %s", result)
    shutil.rmtree(root, ignore_errors=True)
    return result


def main(argv: list[str]) -> dict:
    quick = "--quick" in argv
    only = next((a.split("=", 1)[1].split(",") for a in argv if a.startswith("--only=")),
                ["read", "vit", "tiny100k", "shard_sizes", "adopt", "launcher",
                 "launcher_done"])
    work = _work_dir()
    work.mkdir(parents=True, exist_ok=True)
    known = functools.cache(_identity)  # learned once, only for the parts that need it
    results: dict[str, object] = {"machine": f"{os.cpu_count()} cores (shared, loaded)"}
    try:
        if "launcher" in only:
            results["launcher"] = [_launcher(work / "launcher", n)
                                   for n in (10_000, 100_000 if quick else 1_000_000)]
        if "launcher_done" in only:
            results["launcher_done_ids"] = _launcher_done(work / "launcher_done",
                                                          100_000 if quick else 1_000_000)
        if "read" in only:
            results["feature_read_vit_b32"] = _read_speed(work / "read", known(VIT_B32[0]))
        if "vit" in only:
            results["rerun_vit_b32"] = _reruns(work / "vit", 2_000 if quick else 10_000, 500,
                                               known(VIT_B32[0]), VIT_B32[0])
        if "tiny100k" in only:
            results["rerun_tiny_100k"] = _reruns(work / "tiny", 20_000 if quick else 100_000,
                                                 500, known(TINY), TINY)
        if "shard_sizes" in only:
            results["rerun_tiny_by_shard_size"] = [
                _reruns(work / "tiny", 10_000, size, known(TINY), TINY)
                for size in (100, 500, 2_000)]
        if "adopt" in only:
            results["adopt_v2_vit_b32"] = _reruns(work / "v2", 2_000 if quick else 10_000, 500,
                                                  known(VIT_B32[0]), VIT_B32[0], version=2)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return results


if __name__ == "__main__":
    from eercf_core.logs import setup_logging

    setup_logging(0)
    import json

    print(json.dumps(main(sys.argv[1:]), indent=2))
