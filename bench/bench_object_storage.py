"""An index directory at an S3 URL: build-index to s3:// (build locally + upload, manifest last),
the first open on a machine (download into the local cache), and later opens (one manifest read,
then the cached copy). Runs against moto's S3 server in this process on a loopback port (the
`test` extra), so the times are of the code path, not of a real network.

    python -m bench object_storage [--quick]      # 2000 videos (--quick: 500)
    /usr/bin/time -v python -m bench object_storage   # peak RSS (moto's server included)
"""
from __future__ import annotations

import logging
import os
import shutil
import socket
import tempfile
import time
from pathlib import Path

import numpy as np

from eercf_core.files import commits, paths
from eercf_core.index import build_index, open_index
from eercf_core.index.remote import fetch_index
from schemas import FeatureDims

log = logging.getLogger(__name__)

DIMS = FeatureDims(num_frames=12, num_patches=4, embed_dim=128)
PER_SHARD = 256


def _write_shards(root: Path, count: int, seed: int = 0) -> None:
    """`count` ok rows of random unit float16 features in committed shards under `root`."""
    rng = np.random.default_rng(seed)
    t, p, d = DIMS.num_frames, DIMS.num_patches, DIMS.embed_dim

    def unit(*shape: int) -> np.ndarray:
        x = rng.standard_normal(shape).astype(np.float32)
        return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float16)

    for number, begin in enumerate(range(0, count, PER_SHARD)):
        rows = [{"video_id": f"v{i:07d}", "uri": f"file:///v{i}.mp4", "status": "ok",
                 "coarse_feature": unit(d), "frame_features": unit(t, d).ravel(),
                 "context_frame_features": unit(t, d).ravel(),
                 "patch_features": unit(t * p, d).ravel(), "frame_mask": np.ones(t, bool)}
                for i in range(begin, min(count, begin + PER_SHARD))]
        commits.commit_shard(str(root / f"part-{number:05d}.parquet"), rows, DIMS, "bench",
                             "0" * 64)


def main(flags: list[str]) -> dict:
    """Times (s) of build-index local vs to S3, the cold fetch and a warm open."""
    try:
        import boto3  # type: ignore[import-untyped]
        from moto.server import ThreadedMotoServer
    except ImportError as exc:
        return {"skipped": f"needs moto[server] and s3fs (the test extra): {exc}"}
    count = 500 if "--quick" in flags else 2000
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    endpoint = f"http://127.0.0.1:{port}"
    saved = {k: os.environ.get(k) for k in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID",
                                            "AWS_SECRET_ACCESS_KEY", paths.CACHE_DIR_ENV)}
    work = Path(tempfile.mkdtemp(prefix="eercf-bench-s3-"))
    try:
        os.environ.update({"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "bench",
                           "AWS_SECRET_ACCESS_KEY": "bench",
                           paths.CACHE_DIR_ENV: str(work / "cache")})
        boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(
            Bucket="eercf-bench")
        _write_shards(work / "shards", count)
        url = "s3://eercf-bench/index"
        start = time.perf_counter()
        build_index([str(work / "shards")], str(work / "local_index"))
        local_build = time.perf_counter() - start
        start = time.perf_counter()
        build_index([str(work / "shards")], url)
        remote_build = time.perf_counter() - start
        size = sum(p.stat().st_size for p in (work / "local_index").rglob("*") if p.is_file())
        start = time.perf_counter()
        fetch_index(url)
        cold = time.perf_counter() - start
        start = time.perf_counter()
        index = open_index(url)
        warm = time.perf_counter() - start
        assert len(index.video_ids) == count
        return {"videos": count, "index_bytes": size, "build_local_s": round(local_build, 3),
                "build_to_s3_s": round(remote_build, 3), "upload_s": round(remote_build
                                                                          - local_build, 3),
                "first_open_fetch_s": round(cold, 3), "warm_open_index_s": round(warm, 3),
                "server": "moto ThreadedMotoServer, in-process, loopback"}
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
