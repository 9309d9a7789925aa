"""`eercf synth`: generate the synthetic fine-grained video-caption benchmark
(eercf_core.datasets.synthetic).

Writes real encoded videos, captions (JSONL), per-split manifests, test queries and ground truth
into `--output`; deterministic from `--seed`; rerunning keeps finished videos.
"""
from __future__ import annotations

import argparse
import json

from eercf_core.datasets.synthetic import SynthConfig, generate_corpus
from eercf_core.files import paths
from eercf_core.files.atomic import output_directory
from eercf_core.files.output_check import check_writable_dir
from pipelines.flags import (
    DefaultsHelpFormatter,
    add_output,
    add_workers,
    command_parser,
    parse_args,
)


def build_parser() -> argparse.ArgumentParser:
    d = SynthConfig()
    p = command_parser("synth", __doc__,
                       formatter_class=DefaultsHelpFormatter)
    add_output(p, help="output directory")
    p.add_argument("--num-train", type=int, default=d.num_train, help="training videos")
    p.add_argument("--num-test", type=int, default=d.num_test, help="test videos (one query each)")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--events-per-video", type=int, default=d.events_per_video,
                   help="brief events per video = sibling-group size (Latin square)")
    p.add_argument("--seconds", type=int, default=d.seconds,
                   help="video length (= T frames at 1 fps)")
    p.add_argument("--fps", type=float, default=d.fps, help="frames written per second")
    p.add_argument("--image-size", type=int, default=d.image_size)
    p.add_argument("--templates", type=int, default=d.templates, help="caption templates used")
    p.add_argument("--object-cells", type=int, default=d.object_cells,
                   help="event object box in 16 px cells (4: most of a 64 px frame; 1: one patch)")
    p.add_argument("--no-short-captions", action="store_true",
                   help="no event-only training captions")
    p.add_argument("--suffix", default=d.suffix, choices=(".mp4", ".webm", ".avi", ".mkv"))
    add_workers(p, 2, "video encoding processes")
    return p


def run(argv: list[str] | None = None) -> int:
    args = parse_args(build_parser(), argv)
    config = SynthConfig(num_train=args.num_train, num_test=args.num_test, seed=args.seed,
                         events_per_video=args.events_per_video, seconds=args.seconds,
                         fps=args.fps, image_size=args.image_size, templates=args.templates,
                         object_cells=args.object_cells, short_captions=not args.no_short_captions,
                         suffix=args.suffix)
    if paths.is_url(args.output):  # rendered locally (video encoders take file names), uploaded
        check_writable_dir(args.output)
        with output_directory(args.output, last=("corpus.json",)) as local:
            summary = generate_corpus(local, config, workers=args.workers, uri_root=args.output)
    else:
        summary = generate_corpus(args.output, config, workers=args.workers)
    print(json.dumps({k: summary[k] for k in ("num_videos", "num_train", "num_test",
                                              "num_captions", "num_queries")}))
    return 0
