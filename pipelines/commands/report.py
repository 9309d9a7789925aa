"""`eercf report`: ranked results -> a static HTML result gallery a reviewer opens from disk.

    eercf report --ranked ranked.tsv --queries queries.tsv --index out/index --model model.pt \
        [--ground-truth gt.tsv] [--evaluation eval/] [--top-n 10] --output report/

Writes a folder `index.html` + `assets/` (no CDN, fonts or network); what it shows:
`eercf_core.report.gallery`.
"""
from __future__ import annotations

import argparse

import eercf_core as ec
from eercf_core.files.text_formats import read_ranked_meta
from eercf_core.index import open_index
from eercf_core.model.spec import load_model_spec
from eercf_core.report import load_results, write_report
from pipelines.flags import (
    add_device,
    add_model_flags,
    add_output,
    command_parser,
    model_spec,
    parse_args,
    positive_int,
)


def _recall_k_of(ranked_path: str) -> int | None:
    return read_ranked_meta(ranked_path).get("recall_k")


def build_parser() -> argparse.ArgumentParser:
    parser = command_parser("report", __doc__)
    parser.add_argument("--ranked", required=True, help="ranked TSV from eercf query")
    parser.add_argument("--queries", required=True, help="the query file that was ranked")
    parser.add_argument("--index", required=True, help="index directory the ranking used")
    add_output(parser, help="report folder to write (index.html)")
    add_model_flags(parser, required=False,
                    help="the model of the index, given as to extract: adds the frame the text "
                         "gate weighted most; without it that column is absent")
    add_device(parser, "text encoding")
    parser.add_argument("--ground-truth", default=None, help="TSV query_id<TAB>video_id")
    parser.add_argument("--evaluation", default=None,
                        help="the --output folder of `eercf evaluate`: metrics table and plots")
    parser.add_argument("--top-n", type=positive_int, default=10, help="results shown per query")
    parser.add_argument("--title", default=None, help="page title (default: the ranked file)")
    parser.add_argument("--no-frame-mask", action="store_true",
                        help="gate over padded frames too (as the query did with this flag)")
    return parser


def run(argv: list[str] | None = None) -> int:
    args = parse_args(build_parser(), argv)
    results = load_results(args.ranked, args.queries, args.ground_truth)
    index = open_index(args.index)
    model = (load_model_spec(model_spec(args, index.dims.num_frames)) if args.model else None)
    page = write_report(results, index, args.output, model, args.top_n, args.evaluation,
                        _recall_k_of(args.ranked), args.title or f"eercf results: {args.ranked}",
                        ec.ScoreConfig(mask_padded_frames=not args.no_frame_mask))
    print(f"report: {len(results)} queries -> {page}")
    return 0
