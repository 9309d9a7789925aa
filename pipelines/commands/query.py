"""`eercf query`: a query file -> ranked TSV (query_id, rank, video_id, score, coarse_score).

Two stages (method §8.3): recall the top-k videos per query from the FAISS index by S_V, rerank
those k with the fine features read from the store (0.5 S_V + 0.8 S_Fw + 0.2 S_Fs +
0.2 S_Pw by default); positions after k follow in coarse order. `--recall-only` writes the coarse
order; `--exhaustive` fine-scores every video and ranks all by the rerank score (the costly
reference). Beside the TSV, `<output>.meta.json` records the mode, k, top-n and the index.

Queries are ranked in blocks of `--batch-size` and the rows streamed to the output (memory is
bounded by one block, whatever the number of queries; the file is renamed into place at the
end). With `--runner` (e.g. `--runner DaskRunner --dask_client_address tcp://host:8786`; other
unknown flags are Beam pipeline options) the blocks are ranked on the runner's workers and
merged into the same, byte-identical TSV (pipelines/beam/distributed_query.py).
"""
from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

from eercf_core.files import paths
from eercf_core.files.atomic import write_json, write_text
from eercf_core.files.output_check import check_writable_file
from eercf_core.files.text_formats import ranked_lines, ranked_meta_path, read_queries
from eercf_core.index.search import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_BLOCK_MEMORY,
    block_memory,
    check_block_memory,
    default_batch_size,
)
from eercf_core.progress import Progress
from pipelines.beam.query_ranker import QueryJob, query_blocks, ranker, stream_rows
from pipelines.flags import (
    add_device,
    add_model_flags,
    add_output,
    add_rerank_flags,
    apply_storage_options,
    command_parser,
    non_negative_int,
    positive_int,
    refuse_beam_args_without_runner,
    score_config,
)

log = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    parser = command_parser("query", __doc__)
    parser.add_argument("--index", required=True, help="index directory from build-index")
    parser.add_argument("--queries", required=True, help="TSV query_id<TAB>text or JSONL")
    add_output(parser, help="ranked TSV to write")
    add_model_flags(parser)  # the model that extracted the features, given as to extract
    parser.add_argument("--top-n", type=non_negative_int, default=100,
                        help="ranked videos written per query (0 = all videos)")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--recall-only", action="store_true", help="coarse order only, no rerank")
    mode.add_argument("--exhaustive", action="store_true",
                      help="fine-score every video (slow reference)")
    parser.add_argument("--batch-size", type=positive_int, default=None,
                        help="queries ranked as one block (one unit of work on a runner); "
                             "default 256, or for an index with on-disk IVF lists (>= 1M "
                             "videos) a block that is searched list by list (4 x nlist / "
                             "nprobe queries, at most 16,384)")
    parser.add_argument("--max-block-memory", type=float, default=DEFAULT_BLOCK_MEMORY / 2**30,
                        help="GiB one block of --batch-size queries may need (estimated); a "
                             "larger one (--top-n 0 or --exhaustive on a big corpus) is refused "
                             "up front with the largest --batch-size that fits")
    add_rerank_flags(parser)
    add_device(parser, "text encoding")
    return parser


def run(argv: list[str] | None = None) -> int:
    """Rank the queries; 0 when the ranked TSV is complete, 1 when a runner lost work."""
    parser = build_parser()
    args, beam_args = parser.parse_known_args(argv)
    apply_storage_options(args)
    refuse_beam_args_without_runner(parser, beam_args)
    mode_name = ("recall-only" if args.recall_only else
                 "exhaustive" if args.exhaustive else "two-stage")
    output = paths.absolute(args.output)
    check_writable_file(output)
    model = paths.absolute(args.model) if Path(args.model).exists() else args.model
    pretrained = (paths.absolute(args.pretrained)
                  if args.pretrained and Path(args.pretrained).exists() else args.pretrained)
    job = QueryJob(index=paths.absolute(args.index), model=model, pretrained=pretrained,
                   device=args.device, nprobe=args.nprobe, mode=mode_name,
                   recall_k=args.recall_k, top_n=args.top_n, weights=args.weights,
                   config=score_config(args),
                   rerank_method=args.rerank_method, random_init=args.random_init,
                   head=args.head, seed=args.seed)
    local = ranker(job)  # the index and model are checked here, before any work is sent out
    num_videos, budget = len(local.index.video_ids), int(args.max_block_memory * 2**30)
    batch_size = args.batch_size
    if batch_size is None:  # a larger list-by-list block only as far as the memory limit allows
        fits = budget // block_memory(mode_name, 1, args.recall_k, local.top_n, num_videos)
        batch_size = max(DEFAULT_BATCH_SIZE,
                         min(default_batch_size(local.index, mode_name), fits))
    check_block_memory(mode_name, batch_size, args.recall_k, local.top_n, num_videos, budget)
    queries = read_queries(args.queries)
    blocks = query_blocks(queries, batch_size)
    log.info("query: %d queries in %d blocks of up to %d", len(queries), len(blocks), batch_size)

    start = time.perf_counter()
    if beam_args:
        from pipelines.beam.distributed_query import (  # Beam: ~1 s, 100 MB
            IncompleteOutputError,
            rank_on_runner,
        )

        try:
            rank_on_runner(job, blocks, output, local.top_n, beam_args)
        except IncompleteOutputError as exc:
            log.error("query: %s", exc)
            return 1
    else:
        progress = Progress(f"query {mode_name}", len(queries), "queries", logger=log)
        write_text(output, ranked_lines(stream_rows(job, blocks, progress)))
    seconds = time.perf_counter() - start
    identity = local.model.identity
    write_json(ranked_meta_path(output), {
        "mode": mode_name, "recall_k": args.recall_k, "top_n": local.top_n,
        "weights": job.weights.to_dict(), "mask_padded_frames": job.config.mask_padded_frames,
        "index": job.index, "model_id": identity.model_id,
        "checkpoint_sha256": identity.checkpoint_sha256,
        "model_weights": job.model_spec(local.index.dims.num_frames).describe(),
        "num_queries": len(queries), "batch_size": batch_size,
        "runner": "in-process" if not beam_args else " ".join(beam_args),
        "seconds": round(seconds, 3), "queries_per_second": round(len(queries) / seconds, 3)})
    print(f"{mode_name}: ranked {len(queries)} queries ({len(queries) / seconds:.1f}/s), "
          f"top {local.top_n} each -> {args.output}")
    return 0
