"""Flags shared by every job: `--output` for a job's output and `--model` for a model argument.

Older spellings (`--out`, `--output-dir`, `--init`, `--arch`) stay accepted as hidden aliases of
the same option for a release. Parse with `parse_args`, which enforces a required aliased flag.
"""
from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

from eercf_core.config import NUM_FRAMES

_REQUIRED = "_eercf_required_flags"


def add_aliased(parser: argparse.ArgumentParser | Any, flag: str, aliases: Sequence[str] = (),
                required: bool = False, **kwargs: Any) -> None:
    """Add `flag` (to a parser or an argument group) plus hidden `aliases` writing the same dest.

    `required` is checked by `parse_args` (argparse cannot require one of several spellings).
    """
    dest = flag.lstrip("-").replace("-", "_")
    parser.add_argument(flag, dest=dest, **kwargs)
    for alias in aliases:
        parser.add_argument(alias, dest=dest, help=argparse.SUPPRESS,
                            **{k: v for k, v in kwargs.items() if k not in ("help", "default")})
    if required:
        # Argument groups share their parser's namespace; remember on the group's container.
        container = getattr(parser, "_eercf_parser", parser)
        container.__dict__.setdefault(_REQUIRED, []).append((flag, dest))


def add_output(parser: argparse.ArgumentParser | Any, help: str,
               aliases: Sequence[str] = ("--out", "--output-dir"), required: bool = True,
               **kwargs: Any) -> None:
    """`--output` (hidden aliases `--out`, `--output-dir`)."""
    add_aliased(parser, "--output", aliases, required=required, help=help, **kwargs)


def add_model(parser: argparse.ArgumentParser | Any, help: str,
              aliases: Sequence[str] = ("--init", "--arch"), required: bool = False,
              **kwargs: Any) -> None:
    """`--model` (hidden aliases `--init`, `--arch`)."""
    add_aliased(parser, "--model", aliases, required=required, help=help, **kwargs)


def add_num_frames(parser: argparse.ArgumentParser | Any) -> None:
    """`--num-frames` (default None: follow the model's T; see `check_num_frames`)."""
    parser.add_argument("--num-frames", type=int, default=None,
                        help="frames per video T (default: the loaded model's T; a model built "
                             f"by name gets {NUM_FRAMES}); a checkpoint's T cannot be changed")


def check_num_frames(parser: argparse.ArgumentParser, requested: int | None, model_name: str,
                     model_frames: int) -> None:
    """A usage error when an explicit `--num-frames` differs from the model's T (its temporal
    head and W_f are sized for T), raised before any video is decoded."""
    if requested is not None and requested != model_frames:
        parser.error(f"--num-frames {requested}: the model {model_name} takes T={model_frames} "
                     f"frames per video (its temporal head and W_f are sized for T); drop "
                     f"--num-frames or pass --num-frames {model_frames}")


def group(parser: argparse.ArgumentParser, title: str) -> Any:
    """An argument group whose aliased required flags `parse_args` checks."""
    result = parser.add_argument_group(title)
    result._eercf_parser = parser  # type: ignore[attr-defined]
    return result


def parse_args(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> argparse.Namespace:
    """`parser.parse_args(argv)`, then a usage error for a missing required aliased flag."""
    args = parser.parse_args(argv)
    check_required(parser, args)
    return args


def check_required(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """A usage error (exit 2) naming a required aliased flag that was not given."""
    for flag, dest in getattr(parser, _REQUIRED, []):
        if getattr(args, dest) is None:
            parser.error(f"the following arguments are required: {flag}")
