"""`eercf build-index`: feature shards -> FAISS recall index + fine-feature store + manifest.

The CLI of `eercf_core.index.build` (shard resolution, model checks, the atomic directory build).
With `--runner` (e.g. `--runner DaskRunner --dask_client_address tcp://host:8786`; other unknown
flags are Beam pipeline options) the fine store is filled on the runner's workers, one task per
shard (pipelines/beam/index_fill.py); they must reach the output directory at the same path.
"""
from __future__ import annotations

import argparse
import logging

import torch

from eercf_core.config import RECALL_K
from eercf_core.errors import UserInputError
from eercf_core.files.text_formats import read_queries
from eercf_core.index import build_index, recall
from eercf_core.index.build import AUTO_DEFAULT_MIN_VIDEOS, IncompleteFillError
from eercf_core.index.codec_selection import DEFAULT_MIN_AGREEMENT
from eercf_core.index.codecs import DEFAULT_TRAIN_VECTORS
from eercf_core.scoring.scores import ScoreParams
from pipelines.flags import (
    add_model_flags,
    add_output,
    add_workers,
    apply_storage_options,
    command_parser,
    model_spec,
    positive_float,
    positive_int,
    refuse_beam_args_without_runner,
)

log = logging.getLogger(__name__)


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
    parser.add_argument("--fine-codec", default=None,
                        help="fine-store codec (default: fp16 below "
                             f"{AUTO_DEFAULT_MIN_VIDEOS:,} videos, auto at or above): "
                             "fp16, a FAISS index_factory codec for every kind "
                             "(SQ8, PQ64, OPQ64,PQ64, IVF1024,PQ64, ...) or per kind, e.g. "
                             "patch=PQ64,frame=SQ8,context=SQ8 (unnamed kinds stay fp16), or "
                             "auto: the smallest candidate whose held-out top-10 agreement "
                             "reaches --min-agreement (fp16 if none does)")
    parser.add_argument("--min-agreement", type=positive_float, default=DEFAULT_MIN_AGREEMENT,
                        help="--fine-codec auto: held-out top-10 agreement with float16 to reach")
    parser.add_argument("--max-bytes-per-video", type=positive_int, default=None,
                        help="--fine-codec auto: skip candidates above this many store bytes "
                             "per video")
    parser.add_argument("--codec-train-videos", type=positive_int, default=256,
                        help="videos sampled to train the codecs")
    parser.add_argument("--codec-train-vectors", type=positive_int, default=DEFAULT_TRAIN_VECTORS,
                        help="at most this many training vectors per codec")
    parser.add_argument("--fidelity-videos", type=positive_int, default=200,
                        help="videos sampled to measure the codecs' rerank fidelity vs float16")
    parser.add_argument("--fidelity-queries", type=positive_int, default=200,
                        help="corpus-derived queries of the fidelity measurement")
    parser.add_argument("--codec-candidates", default=None,
                        help="--fine-codec auto: ';'-separated specs to choose from (default: "
                             "PQ, OPQ+PQ, IVF-residual PQ and SQ codecs sized to D)")
    parser.add_argument("--fidelity-text", default=None,
                        help="queries file (TSV query_id<TAB>text or JSONL) whose texts, encoded "
                             "by --model, are fidelity queries besides the corpus-derived ones "
                             "(with auto, both must reach --min-agreement)")
    add_model_flags(parser, required=False,
                    help="with --fidelity-text: the model that extracted the shards (checkpoint "
                         "or open_clip name with --pretrained/--random-init), for its text "
                         "tower and score parameters")
    parser.add_argument("--device", default="cpu", help="device for text encoding")
    add_workers(parser, None, "processes filling the fine store, one shard per task (1: "
                "in-process; below 2,000 videos always in-process)")
    parser.add_argument("--overwrite", action="store_true")
    return parser


def fidelity_text(args: argparse.Namespace) -> tuple[torch.Tensor, ScoreParams] | None:
    """(text vectors [Q, D], score parameters) of --fidelity-text encoded by --model, after
    checking that the model made the shards; None without the flags."""
    if args.fidelity_text is None and args.model is None:
        return None
    if args.fidelity_text is None or args.model is None:
        raise UserInputError("--fidelity-text and --model go together: the model encodes the "
                             "texts of the queries file")
    from eercf_core.index.build import check_identity, resolve_shards
    from eercf_core.model.spec import load_model_spec

    dims, model_id, sha = check_identity(resolve_shards(args.shards))
    model = load_model_spec(model_spec(args, dims.num_frames))
    if (model.identity.model_id, model.identity.checkpoint_sha256) != (model_id, sha):
        raise UserInputError(
            f"--model {args.model}: is {model.identity.model_id!r} (sha256 "
            f"{model.identity.checkpoint_sha256[:12]}…), but the shards were extracted by "
            f"{model_id!r} (sha256 {sha[:12]}…); give the extracting model")
    queries = read_queries(args.fidelity_text)
    if not queries:
        raise UserInputError(f"{args.fidelity_text}: no queries")
    with torch.no_grad():
        text = model.encode_text([q.text for q in queries]).float().cpu()
    return text, model.score_params.detach().to("cpu")


def run(argv: list[str] | None = None) -> int:
    """Build the index; 0 when complete, 1 when a runner lost fill tasks (nothing written)."""
    parser = build_parser()
    args, beam_args = parser.parse_known_args(argv)
    apply_storage_options(args)
    refuse_beam_args_without_runner(parser, beam_args)
    fill_runner = None
    if beam_args:
        from pipelines.beam.index_fill import fill_on_runner

        fill_runner = fill_on_runner(beam_args)
    try:
        manifest = build_index(args.shards, args.output, args.index_factory, args.nprobe,
                               args.recall_sample, args.recall_check_k, args.batch_rows,
                               args.overwrite, fine_codec=args.fine_codec,
                               codec_train_videos=args.codec_train_videos,
                               codec_train_vectors=args.codec_train_vectors,
                               fidelity_videos=args.fidelity_videos,
                               fidelity_queries=args.fidelity_queries,
                               min_agreement=args.min_agreement,
                               max_bytes_per_video=args.max_bytes_per_video,
                               fidelity_text=fidelity_text(args),
                               codec_candidates=(args.codec_candidates.split(";")
                                                 if args.codec_candidates else None),
                               recall_target=args.recall_target, min_recall=args.min_recall,
                               workers=args.workers, fill_runner=fill_runner)
    except IncompleteFillError as exc:
        log.error("build-index: %s", exc)
        return 1
    store = manifest["fine_store"]
    print(f"indexed {manifest['num_videos']} videos ({manifest['num_error_rows']} error rows "
          f"skipped) with {manifest['index']['factory']}, fine store {store['codec']} "
          f"({store['bytes_per_video']:,} B/video) into {args.output}")
    return 0
