"""`eercf build-index`: feature shards -> FAISS recall index + fine-feature store + manifest.

The CLI of `eercf_core.index.build` (shard resolution, model checks, the atomic directory build).
"""
from __future__ import annotations

import argparse

from eercf_core.config import RECALL_K
from eercf_core.index import build_index, recall
from eercf_core.index.codecs import DEFAULT_TRAIN_VECTORS
from pipelines.flags import add_output, add_workers, command_parser, parse_args, positive_int


def fraction(text: str) -> float:
    """argparse type: a number in (0, 1]."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1], got {text!r}") from None
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1], got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = command_parser("build-index", __doc__)
    parser.add_argument("--shards", nargs="+", required=True,
                        help="shard directories, shard files or globs (fsspec URLs)")
    add_output(parser, help="index directory to create (local)")
    parser.add_argument("--index-factory", default=None,
                        help="FAISS index_factory string (default: Flat below "
                             f"{recall.EXACT_MAX_VIDEOS} videos, IVF above)")
    parser.add_argument("--nprobe", type=positive_int, default=None,
                        help="IVF lists probed (default: tuned to --recall-target)")
    parser.add_argument("--recall-sample", type=positive_int, default=1000,
                        help="held-out queries (mixes of corpus vectors plus noise) measuring an "
                             "approximate index's recall vs exact")
    parser.add_argument("--recall-check-k", type=positive_int, default=RECALL_K)
    parser.add_argument("--recall-target", type=fraction, default=recall.DEFAULT_RECALL_TARGET,
                        help="recall@k vs exact that nprobe / efSearch are tuned to reach "
                             "(a miss is a loud warning)")
    parser.add_argument("--min-recall", type=fraction, default=None,
                        help="fail the build when recall@k vs exact is below this")
    parser.add_argument("--batch-rows", type=positive_int, default=256, help="rows read per batch")
    parser.add_argument("--fine-codec", default="fp16",
                        help="fine-store codec: fp16, a FAISS index_factory codec for every kind "
                             "(SQ8, PQ64, OPQ64,PQ64, ...) or per kind, e.g. "
                             "patch=PQ64,frame=SQ8,context=SQ8 (unnamed kinds stay fp16)")
    parser.add_argument("--codec-train-videos", type=positive_int, default=256,
                        help="videos sampled to train the codecs")
    parser.add_argument("--codec-train-vectors", type=positive_int, default=DEFAULT_TRAIN_VECTORS,
                        help="at most this many training vectors per codec")
    parser.add_argument("--fidelity-videos", type=positive_int, default=200,
                        help="videos sampled to measure the codecs' rerank fidelity vs float16")
    parser.add_argument("--fidelity-queries", type=positive_int, default=200,
                        help="corpus-derived queries of the fidelity measurement")
    add_workers(parser, 1, "processes filling the fine store, one shard per task (1: "
                "in-process; each spawned worker imports torch and FAISS, which costs seconds)")
    parser.add_argument("--overwrite", action="store_true")
    return parser


def run(argv: list[str] | None = None) -> int:
    args = parse_args(build_parser(), argv)
    manifest = build_index(args.shards, args.output, args.index_factory, args.nprobe,
                           args.recall_sample, args.recall_check_k, args.batch_rows,
                           args.overwrite, fine_codec=args.fine_codec,
                           codec_train_videos=args.codec_train_videos,
                           codec_train_vectors=args.codec_train_vectors,
                           fidelity_videos=args.fidelity_videos,
                           fidelity_queries=args.fidelity_queries,
                           recall_target=args.recall_target, min_recall=args.min_recall,
                           workers=args.workers)
    store = manifest["fine_store"]
    print(f"indexed {manifest['num_videos']} videos ({manifest['num_error_rows']} error rows "
          f"skipped) with {manifest['index']['factory']}, fine store {store['codec']} "
          f"({store['bytes_per_video']:,} B/video) into {args.output}")
    return 0
