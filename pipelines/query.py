"""`eercf query`: a query file -> ranked TSV (query_id, rank, video_id, score, coarse_score).

Two stages (method §8.3): recall the top-k videos per query from the FAISS index by S_V, rerank
those k with the fine features from the memory-mapped store (0.5 S_V + 0.8 S_Fw + 0.2 S_Fs +
0.2 S_Pw by default); positions after k follow in coarse order. `--recall-only` writes the coarse
order; `--exhaustive` fine-scores every video and ranks all by the rerank score (the costly
reference). Beside the TSV, `<output>.meta.json` records the mode, k, top-n and the index.
"""
from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

import eercf_core as ec
from eercf_core.atomic import write_json, write_text
from eercf_core.index import open_index, rank
from eercf_core.index.rerank import METHODS
from eercf_core.io_formats import ranked_lines, read_queries
from pipelines.args import add_model, add_output, parse_args

log = logging.getLogger(__name__)


def parse_weights(text: str | None) -> ec.RerankWeights:
    """'coarse=0.5,weak_frame=0.8,...' -> RerankWeights (unnamed weights keep official values)."""
    if not text:
        return ec.RerankWeights()
    values = {}
    for item in text.split(","):
        name, _, value = item.partition("=")
        if name.strip() not in ec.RerankWeights().to_dict():
            raise ValueError(f"--weights: unknown weight {name!r}; known: "
                             f"{sorted(ec.RerankWeights().to_dict())}")
        values[name.strip()] = float(value)
    return ec.RerankWeights(**values)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="eercf query", description=__doc__.split("\n")[0])
    parser.add_argument("--index", required=True, help="index directory from build-index")
    parser.add_argument("--queries", required=True, help="TSV query_id<TAB>text or JSONL")
    add_output(parser, help="ranked TSV to write")
    add_model(parser, required=True,
              help="the model that extracted the features (checkpoint or open_clip name)")
    parser.add_argument("--pretrained", default=None, help="open_clip pretrained tag or file")
    parser.add_argument("--recall-k", type=int, default=ec.RECALL_K, help="candidates reranked")
    parser.add_argument("--top-n", type=int, default=100,
                        help="ranked videos written per query (0 = all videos)")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--recall-only", action="store_true", help="coarse order only, no rerank")
    mode.add_argument("--exhaustive", action="store_true",
                      help="fine-score every video (slow reference)")
    parser.add_argument("--weights", default=None,
                        help="rerank weights, e.g. coarse=0.5,weak_frame=0.8,strong_frame=0.2,"
                             "weak_patch=0.2,strong_patch=0 (the official defaults)")
    parser.add_argument("--batch-size", type=int, default=256,
                        help="queries encoded/ranked at once")
    parser.add_argument("--nprobe", type=int, default=None, help="override the IVF nprobe")
    parser.add_argument("--rerank-method", choices=METHODS, default="grouped")
    parser.add_argument("--no-frame-mask", action="store_true",
                        help="let padded frames into the softmaxes (exact official parity)")
    parser.add_argument("--device", default="cpu", help="device for text encoding")
    return parser


def run(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parse_args(parser, argv)
    if args.recall_k < 1 or args.top_n < 0:
        parser.error("--recall-k must be >= 1 and --top-n >= 0")

    index = open_index(args.index, args.nprobe)
    queries = read_queries(args.queries)
    model = ec.load_model(args.model, pretrained=args.pretrained, device=args.device)
    index.check_model(model.identity.model_id, model.identity.checkpoint_sha256)
    if model.dims != index.dims:
        raise ValueError(f"model dims {model.dims} differ from the index dims {index.dims}")
    params = model.score_params.detach().to("cpu")
    weights = parse_weights(args.weights)
    config = ec.ScoreConfig(mask_padded_frames=not args.no_frame_mask)
    top_n = args.top_n or len(index.video_ids)
    top_n = min(top_n, len(index.video_ids))
    mode_name = ("recall-only" if args.recall_only else "exhaustive" if args.exhaustive
                 else "two-stage")

    start = time.perf_counter()
    rows: list[tuple] = []
    for begin in range(0, len(queries), args.batch_size):
        batch = queries[begin:begin + args.batch_size]
        text = model.encode_text([q.text for q in batch]).float().cpu()
        ranking = rank(index, text, params, mode_name, args.recall_k, top_n, weights, config,
                       args.rerank_method)
        for query, ids, scores, coarse in zip(batch, ranking.indices.tolist(),
                                              ranking.scores.tolist(),
                                              ranking.coarse_scores.tolist()):
            rows += [(query.query_id, rank, index.video_ids[i], s, c)
                     for rank, (i, s, c) in enumerate(zip(ids, scores, coarse), start=1)]
        done = begin + len(batch)
        log.info("%s: %d/%d queries, %.1f queries/s", mode_name, done, len(queries),
                 done / (time.perf_counter() - start))
    seconds = time.perf_counter() - start
    write_text(args.output, ranked_lines(rows))
    write_json(f"{args.output}.meta.json", {
        "mode": mode_name, "recall_k": args.recall_k, "top_n": top_n,
        "weights": weights.to_dict(), "mask_padded_frames": config.mask_padded_frames,
        "index": str(Path(args.index).resolve()), "model_id": model.identity.model_id,
        "checkpoint_sha256": model.identity.checkpoint_sha256, "num_queries": len(queries),
        "seconds": round(seconds, 3), "queries_per_second": round(len(queries) / seconds, 3)})
    print(f"{mode_name}: ranked {len(queries)} queries ({len(queries) / seconds:.1f}/s), "
          f"top {top_n} each -> {args.output}")
    return 0
