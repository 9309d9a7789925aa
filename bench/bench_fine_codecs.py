"""Compressed fine stores (`build-index --fine-codec`) against float16, side by side in one run.

Quality (real features; each codec's index built with `eercf_core.index.build_index` from the
same shards):
  --real-shards DIR   shards of real videos (e.g. ../shared/videos through a seeded random
                      ViT-B-32): bytes/video and the manifest's measured fidelity (top-10
                      agreement of the rerank order, rerank score errors vs the neighbour gap).
  --demo DIR          a `make demo`-style run: DIR/features (test-split shards), DIR/model.pt
                      (or DIR/train/model.pt),
                      DIR/corpus/test_queries.tsv + test_ground_truth.tsv: R@1/R@5/R@10 of the
                      two-stage ranking per codec, and its top-10 agreement with float16's.
Speed (synthetic ViT-B/32-sized features as `bench query`; N = 10k and 100k videos, video i
reads fine row i mod --store-rows): two-stage queries/s (k = 50) with the recall's share, store
write (encode) time, bytes per video, for float16 and `--speed-codec`, measured alternately on
the two stores at each N. The stores are small enough to sit in the page cache, so the q/s are
the page-cached case; a store larger than RAM (float16 at N = 100k: ~63 GB) cannot be built
here, so each row also reports the store bytes the rerank copies per query and the full store
size at N against this machine's RAM (the bytes an uncached store would have to read from disk).
Codec selection curves (`--fine-codec auto`'s candidates, every one measured: bytes per video,
held-out top-10 agreement, mean score errors, and the spec `auto` keeps at --min-agreement):
  --synthetic-seeds 0,1,2  clustered synthetic ViT-B/32 corpora of --synthetic-videos (10,000)
                      videos each (`bench.fine_codec_corpus`; only the sampled videos are
                      generated: 256 training + --held-out-videos held-out, as build-index draws)
  --real-shards DIR   the same on real-video shards (training and held-out halves)
Usage: python -m bench fine_codecs [--quick] [--real-shards DIR] [--demo DIR] [--codecs A;B;..]
       [--synthetic-seeds 0,1,2] [--skip-speed]
"""
from __future__ import annotations

import argparse
import logging
import shutil
from pathlib import Path

import numpy as np
import torch

import eercf_core as ec
from bench.bench_query import (
    OUT,
    ModuloStore,
    _clustered,
    _memory,
    _norm,
    _timed,
    _write_store,
)
from bench.fine_codec_corpus import VIT_B32, ClusteredCorpus
from eercf_core.config import RerankWeights, ScoreConfig
from eercf_core.evaluation.metrics import metrics_from_ranks, ranks_for_queries
from eercf_core.files.shards import features_from_table, list_shards, read_shard, shard_identity
from eercf_core.files.text_formats import read_ground_truth, read_queries
from eercf_core.index import build_index, open_index, recall
from eercf_core.index.codec_selection import (
    DEFAULT_MIN_AGREEMENT,
    select_codec,
)
from eercf_core.index.codecs import DEFAULT_TRAIN_VECTORS, FineCodecSpec, train_codecs
from eercf_core.index.directory import IndexDirectory
from eercf_core.index.fidelity import corpus_queries
from eercf_core.index.search import recall_only, two_stage
from eercf_core.index.store import FineStore
from eercf_core.model.features import VideoFeatures
from eercf_core.scoring.scores import ScoreParams
from schemas import FeatureDims

log = logging.getLogger("bench.fine_codecs")
# Patch codecs scaled to D (D/16 .. D/2 bytes per vector), frames/context SQ8 unless fp16.
CURVE = ("fp16", "SQ8", "patch=SQ4,frame=SQ8,context=SQ8", "patch=PQ{d2},frame=SQ8,context=SQ8",
         "patch=PQ{d4},frame=SQ8,context=SQ8", "patch=PQ{d8},frame=SQ8,context=SQ8",
         "patch=OPQ{d8},PQ{d8},frame=SQ8,context=SQ8", "patch=PQ{d16},frame=SQ8,context=SQ8")


def _specs(template: str | None, embed_dim: int) -> list[str]:
    names = template.split(";") if template else list(CURVE)
    return [n.format(d2=embed_dim // 2, d4=embed_dim // 4, d8=embed_dim // 8,
                     d16=embed_dim // 16) for n in names]


def _build(shards: str, out: Path, spec: str, train: tuple[int, int]) -> tuple[dict, float]:
    shutil.rmtree(out, ignore_errors=True)
    manifest, seconds = _timed(build_index, [shards], str(out), fine_codec=spec,
                               codec_train_videos=train[0], codec_train_vectors=train[1],
                               overwrite=True)
    return manifest, seconds


def _top10_agreement(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(np.mean([len(set(x[:10].tolist()) & set(y[:10].tolist())) / 10
                          for x, y in zip(a, b)]))


def quality_real(shards: str, specs: list[str], work: Path, train: tuple[int, int]) -> list[dict]:
    """Bytes/video and the build-time fidelity record of each codec on real-video shards."""
    rows = []
    for spec in specs:
        manifest, seconds = _build(shards, work / "real_index", spec, train)
        store = manifest["fine_store"]
        rows.append({"codec": spec, "bytes_per_video": store["bytes_per_video"],
                     "build_seconds": round(seconds, 2), "fidelity": store.get("fidelity")})
        fidelity = store.get("fidelity") or {}
        log.info("real %-45s %8d B/video  top-10 agreement %s  max final error %s", spec,
                 store["bytes_per_video"], fidelity.get("top10_agreement"),
                 fidelity.get("score_errors", {}).get("final", {}).get("max_abs"))
    return rows


def quality_demo(demo: Path, specs: list[str], work: Path, train: tuple[int, int]) -> list[dict]:
    """R@K of the two-stage ranking of the demo test queries for each codec."""
    checkpoint = demo / "model.pt"  # a `make demo` output keeps it in train/
    model = ec.load_model(str(checkpoint if checkpoint.exists() else demo / "train" / "model.pt"),
                          device="cpu")
    queries = read_queries(str(demo / "corpus" / "test_queries.tsv"))
    truth = {q: [v for v, _ in rows] for q, rows in
             read_ground_truth(str(demo / "corpus" / "test_ground_truth.tsv")).items()}
    text = model.encode_text([q.text for q in queries]).float()
    params = model.score_params.detach()
    rows, reference = [], None
    for spec in specs:
        manifest, seconds = _build(str(demo / "features"), work / "demo_index", spec, train)
        index = open_index(work / "demo_index")
        ranking = two_stage(index, text, params, ec.RECALL_K, len(index.video_ids))
        orders = {q.query_id: [index.video_ids[i] for i in row]
                  for q, row in zip(queries, ranking.indices.tolist())}
        ranks, censored = ranks_for_queries(orders, truth)
        metrics = metrics_from_ranks(list(ranks.values()), censored)
        reference = ranking.indices if reference is None else reference
        store = manifest["fine_store"]
        rows.append({"codec": spec, "bytes_per_video": store["bytes_per_video"],
                     **{k: round(metrics[k], 2) for k in ("R@1", "R@5", "R@10")},
                     "top10_agreement_with_first": round(_top10_agreement(ranking.indices,
                                                                          reference), 4),
                     "build_fidelity_top10_agreement":
                         (store.get("fidelity") or {}).get("top10_agreement"),
                     "build_seconds": round(seconds, 2)})
        log.info("demo %-45s %6d B/video  R@1 %.2f R@5 %.2f  top-10 vs %s %.3f", spec,
                 store["bytes_per_video"], metrics["R@1"], metrics["R@5"], specs[0],
                 rows[-1]["top10_agreement_with_first"])
    return rows


def selection_curve(train: VideoFeatures, held_out: VideoFeatures, dims: FeatureDims,
                    label: str, min_agreement: float, queries: int = 200,
                    train_vectors: int = DEFAULT_TRAIN_VECTORS, seed: int = 0) -> dict:
    """Every default `auto` candidate trained on `train`, measured on `held_out` (disjoint
    videos) with corpus-derived queries and identity score parameters, as build-index does."""
    fidelity_queries = corpus_queries(held_out, queries, seed)
    params = ScoreParams.identity(dims.embed_dim, dims.num_frames)
    selection, seconds = _timed(select_codec, train, held_out, fidelity_queries, params, dims,
                                min_agreement=min_agreement, train_vectors=train_vectors,
                                seed=seed, try_all=True)
    for row in selection.record["candidates"]:
        log.info("%s %-50s %7d B/video  top-10 agreement %s (min %s)  mean |err| S_Pw %s "
                 "final %s", label, row["codec"], row["bytes_per_video"],
                 row.get("top10_agreement"), row.get("top10_agreement_min"),
                 row.get("score_errors_mean_abs", {}).get("S_Pw"),
                 row.get("score_errors_mean_abs", {}).get("final"))
    log.info("%s: auto keeps %s at min agreement %.3f", label, selection.spec, min_agreement)
    return {"train_videos": train.num_videos, "held_out_videos": held_out.num_videos,
            "queries": queries, "chosen": str(selection.spec),
            "final_neighbour_gap_mean_top10": next(
                (r["final_neighbour_gap_mean_top10"] for r in selection.record["candidates"]
                 if "final_neighbour_gap_mean_top10" in r), None),
            "candidates": selection.record["candidates"], "seconds": round(seconds, 1)}


def quality_synthetic(seeds: list[int], num_videos: int, held_out_videos: int, train_videos: int,
                      min_agreement: float, train_vectors: int) -> dict:
    """The selection curve on clustered synthetic corpora, one per seed (see
    `bench.fine_codec_corpus`): training and held-out videos drawn as build-index draws them."""
    out = {}
    for seed in seeds:
        corpus = ClusteredCorpus(num_videos, VIT_B32, seed=seed)
        order = np.random.default_rng(seed).permutation(num_videos)
        train = corpus.videos(np.sort(order[:train_videos]))
        held_out = corpus.videos(np.sort(order[train_videos:train_videos + held_out_videos]))
        out[f"seed{seed}"] = selection_curve(train, held_out, VIT_B32, f"synthetic seed {seed}",
                                             min_agreement, train_vectors=train_vectors,
                                             seed=seed)
        out[f"seed{seed}"]["corpus_videos"] = num_videos
        del train, held_out
    return out


def quality_real_curve(shards: str, min_agreement: float, train_vectors: int) -> dict:
    """The selection curve on real-video shards: codecs trained on a random half of the ok
    videos, fidelity on the other half."""
    parts = [features_from_table(read_shard(path))[1] for path in list_shards(shards)]
    features = VideoFeatures(**{kind: torch.cat([getattr(p, kind) for p in parts])
                                for kind in ("coarse", "frame", "context", "patch", "mask")})
    order = np.random.default_rng(0).permutation(features.num_videos)
    half = features.num_videos // 2
    dims = shard_identity(list_shards(shards)[0])[0]
    return selection_curve(features.index(torch.from_numpy(np.sort(order[:half]))),
                           features.index(torch.from_numpy(np.sort(order[half:]))), dims, "real",
                           min_agreement, train_vectors=train_vectors)


class CountingStore(ModuloStore):
    """A ModuloStore that counts the fine-store bytes (frame, context, patch, mask) it returns."""

    def __init__(self, inner: FineStore, num_videos: int, coarse: np.ndarray) -> None:
        super().__init__(inner, num_videos, coarse)
        self.bytes_read = 0

    def read(self, kind: str, rows: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        values = super().read(kind, rows, out)
        self.bytes_read += values.nbytes if kind != "coarse" else 0
        return values

    def read_float(self, kind: str, rows: np.ndarray) -> torch.Tensor:
        if kind != "coarse":  # the stored bytes, not the float32 they decode to
            self.bytes_read += self.inner.arrays[kind][0].nbytes * len(rows)
        return super().read_float(kind, rows)


def _ram_bytes() -> int:
    return int(Path("/proc/meminfo").read_text().split("MemTotal:")[1].split()[0]) * 1024


def speed(spec_text: str, quick: bool, num_queries: int, store_rows: int) -> dict:
    """Two-stage queries/s on float16 and coded stores of the same synthetic ViT-B/32 features.

    Both stores hold `store_rows` videos; at N = 10k and 100k video i reads fine row
    i mod store_rows (coarse vectors all distinct), as `bench query` does at 100k.
    """
    dims = FeatureDims(12, 49, 512)
    sizes = (300, 3_000) if quick else (10_000, 100_000)
    store_rows = min(store_rows, 300) if quick else store_rows
    num_queries = 40 if quick else num_queries
    rng = np.random.default_rng(0)
    centers = _norm(rng.standard_normal((256, dims.embed_dim), dtype=np.float32))
    spec = FineCodecSpec.parse(spec_text)
    # Codecs trained on a sample written the way the stores are (same generator, other seed).
    sample_dir = OUT / "codec_sample"
    _write_store(sample_dir, 64, dims, centers, seed=2)
    sample = FineStore(sample_dir).features(slice(None))
    codecs, train_seconds = _timed(train_codecs, spec, {k: getattr(sample, k).numpy()
                                                        for k in ("frame", "context", "patch")},
                                   dims.embed_dim)
    shutil.rmtree(sample_dir)
    params = ScoreParams(torch.tensor(100.0), torch.eye(dims.embed_dim) +
                         0.01 * torch.randn(dims.embed_dim, dims.embed_dim,
                                            generator=torch.Generator().manual_seed(0)),
                         torch.eye(dims.num_frames))
    text = torch.from_numpy(_clustered(rng, centers, num_queries)).float()
    result: dict = {"codec": str(spec), "codec_train_seconds": round(train_seconds, 2),
                    "queries": num_queries, "k": ec.RECALL_K, "store_rows": store_rows,
                    "fine_row_of_video": f"i mod {store_rows}"}
    stores, coarse = {}, None
    for name, store_codecs in (("fp16", None), (str(spec), codecs)):
        path = OUT / f"codec_store_{'fp16' if store_codecs is None else 'coded'}"
        coarse, seconds = _write_store(path, store_rows, dims, centers, seed=1,
                                       codecs=store_codecs)
        stores[name] = FineStore(path)
        result[name] = {"bytes_per_video": stores[name].bytes_per_video,
                        "store_write_seconds": round(seconds, 1),
                        "store_write_videos_per_second": round(store_rows / seconds, 1)}
    all_coarse = np.concatenate([coarse, _clustered(rng, centers, sizes[1] - store_rows)
                                 .astype(np.float16)])
    result["ram_bytes"] = _ram_bytes()
    for label, count in zip(("n10k", "n100k"), sizes):
        index = recall.build(all_coarse[:count])
        directory = IndexDirectory(Path(), {}, index, [], None)  # type: ignore[arg-type]
        _, recall_seconds = _timed(recall_only, directory, text, params, ec.RECALL_K)
        result[f"{label}_recall_only_qps"] = round(num_queries / recall_seconds, 2)
        rankings = {}
        for name, store in stores.items():
            view = CountingStore(store, count, all_coarse[:count])
            directory = IndexDirectory(Path(), {}, index, [], view)
            ranking, seconds = _timed(two_stage, directory, text, params, ec.RECALL_K,
                                      ec.RECALL_K, RerankWeights(), ScoreConfig())
            rankings[name] = ranking.indices
            store_bytes = store.bytes_per_video * count
            result[name][label] = {
                "two_stage_qps": round(num_queries / seconds, 2),
                "rerank_ms_per_query": round(1000 * (seconds - recall_seconds) / num_queries, 2),
                "store_bytes_read_per_query": round(view.bytes_read / num_queries),
                "store_bytes_at_n": store_bytes,
                "store_fits_in_ram": store_bytes < result["ram_bytes"]}
            log.info("%s %s: %.2f queries/s, %.1f MB of store read per query, store %.1f GB",
                     label, name, num_queries / seconds, view.bytes_read / num_queries / 1e6,
                     store_bytes / 1e9)
        result[f"{label}_qps_ratio_coded_over_fp16"] = round(
            result[str(spec)][label]["two_stage_qps"] / result["fp16"][label]["two_stage_qps"], 3)
        result[f"{label}_top10_agreement_synthetic"] = round(
            _top10_agreement(*rankings.values()), 4)
    result["memory"] = _memory()
    return result


def main(flags: list[str]) -> dict:
    parser = argparse.ArgumentParser(prog="bench fine_codecs")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--real-shards", default=None)
    parser.add_argument("--demo", default=None)
    parser.add_argument("--codecs", default=None, help="';'-separated specs ({d8} = D/8 etc.)")
    parser.add_argument("--train-videos", type=int, default=256)
    parser.add_argument("--train-vectors", type=int, default=DEFAULT_TRAIN_VECTORS,
                        help="training vectors per codec")
    parser.add_argument("--speed-codec", default="patch=PQ64,frame=SQ8,context=SQ8")
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--store-rows", type=int, default=10_000,
                        help="videos in each synthetic speed store (video i reads row i mod this)")
    parser.add_argument("--skip-speed", action="store_true")
    parser.add_argument("--synthetic-seeds", default=None,
                        help="comma-separated corpus seeds of the synthetic selection curves")
    parser.add_argument("--synthetic-videos", type=int, default=10_000)
    parser.add_argument("--held-out-videos", type=int, default=200)
    parser.add_argument("--min-agreement", type=float, default=DEFAULT_MIN_AGREEMENT)
    parser.add_argument("--real-curve", action="store_true",
                        help="with --real-shards: the auto candidates' curve (half/half split)")
    args = parser.parse_args(flags)
    torch.manual_seed(0)
    train = (args.train_videos, args.train_vectors)
    work = OUT / "fine_codecs"
    work.mkdir(parents=True, exist_ok=True)
    result: dict = {}
    if args.synthetic_seeds:
        result["synthetic_curves"] = quality_synthetic(
            [int(seed) for seed in args.synthetic_seeds.split(",")],
            300 if args.quick else args.synthetic_videos, args.held_out_videos,
            args.train_videos, args.min_agreement, args.train_vectors)
    if args.real_shards and args.real_curve:
        result["real_curve"] = quality_real_curve(args.real_shards, args.min_agreement,
                                                  args.train_vectors)
    elif args.real_shards:
        dims = shard_identity(list_shards(args.real_shards)[0])[0]
        result["real_videos"] = quality_real(args.real_shards, _specs(args.codecs, dims.embed_dim),
                                             work, train)
    if args.demo:
        demo = Path(args.demo)
        dims = shard_identity(list_shards(str(demo / "features"))[0])[0]
        result["demo"] = quality_demo(demo, _specs(args.codecs, dims.embed_dim), work, train)
    if not args.skip_speed:
        result["speed"] = speed(args.speed_codec, args.quick, args.queries, args.store_rows)
    return result
