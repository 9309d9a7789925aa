"""`eercf evaluate`: ranked TSV + ground truth -> t2v and v2t R@1/5/10, MdR, MnR (method §8.4).

Writes metrics.json, metrics.md and recall_at_k.png; with `--sweep` (ranked files made with
different --recall-k) also r1_vs_k.png, R@1 against k (the paper's Figure 3). What is computed
(reranked and coarse orders, when video-to-text is available and its two protocols, the
streaming reader): eercf_core.evaluation.ranked; definitions, tie and multi-ground-truth rules:
eercf_core.evaluation.metrics.
"""
from __future__ import annotations

import argparse

from eercf_core.errors import UserInputError
from eercf_core.evaluation.ranked import evaluate, markdown_table
from eercf_core.files import paths
from eercf_core.files.atomic import output_directory, write_json, write_text
from eercf_core.files.output_check import check_writable_dir
from pipelines.flags import add_output, command_parser, parse_args


def build_parser() -> argparse.ArgumentParser:
    parser = command_parser("evaluate", __doc__)
    parser.add_argument("--ranked", required=True, help="ranked TSV from eercf query")
    parser.add_argument("--ground-truth", required=True, help="TSV query_id<TAB>video_id")
    add_output(parser, help="directory where metrics and plots go")
    parser.add_argument("--index", default=None,
                        help="index directory to check ground-truth video ids against "
                             "(default: the one recorded beside the ranked file)")
    parser.add_argument("--sweep", nargs="*", default=[],
                        help="ranked TSVs of the same queries at other --recall-k values")
    parser.add_argument("--no-plots", action="store_true")
    return parser


def run(argv: list[str] | None = None) -> int:
    args = parse_args(build_parser(), argv)

    check_writable_dir(args.output, "--output")
    result = evaluate(args.ranked, args.ground_truth, args.index)
    sweep = []
    for path in args.sweep:
        item = evaluate(path, args.ground_truth, args.index)
        if item["recall_k"] is None:
            raise UserInputError(f"{path}: no {path}.meta.json with recall_k; sweep files must "
                                 "come from eercf query")
        sweep.append(item)
    sweep.sort(key=lambda s: s["recall_k"])
    payload = {k: v for k, v in result.items() if not k.endswith("_ranks")}
    payload["sweep"] = [{"ranked": s["ranked"], "recall_k": s["recall_k"],
                         "reranked": s["reranked"], "coarse": s["coarse"]} for s in sweep]
    table = markdown_table(result, sweep)
    # Written locally (matplotlib takes file names) and uploaded when --output is a URL;
    # metrics.json last: its presence marks a finished evaluation.
    with output_directory(args.output, last=("metrics.json",)) as out:
        if not args.no_plots:
            from eercf_core.evaluation import plots

            written = [plots.recall_curves(result, out / "recall_at_k.png")]
            if sweep:
                written.append(plots.r1_vs_k(sweep, result, out / "r1_vs_k.png"))
            payload["plots"] = [
                str(p) if paths.is_local(args.output) else paths.join(args.output, p.name)
                for p in written]
        write_text(out / "metrics.md", table)
        write_json(out / "metrics.json", payload)
    print(table, end="")
    return 0
