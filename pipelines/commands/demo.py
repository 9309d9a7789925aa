"""`eercf demo` (`make demo`): the whole method end to end, offline, with one table at the end.

Default (no weights needed): generate a synthetic fine-grained corpus (`eercf synth`), train a tiny
model from scratch on its train split (`eercf train`), extract features of the test split
(`eercf extract`, Beam), build the index (`eercf build-index`), rank the test queries three ways
(`eercf query`: coarse recall only, two-stage recall + rerank, exhaustive fine scoring), evaluate
each (`eercf evaluate`) and print R@1/5/10, MdR and query time side by side, plus plots; last,
the HTML result gallery of the two-stage ranking (`eercf report`, `<out>/report/index.html`).

With `--pretrained openai` (or a checkpoint path) and `--videos DIR`: no synthesis or training;
the same extract/index/query/evaluate chain runs zero-shot on DIR, whose `captions.jsonl` lines
are {"file": <name in DIR>, "captions": [..]} (as ../shared/videos/captioned) or
{"video_id"/"file": .., "text": ..}.
"""
from __future__ import annotations

import argparse
import json
import logging
import shutil
import time
from collections.abc import Callable
from pathlib import Path

from eercf_core.config import RECALL_K
from eercf_core.files import paths
from eercf_core.files.atomic import write_json, write_text
from eercf_core.files.text_formats import FormatError, read_jsonl, read_ranked_meta
from eercf_core.index import read_manifest
from pipelines.flags import (
    DefaultsHelpFormatter,
    add_model,
    add_output,
    add_workers,
    command_parser,
    parse_args,
)

log = logging.getLogger(__name__)

MODES: tuple[tuple[str, str, list[str]], ...] = (
    ("recall-only", "coarse recall only", ["--recall-only"]),
    ("two-stage", "two-stage (recall k + rerank)", []),
    ("exhaustive", "exhaustive fine scoring", ["--exhaustive"]))
SWEEP_K = (1, 2, 5, 10, 20, 50, 100)


def build_parser() -> argparse.ArgumentParser:
    p = command_parser("demo", __doc__,
                       formatter_class=DefaultsHelpFormatter)
    add_output(p, required=False, default="demo_out",
               help="output directory (stage outputs are redone)")
    p.add_argument("--pretrained", default=None,
                   help="zero-shot on --videos instead: open_clip tag (openai) or a checkpoint "
                        "path")
    p.add_argument("--videos", default=None, help="folder with videos and captions.jsonl "
                                                  "(zero-shot)")
    add_model(p, default="eercf-tiny", help="architecture trained from scratch / zero-shot")
    p.add_argument("--num-train", type=int, default=1200)
    p.add_argument("--num-test", type=int, default=240)
    p.add_argument("--seed", type=int, default=0, help="corpus seed")
    p.add_argument("--steps", type=int, default=1400)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--random-batches", action="store_true",
                   help="random caption batches instead of whole sibling groups per batch")
    p.add_argument("--train-seed", type=int, default=0,
                   help="model init and batch order seed (seeds 0, 1, 42 all learn the binding in "
                        "1400 steps: README)")
    p.add_argument("--lr", type=float, default=1e-3, help="head lr (from-scratch demo value)")
    p.add_argument("--clip-lr", type=float, default=1e-3, help="CLIP lr (from scratch: a real lr)")
    p.add_argument("--recall-k", type=int, default=RECALL_K)
    add_workers(p, 2, "video encoding and decoding processes of every stage")
    p.add_argument("--no-sweep", action="store_true", help="skip the R@1-vs-k sweep plot")
    return p


def _stage(name: str, timings: dict, fn: Callable[..., int | None], *args: object) -> None:
    log.info("demo: === %s ===", name)
    start = time.perf_counter()
    code = fn(*args)
    timings[name] = round(time.perf_counter() - start, 1)
    if code not in (0, None):
        raise RuntimeError(f"demo: stage {name} failed with exit code {code}")


def zero_shot_inputs(videos: Path, out: Path) -> tuple[Path, Path, Path]:
    """Manifest, queries and ground truth for a captioned folder (one query per caption)."""
    captions = videos / "captions.jsonl"
    if not captions.is_file():
        raise FileNotFoundError(f"{captions}: a zero-shot demo folder needs a captions.jsonl")
    manifest, queries, truth = ["video_id\turi"], ["query_id\ttext"], ["query_id\tvideo_id"]
    seen: set[str] = set()
    for n, row in read_jsonl(str(captions)):
        name = row.get("file") or row.get("video_id")
        texts = row.get("captions") or ([row["text"]] if row.get("text") else [])
        if not name or not texts:
            raise FormatError(str(captions), n, "needs a file (or video_id) and captions (or text)")
        path = (videos / name).resolve()
        if name not in seen:
            if not path.is_file():
                raise FormatError(str(captions), n, f"video {path} not found")
            manifest.append(f"{name}\t{path}")
            seen.add(name)
        for text in texts:
            qid = f"q{len(queries):05d}"
            queries.append(f"{qid}\t{' '.join(str(text).split())}")
            truth.append(f"{qid}\t{name}")
    out.mkdir(parents=True, exist_ok=True)
    paths = out / "manifest.tsv", out / "queries.tsv", out / "ground_truth.tsv"
    for path, lines in zip(paths, (manifest, queries, truth)):
        write_text(path, "\n".join(lines) + "\n")
    return paths


def format_table(rows: list[dict], num_queries: int, num_videos: int, recall_k: int) -> str:
    """The demo's one table (Markdown)."""
    lines = [(f"Text-to-video retrieval on {num_videos} test videos, {num_queries} queries "
              f"(chance R@1 = {100.0 / max(1, num_videos):.2f}), recall k = {recall_k}"), "",
             "| method | R@1 | R@5 | R@10 | MdR | MnR | query time (s) | ms/query |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        m = r["metrics"]
        lines.append(f"| {r['label']} | {m['R@1']:.1f} | {m['R@5']:.1f} | {m['R@10']:.1f} | "
                     f"{m['MdR']:.1f} | {m['MnR']:.1f} | {r['seconds']:.2f} | "
                     f"{1000 * r['seconds'] / max(1, num_queries):.2f} |")
    return "\n".join(lines) + "\n"


def run(argv: list[str] | None = None) -> int:
    args = parse_args(build_parser(), argv)
    from pipelines.commands import build_index, evaluate, extract, query, report, synth, train

    out = Path(paths.require_local(args.output, "the demo writes a local showcase folder; its "
                                   "jobs each take URLs when run on their own"))
    out.mkdir(parents=True, exist_ok=True)
    for stale in ("train", "features", "index", "ranked", "eval", "report"):
        shutil.rmtree(out / stale, ignore_errors=True)
    timings: dict[str, float] = {}
    start = time.perf_counter()

    if args.pretrained:
        if not args.videos:
            raise SystemExit("eercf demo: --pretrained needs --videos DIR (a captioned folder)")
        manifest, queries, truth = zero_shot_inputs(Path(args.videos), out / "inputs")
        model_args = (["--model", args.pretrained] if Path(args.pretrained).is_file()
                      else ["--model",
                            "ViT-B-32" if args.model.startswith("eercf-") else args.model,
                            "--pretrained", args.pretrained])
        extract_model = model_args
    else:
        corpus = out / "corpus"
        _stage("synth", timings, synth.run, [
            "--output", str(corpus), "--num-train", str(args.num_train), "--num-test",
            str(args.num_test), "--seed", str(args.seed), "--workers", str(args.workers)])
        _stage("train", timings, train.run, [
            "--corpus", str(corpus), "--output", str(out / "train"), "--model", args.model,
            "--steps", str(args.steps), "--batch-size", str(args.batch_size), "--lr", str(args.lr),
            "--clip-lr", str(args.clip_lr), "--workers", str(args.workers),
            "--seed", str(args.train_seed),
            "--checkpoint-every", "0", "--log-every", "50",
            *([] if args.random_batches else ["--group-batches"])])
        manifest, queries, truth = (corpus / "test_manifest.tsv", corpus / "test_queries.tsv",
                                    corpus / "test_ground_truth.tsv")
        model_args = ["--model", str(out / "train" / "model.pt")]
        extract_model = model_args

    _stage("extract", timings, extract.run, [
        "--input", str(manifest), "--output", str(out / "features"), *extract_model,
        "--workers", str(args.workers), "--batch-size", "32", "--progress-seconds", "30"])
    _stage("build-index", timings, build_index.run, [
        "--shards", str(out / "features"), "--output", str(out / "index")])
    (out / "ranked").mkdir(parents=True, exist_ok=True)
    rows = []
    for mode, label, flags in MODES:
        ranked = out / "ranked" / f"{mode}.tsv"
        _stage(f"query {mode}", timings, query.run, [
            "--index", str(out / "index"), "--queries", str(queries), "--output", str(ranked),
            *model_args, "--recall-k", str(args.recall_k), "--top-n", "0", *flags])
        meta = read_ranked_meta(str(ranked))
        _stage(f"evaluate {mode}", timings, evaluate.run, [
            "--ranked", str(ranked), "--ground-truth", str(truth),
            "--output", str(out / "eval" / mode), "--no-plots"])
        result = json.loads((out / "eval" / mode / "metrics.json").read_text())
        rows.append({"mode": mode, "label": label, "metrics": result["reranked"],
                     "seconds": meta["seconds"], "num_queries": meta["num_queries"]})
    sweep = []
    if not args.no_sweep:
        for k in SWEEP_K:
            ranked = out / "ranked" / f"two-stage-k{k}.tsv"
            query.run(["--index", str(out / "index"), "--queries", str(queries), "--output",
                       str(ranked), *model_args, "--recall-k", str(k), "--top-n", "0"])
            sweep.append(str(ranked))
    _stage("plots", timings, evaluate.run, [
        "--ranked", str(out / "ranked" / "two-stage.tsv"), "--ground-truth", str(truth),
        "--output", str(out / "eval" / "plots"), *(["--sweep", *sweep] if sweep else [])])

    _stage("report", timings, report.run, [
        "--ranked", str(out / "ranked" / "two-stage.tsv"), "--queries", str(queries),
        "--index", str(out / "index"), *model_args, "--ground-truth", str(truth),
        "--evaluation", str(out / "eval" / "plots"), "--output", str(out / "report"),
        "--title", f"eercf demo: two-stage ranking (recall k = {args.recall_k})"])
    page = out / "report" / "index.html"

    num_videos = int(read_manifest(out / "index")["num_videos"])
    table = format_table(rows, rows[0]["num_queries"], num_videos, args.recall_k)
    total = round(time.perf_counter() - start, 1)
    summary = {"table": rows, "timings_s": timings, "total_s": total, "num_videos": num_videos,
               "recall_k": args.recall_k, "report": str(page),
               "plots": sorted(str(p) for p in (out / "eval" / "plots").glob("*.png"))}
    write_json(out / "demo_summary.json", summary)
    write_text(out / "demo_table.md", table)
    print()
    print(table, end="")
    print(f"\nplots: {', '.join(summary['plots'])}")
    stages = ", ".join(f"{k} {v}" for k, v in timings.items())
    print(f"stage times (s): {stages}; total {total}")
    print(f"result gallery (open in a browser): {page.resolve()}")
    return 0
