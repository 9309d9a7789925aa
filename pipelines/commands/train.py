"""`eercf train`: train or fine-tune an EERCF model with the method's losses (method §7).

Inputs: either a synthetic corpus directory (`--corpus`, from `eercf synth`: its train manifest and
captions) or a video manifest (`--manifest`, TSV/CSV/JSONL with video_id, uri) plus a captions file
(`--captions`, JSONL {"video_id", "text"[, "split"]} or TSV video_id<TAB>text). Videos are decoded
once (method §2.1 sampling, early resize to the model's input size) in worker processes and held in
memory; a video that fails to decode is skipped with a warning (its captions too).

Initialisation (`--model`): an open_clip architecture name, random weights (tiny configs:
`eercf-tiny`, `eercf-small`) or with `--pretrained` (an open_clip tag such as `openai`, or a
local open_clip file); or a checkpoint path: the official EERCF `pytorch_model.bin` or a project
checkpoint (continue training).

Outputs in `--output`: `model.pt` (a project checkpoint, `ec.load_model` reads it), `train_state.pt`
(full state for `--resume`), `train_log.jsonl` (loss terms per step), `train_summary.json`.
"""
from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import logging
import time
from pathlib import Path

import torch

import eercf_core as ec
from eercf_core.config import ScoreConfig
from eercf_core.files import paths
from eercf_core.files.atomic import download_tree, upload_tree, write_json
from eercf_core.files.output_check import check_writable_dir
from eercf_core.training.data import (
    decode_all,
    load_model_for_training,
    read_captions,
    read_groups,
    read_manifest,
    training_pairs,
)
from eercf_core.training.losses import LossWeights
from eercf_core.training.trainer import STATE_FILE, TrainConfig, Trainer
from pipelines.flags import (
    DefaultsHelpFormatter,
    add_aliased,
    add_device,
    add_model_flags,
    add_num_frames,
    add_output,
    add_workers,
    check_num_frames,
    command_parser,
    contrastive_batch,
    non_negative_float,
    non_negative_int,
    parse_args,
    positive_float,
    positive_int,
)

log = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    p = command_parser("train", __doc__, formatter_class=DefaultsHelpFormatter)
    src = p.add_argument_group("data")
    src.add_argument("--corpus", help="synthetic corpus directory from `eercf synth` (uses its "
                                      "train split)")
    add_aliased(src, "--manifest", ("--videos",),
                help="video manifest: TSV/CSV (video_id, uri columns) or JSONL")
    src.add_argument("--captions",
                     help="captions: JSONL {video_id, text[, split]} or TSV video_id<TAB>text")
    src.add_argument("--split", default="train",
                     help="caption split to use when captions carry one")
    add_workers(src, 2, "decoder processes")
    m = p.add_argument_group("model")
    add_model_flags(m, default="eercf-tiny", random_init=False,
                    help="open_clip architecture name (random weights unless --pretrained), or a "
                         "checkpoint file (official EERCF / project)")
    add_num_frames(m)
    add_device(m, "training")
    o = p.add_argument_group("optimisation (defaults: the official values, method §7.2)")
    o.add_argument("--steps", type=positive_int, default=None,
                   help="optimiser steps (default: from --epochs)")
    o.add_argument("--epochs", type=positive_float, default=5.0,
                   help="passes over the caption pairs")
    o.add_argument("--batch-size", type=contrastive_batch, default=64)
    o.add_argument("--lr", type=positive_float, default=1e-4,
                   help="lr of the new modules (head, W_g, W_f)")
    o.add_argument("--coef-lr", type=positive_float, default=1e-3, help="CLIP lr = lr x coef-lr")
    o.add_argument("--clip-lr", type=non_negative_float, default=None,
                   help="explicit CLIP lr (overrides --coef-lr)")
    o.add_argument("--weight-decay", type=non_negative_float, default=0.2)
    o.add_argument("--warmup-proportion", type=non_negative_float, default=0.1)
    o.add_argument("--grad-clip", type=non_negative_float, default=1.0)
    o.add_argument("--train-embeddings", action="store_true",
                   help="also train the embeddings the official code freezes (method §7.3)")
    o.add_argument("--group-batches", action="store_true",
                   help="batches of whole sibling groups (needs --corpus: videos.jsonl groups), "
                        "one caption per video, so each video meets its hard negatives")
    o.add_argument("--no-amp", action="store_true", help="disable mixed precision on CUDA")
    o.add_argument("--seed", type=int, default=42)
    w = p.add_argument_group("loss weights (defaults: official, method §7.1)")
    for field, value in LossWeights().to_dict().items():
        w.add_argument(f"--{field.replace('_', '-')}-weight" if not field.startswith("alpha")
                       else f"--{field}", dest=f"loss_{field}", type=float, default=value)
    r = p.add_argument_group("output")
    add_output(r, help="output directory")
    r.add_argument("--checkpoint-every", type=non_negative_int, default=200,
                   help="steps between state checkpoints")
    r.add_argument("--resume", action="store_true",
                   help=f"continue from <output>/{STATE_FILE} if present")
    r.add_argument("--log-every", type=positive_int, default=20)
    r.add_argument("--threads", type=positive_int, default=None,
                   help="torch CPU threads (default: all cores)")
    return p


# ---------------------------------------------------------------------------- job
def _staging(output: str, resume: bool) -> Path:
    """The local folder training writes into: `output` itself when local; for a URL a folder
    in the local cache (`<cache>/train/<hash of the URL>`, kept between runs so `--resume`
    continues on this machine), first filled from `output` with --resume when the cache has no
    state yet. Its files are uploaded to the URL when training ends (model.pt and
    train_summary.json last); periodic checkpoints stay local until then."""
    local = paths.local_path(output)
    if local is not None:
        folder = Path(local)
        folder.mkdir(parents=True, exist_ok=True)
        return folder
    check_writable_dir(output)  # the bucket exists (never created) and takes files
    key = hashlib.sha256(output.encode()).hexdigest()[:16]
    folder = Path(paths.cache_dir()) / "train" / key
    folder.mkdir(parents=True, exist_ok=True)
    if resume and not (folder / STATE_FILE).exists():
        with contextlib.suppress(FileNotFoundError):  # nothing to resume from: a fresh run
            download_tree(output, folder)
    log.info("train: writing into %s, uploaded to %s at the end", folder, output)
    return folder


def run(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parse_args(parser, argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    videos: str
    captions: str
    if args.corpus:
        corpus = Path(paths.require_local(args.corpus, "--corpus is an `eercf synth` folder; for "
                                          "files in a bucket give --manifest and --captions"))
        corpus_files = corpus / f"{args.split}_manifest.tsv", corpus / "captions.jsonl"
        for path in corpus_files:
            if not path.exists():
                raise FileNotFoundError(f"{path}: not found; is {corpus} an `eercf synth` corpus?")
        videos, captions = str(corpus_files[0]), str(corpus_files[1])
    elif args.manifest and args.captions:
        videos, captions = args.manifest, args.captions
    else:
        parser.error("give --corpus DIR, or --manifest FILE and --captions FILE")
    out = _staging(args.output, args.resume)
    start = time.perf_counter()

    model = load_model_for_training(args.model, args.pretrained, args.num_frames or ec.NUM_FRAMES,
                                    args.seed, args.device)
    check_num_frames(parser, args.num_frames, args.model, model.num_frames)
    caption_pairs = read_captions(captions, args.split)
    manifest = read_manifest(videos)
    wanted = {v: manifest[v] for v in dict.fromkeys(v for v, _ in caption_pairs) if v in manifest}
    video_ids, frames, mask = decode_all(wanted, model.image_size, model.num_frames,
                                         args.workers)
    if args.group_batches and not args.corpus:
        raise SystemExit("eercf train: --group-batches needs --corpus (its videos.jsonl has the "
                         "groups)")
    groups = read_groups(corpus) if args.group_batches else None
    data = training_pairs(model, video_ids, frames, mask, caption_pairs, groups)
    decode_seconds = time.perf_counter() - start

    weights = LossWeights(**{k[len("loss_"):]: v for k, v in vars(args).items()
                             if k.startswith("loss_")})
    steps = args.steps or max(1, int(args.epochs * (data.num_pairs // args.batch_size)))
    config = TrainConfig(
        steps=steps, batch_size=args.batch_size, lr=args.lr, coef_lr=args.coef_lr,
        clip_lr=args.clip_lr, weight_decay=args.weight_decay,
        warmup_proportion=args.warmup_proportion, grad_clip=args.grad_clip,
        freeze_embeddings=not args.train_embeddings, amp=not args.no_amp, seed=args.seed,
        group_batches=args.group_batches,
        log_every=args.log_every, checkpoint_every=args.checkpoint_every, loss_weights=weights,
        score_config=ScoreConfig())
    log.info("train: %d videos, %d caption pairs, %d steps of %d on %s "
             "(CLIP lr %.1e, head lr %.1e)",
             len(video_ids), data.num_pairs, steps, args.batch_size, model.device,
             config.effective_clip_lr, config.lr)
    trainer = Trainer(model, data, config, out_dir=out)
    if args.resume and (out / STATE_FILE).exists():
        trainer.load_state(out / STATE_FILE)

    log_path = out / "train_log.jsonl"
    log_file = log_path.open("a" if args.resume else "w")

    def write_log(_trainer: Trainer, terms: dict[str, float]) -> None:
        log_file.write(json.dumps({"step": _trainer.step, **terms}) + "\n")

    train_start = time.perf_counter()
    try:
        trainer.train(on_step=write_log)
    finally:
        log_file.close()
    train_seconds = time.perf_counter() - train_start
    sha = ec.save_model(model, str(out / "model.pt"), extra={"train_config": {
        k: v for k, v in config.to_dict().items()
        if isinstance(v, (int, float, str, bool, type(None)))},
        "loss_weights": weights.to_dict(), "steps": trainer.step})
    last = trainer.history[-1] if trainer.history else {}
    summary = {"model": paths.join(args.output, "model.pt") if paths.is_url(args.output)
               else str(out / "model.pt"), "checkpoint_sha256": sha,
               "model_id": model.identity.model_id, "videos": len(video_ids),
               "caption_pairs": data.num_pairs, "steps": trainer.step,
               "final_loss": last.get("loss"), "decode_seconds": round(decode_seconds, 2),
               "train_seconds": round(train_seconds, 2)}
    write_json(out / "train_summary.json", summary)
    if paths.is_url(args.output):
        upload_tree(out, args.output, last=("model.pt", "train_summary.json"))
        log.info("train: uploaded %s to %s", out, args.output)
    log.info("train: done: %s", summary)
    return 0
