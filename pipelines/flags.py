"""Flags shared by every job: `--output` for a job's output, `--model` (and the other model
flags) for a model, range-checked numbers, and the Beam-flag filter of the extract job.

Older spellings (`--out`, `--output-dir`, `--init`, `--arch`) stay accepted as hidden aliases of
the same option for a release. Parse with `parse_args`, which enforces a required aliased flag.
Range checks run while argparse parses, so a bad value fails before any work with argparse's
usage line, `argument --batch-size: must be >= 1, got 0`, and exit 2. `check_beam_flags` refuses
a flag that is neither the job's own nor a Beam pipeline option (a misspelt `--shard-sise 8` would
otherwise be dropped by Beam with a log line, and the job would run with the default).
"""
from __future__ import annotations

import argparse
import contextlib
import difflib
import math
from collections.abc import Callable, Sequence
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
    parser.add_argument("--num-frames", type=positive_int, default=None,
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


def _number(kind: type, minimum: float, inclusive: bool) -> Callable[[str], float]:
    relation = ">=" if inclusive else ">"

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            expected = "an integer" if kind is int else "a number"
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
        if not math.isfinite(value) or value < minimum or (value == minimum and not inclusive):
            raise argparse.ArgumentTypeError(f"must be {relation} {minimum:g}, got {text}")
        return value

    parse.__name__ = f"{kind.__name__} {relation} {minimum:g}"  # argparse names it in errors
    return parse


positive_int = _number(int, 1, inclusive=True)  # >= 1
non_negative_int = _number(int, 0, inclusive=True)  # >= 0
positive_float = _number(float, 0.0, inclusive=False)  # > 0
non_negative_float = _number(float, 0.0, inclusive=True)  # >= 0
contrastive_batch = _number(int, 2, inclusive=True)  # >= 2: a contrastive loss needs negatives


def device_name(text: str) -> str:
    """argparse type of `--device`: auto, cpu, cuda, cuda:N (eercf_core.model.device)."""
    from eercf_core.model.device import check_device_name

    try:
        return check_device_name(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _beam_parser() -> argparse.ArgumentParser:
    """An argparse parser that knows every registered Beam pipeline option (all runners)."""
    from apache_beam.options.pipeline_options import (
        PipelineOptions,
        _BeamArgumentParser,
    )

    with contextlib.suppress(ImportError):  # registers --dask_* (absent without dask)
        import apache_beam.runners.dask.dask_runner  # noqa: F401
    parser = _BeamArgumentParser(allow_abbrev=False)
    for cls in {str(c): c for c in PipelineOptions.__subclasses__()}.values():
        cls._add_argparse_args(parser)  # what PipelineOptions.get_all_options does
    return parser


def _flag_names(parser: argparse.ArgumentParser) -> list[str]:
    return [s for action in parser._actions for s in action.option_strings if s.startswith("--")]


def check_beam_flags(parser: argparse.ArgumentParser, beam_args: list[str]) -> None:
    """Exit 2 via `parser.error` naming each flag that is neither the job's nor Beam's, with the
    closest known spellings. Values left over without a flag are refused too."""
    beam = _beam_parser()
    _, unknown = beam.parse_known_args(beam_args)
    if not unknown:
        return
    known = _flag_names(parser) + _flag_names(beam)
    problems, i = [], 0
    while i < len(unknown):
        arg = unknown[i]
        i += 1
        if not arg.startswith("-"):
            problems.append(f"unexpected argument {arg!r}")
            continue
        name = arg.split("=", 1)[0]
        if "=" not in arg and i < len(unknown) and not unknown[i].startswith("-"):
            i += 1  # its value
        close = difflib.get_close_matches(name, known, n=2, cutoff=0.75)
        hint = f"; did you mean {' or '.join(close)}?" if close else ""
        problems.append(f"unknown flag {name} (not a flag of {parser.prog} and not a Beam "
                        f"pipeline option){hint}")
    parser.error("; ".join(problems))


def add_model_flags(parser: argparse.ArgumentParser | Any, default: str | None = None,
                    required: bool | None = None, help: str | None = None) -> None:
    """The model flags of every job that loads a model (eercf_core.model.spec): --model
    (required when no default, unless `required` says otherwise), --pretrained, --random-init,
    --head, --seed. One set of flags, one meaning: the same values build the same model in
    extract, query, search and report."""
    from eercf_core.model.spec import HEADS

    add_model(parser, default=default, required=default is None if required is None else required,
              help=help or ("checkpoint path/URL (official EERCF or eercf train), or an open_clip "
                            "name with --pretrained or --random-init"
                            + (f" (default {default})" if default else "")))
    parser.add_argument("--pretrained", default=None,
                        help="open_clip pretrained tag (e.g. openai) or local open_clip weights")
    parser.add_argument("--random-init", action="store_true",
                        help="seeded random weights for a model name (tests and demos only: "
                             "useless for retrieval); recorded in summary.json")
    parser.add_argument("--head", choices=HEADS, default=None,
                        help="head of a --random-init model (default eercf)")
    parser.add_argument("--seed", type=int, default=0, help="seed of --random-init models")


def model_spec(args: argparse.Namespace, num_frames: int | None = None):
    """The ModelSpec of parsed model flags (see add_model_flags) plus --device."""
    from eercf_core.model.spec import ModelSpec

    extra = {} if num_frames is None else {"num_frames": num_frames}
    return ModelSpec(args.model, args.pretrained, args.random_init, args.head, args.seed,
                     args.device, **extra)
