"""`eercf import-dataset DATASET` (hidden alias: `eercf benchmark`): annotation files + videos ->
eercf's input files.

Per split, under `--output/<split>/`: `manifest.tsv` (for `eercf extract --input`), `captions.jsonl`
(for `eercf train --captions`), `queries.tsv` and `ground_truth.tsv` (for `eercf query` /
`eercf evaluate`), `missing_videos.txt`; and `--output/README.txt` (what was produced, split sizes
against the published ones, missing videos, the next commands) plus `benchmark.json`. Videos the
annotations name but the videos folder lacks are counted and listed, never fatal: they are left
out of the manifest, and their captions and queries are dropped (so evaluation covers the videos
present). Parsing of each format: eercf_core.datasets.
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

from eercf_core.datasets import LOADERS, Split, find_videos, load_benchmark
from eercf_core.files import paths
from eercf_core.files.atomic import write_json, write_text
from eercf_core.files.inputs import write_manifest
from eercf_core.files.output_check import check_writable_dir
from eercf_core.files.text_formats import write_captions, write_ground_truth, write_queries
from pipelines.flags import add_output, command_parser, parse_args

log = logging.getLogger(__name__)
MISSING_SHOWN = 20  # missing video ids listed in README.txt (all are in missing_videos.txt)


def _size_check(split: Split) -> str:
    """'1000 videos / 1000 queries (published 1,000 / 1,000: same)' or '... differs'."""
    line = f"{len(split.video_ids)} videos / {len(split.queries)} queries"
    if split.known is None:
        return line
    known = split.known
    published = f"{known.videos:,}" + (f" / {known.queries:,}" if known.queries else "")
    same = len(split.video_ids) == known.videos and known.queries in (None, len(split.queries))
    verdict = "same" if same else "differs: a subset or another version of the files"
    return f"{line} (published {published}, {known.source}: {verdict})"


def write_split(split: Split, found: dict[str, Path], missing: list[str], folder: str) -> dict:
    """Write the split's four files (present videos only) into `folder` (a local path or a URL)
    and return its summary."""
    queries = [q for q in split.queries if q.video_id in found]
    captions = [(v, t) for v, t in split.captions if v in found]
    write_manifest(paths.join(folder, "manifest.tsv"), ((v, str(found[v])) for v in split.video_ids
                                                        if v in found))
    write_captions(paths.join(folder, "captions.jsonl"), captions)
    write_queries(paths.join(folder, "queries.tsv"), ((q.query_id, q.text) for q in queries))
    write_ground_truth(paths.join(folder, "ground_truth.tsv"),
                       ((q.query_id, q.video_id) for q in queries))
    write_text(paths.join(folder, "missing_videos.txt"), [f"{v}\n" for v in missing])
    return {"split": split.name, "protocol": split.protocol, "annotation_files": split.files,
            "annotated_videos": len(split.video_ids), "annotated_queries": len(split.queries),
            "annotated_captions": len(split.captions),
            "published": None if split.known is None else vars(split.known),
            "size_check": _size_check(split), "videos_found": len(found),
            "videos_missing": len(missing), "queries": len(queries), "captions": len(captions),
            "ground_truth_rows": len(queries), "queries_dropped": len(split.queries) - len(queries),
            "empty_captions_dropped": split.dropped_empty}


def readme(dataset: str, annotations: Path, videos: Path, output: str, summaries: list[dict],
           missing: dict[str, list[str]], notes: list[str]) -> str:
    lines = [f"eercf import-dataset {dataset}", f"annotations: {annotations}", f"videos: {videos}",
    ""]
    for s in summaries:
        name = s["split"]
        lines += [f"split {name}: {s['protocol']}",
                  (f"  annotations ({', '.join(Path(f).name for f in s['annotation_files'])}): "
                   f"{s['size_check']}"),
                  f"  videos found {s['videos_found']}, missing {s['videos_missing']}"
                  + (f" (all in {name}/missing_videos.txt; their {s['queries_dropped']} queries "
                     "and captions are left out, so metrics cover the videos present)"
                     if s["videos_missing"] else ""),
                  (f"  {name}/manifest.tsv: {s['videos_found']} videos; {name}/captions.jsonl: "
                   f"{s['captions']} captions; {name}/queries.tsv: {s['queries']} queries; "
                   f"{name}/ground_truth.tsv: {s['ground_truth_rows']} rows")]
        if s["empty_captions_dropped"]:
            lines.append(f"  {s['empty_captions_dropped']} empty captions skipped")
        shown = missing[name][:MISSING_SHOWN]
        if shown:
            lines.append("  missing: " + ", ".join(shown)
                         + (" ..." if len(missing[name]) > len(shown) else ""))
        lines.append("")
    lines += [f"note: {n}" for n in notes]
    example = summaries[-1]["split"]
    split_dir = paths.join(output, example)
    lines += ["", "next (a model M; --top-n 0 lets evaluate also compute video-to-text):",
              (f"  eercf extract --input {split_dir}/manifest.tsv --output feats/{example} "
               "--model M"),
              f"  eercf build-index --shards feats/{example} --output index/{example}",
              (f"  eercf query --index index/{example} --model M --queries {split_dir}/queries.tsv "
               f"--top-n 0 --output ranked_{example}.tsv"),
              (f"  eercf evaluate --ranked ranked_{example}.tsv --ground-truth "
               f"{split_dir}/ground_truth.tsv --output eval_{example}"),
              ("  eercf train --manifest <train split>/manifest.tsv --captions <train split>/"
               "captions.jsonl --model M --output run")]
    return "\n".join(lines) + "\n"


def build_parser() -> argparse.ArgumentParser:
    parser = command_parser("import-dataset", __doc__)
    parser.add_argument("dataset", choices=sorted(LOADERS))
    parser.add_argument("--annotations", required=True, help="folder with the annotation files")
    parser.add_argument("--videos", required=True, help="folder with the video files")
    add_output(parser, help="folder to write the splits into")
    parser.add_argument("--splits", default=None,
                        help="comma-separated split names to write (default: all found)")
    return parser


def run(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parse_args(parser, argv)

    annotations, videos = Path(args.annotations).resolve(), Path(args.videos).resolve()
    output = paths.absolute(args.output)  # a local path or a URL
    check_writable_dir(output)
    benchmark = load_benchmark(args.dataset, annotations)
    splits = benchmark.splits
    if args.splits:
        wanted = [s.strip() for s in args.splits.split(",") if s.strip()]
        unknown = sorted(set(wanted) - {s.name for s in splits})
        if unknown:
            parser.error(f"--splits: {unknown} not among the splits found: "
                         f"{[s.name for s in splits]}")
        splits = [s for s in splits if s.name in wanted]
    summaries, missing = [], {}
    for split in splits:
        found, missing[split.name] = find_videos(split.video_ids, videos,
                                                 benchmark.video_file_names)
        if missing[split.name]:
            log.warning("%s %s: %d of %d annotated videos not found in %s (e.g. %r)", args.dataset,
                        split.name, len(missing[split.name]), len(split.video_ids), videos,
                        missing[split.name][0])
        summaries.append(write_split(split, found, missing[split.name],
                                     paths.join(output, split.name)))
        log.info("%s %s: wrote %d videos, %d queries", args.dataset, split.name,
                 summaries[-1]["videos_found"], summaries[-1]["queries"])
    write_json(paths.join(output, "benchmark.json"), {
        "dataset": args.dataset, "annotations": str(annotations), "videos": str(videos),
        "splits": summaries, "notes": benchmark.notes})
    text = readme(args.dataset, annotations, videos, output, summaries, missing, benchmark.notes)
    write_text(paths.join(output, "README.txt"), text)
    print(text, end="")
    return 0
