"""`eercf search`: one-off text search of an index, results as a terminal table (or a gallery).

    eercf search --index out/index --model out/model.pt "a dog catches a frisbee" "a red car"
    eercf search --index out/index --model out/model.pt --html search_report/ "a dog ..."
    (--html DIR and --output DIR are the same flag)

Ranks with the query job's two-stage path (`eercf_core.index.two_stage`: FAISS recall of k by
S_V, rerank from the fine store), so a text gets the order `eercf query` would write. Per text it
prints rank, video id, rerank score, coarse score and the video's rank in the coarse order;
`--html DIR` (or `--output DIR`) also writes the `eercf report` gallery for the texts.
"""
from __future__ import annotations

import argparse
import logging

import eercf_core as ec
from eercf_core.errors import UserInputError
from eercf_core.files.output_check import check_writable_dir
from eercf_core.files.text_formats import RankedRow, coarse_ranks
from eercf_core.index import open_index, two_stage
from eercf_core.index.directory import IndexDirectory
from eercf_core.model.network import EercfModel
from eercf_core.model.spec import load_model_spec
from eercf_core.report import QueryResults, write_report
from pipelines.flags import (
    add_device,
    add_model_flags,
    add_output,
    add_rerank_flags,
    command_parser,
    model_spec,
    parse_args,
    positive_int,
    score_config,
)

log = logging.getLogger(__name__)


def search(index: IndexDirectory, model: EercfModel, texts: list[str], top_n: int, recall_k: int,
           weights: ec.RerankWeights, config: ec.ScoreConfig, method: str = "grouped"
           ) -> list[QueryResults]:
    """Rank `texts` two-stage; each result lists max(k, top_n) videos (top_n shown later)."""
    params = model.score_params.detach().to("cpu")
    text = model.encode_text(texts).float().cpu()
    depth = min(max(recall_k, top_n), len(index.video_ids))
    ranking = two_stage(index, text, params, recall_k, depth, weights, config, method)
    results = []
    for number, (query, ids, scores, coarse) in enumerate(zip(
            texts, ranking.indices.tolist(), ranking.scores.tolist(),
            ranking.coarse_scores.tolist()), start=1):
        query_id = f"s{number}"
        rows = [RankedRow(query_id, rank, index.video_ids[i], s, c)
                for rank, (i, s, c) in enumerate(zip(ids, scores, coarse), start=1)]
        results.append(QueryResults(query_id, query, rows))
    return results


def format_table(result: QueryResults, top_n: int) -> str:
    """One text's results as an aligned plain-text table."""
    coarse_rank = coarse_ranks(result.rows)
    shown = result.rows[:top_n]
    width = max([len("video_id"), *(len(r.video_id) for r in shown)])
    lines = [f"{result.query_id}: {result.text!r}",
             (f"  {'rank':>4}  {'video_id':<{width}}  {'score':>9}  {'coarse':>9}  "
              f"{'coarse rank':>11}")]
    lines += [f"  {r.rank:>4}  {r.video_id:<{width}}  {r.score:>9.3f}  {r.coarse_score:>9.3f}  "
              f"{coarse_rank[r.video_id]:>11}" for r in shown]
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = command_parser("search", __doc__)
    parser.add_argument("texts", nargs="+", help="one or more search texts")
    parser.add_argument("--index", required=True, help="index directory from build-index")
    add_model_flags(parser)  # the model that extracted the features, given as to extract
    parser.add_argument("--top-n", type=positive_int, default=10, help="results shown per text")
    add_rerank_flags(parser)
    add_device(parser, "text encoding")
    add_output(parser, required=False, metavar="DIR",
               help="also write the result gallery (index.html + assets) to DIR")
    parser.add_argument("--html", dest="output", metavar="DIR", help="the same as --output")
    return parser


def run(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parse_args(parser, argv)
    texts = [" ".join(t.split()) for t in args.texts]
    if not all(texts):
        parser.error("search texts must not be empty")

    if args.output:
        check_writable_dir(args.output)
    index = open_index(args.index, args.nprobe)
    model = load_model_spec(model_spec(args, index.dims.num_frames))
    index.check_model(model.identity.model_id, model.identity.checkpoint_sha256)
    if model.dims != index.dims:
        raise UserInputError(f"model dims {model.dims} differ from the index dims {index.dims}")
    config = score_config(args)
    results = search(index, model, texts, args.top_n, args.recall_k, args.weights,
                     config, args.rerank_method)
    print("\n\n".join(format_table(r, args.top_n) for r in results))
    if args.output:
        page = write_report(results, index, args.output, model, args.top_n,
                            recall_k=args.recall_k, title="eercf search", config=config)
        print(f"\ngallery: {page}")
    return 0
