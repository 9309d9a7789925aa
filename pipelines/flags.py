"""Flag checking shared by the job CLIs: range-checked argparse types and the Beam-flag filter.

Range checks run while argparse parses, so a bad value fails before any work with argparse's
usage line, `argument --batch-size: must be >= 1, got 0`, and exit 2. `check_beam_flags` refuses
a flag that is neither the job's own nor a Beam pipeline option (a misspelt `--shard-sise 8` would
otherwise be dropped by Beam with a log line, and the job would run with the default).
"""
from __future__ import annotations

import argparse
import difflib
import math
from typing import Callable


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


def _beam_parser() -> argparse.ArgumentParser:
    """An argparse parser that knows every registered Beam pipeline option (all runners)."""
    from apache_beam.options.pipeline_options import (
        PipelineOptions,
        _BeamArgumentParser,
    )

    try:  # registers --dask_* (DaskRunnerOptions); absent when dask is not installed
        import apache_beam.runners.dask.dask_runner  # noqa: F401
    except ImportError:
        pass
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


def add_model_flags(parser: argparse.ArgumentParser, default: str | None = None) -> None:
    """The model flags every job shares (eercf_core.model_spec): --model (required when no
    default), --pretrained, --random-init, --head, --seed. One set of flags, one meaning."""
    from eercf_core.model_spec import HEADS

    parser.add_argument("--model", default=default, required=default is None,
                        help="checkpoint path/URL (official EERCF or eercf train), or an open_clip "
                             "name with --pretrained or --random-init"
                             + (f" (default {default})" if default else ""))
    parser.add_argument("--pretrained", default=None,
                        help="open_clip pretrained tag (e.g. openai) or local open_clip weights")
    parser.add_argument("--random-init", action="store_true",
                        help="seeded random weights for a model name (tests and demos only: "
                             "useless for retrieval); the same name, --head and --seed give the "
                             "same model in every job")
    parser.add_argument("--head", choices=HEADS, default=None,
                        help="head of a --random-init model (default eercf)")
    parser.add_argument("--seed", type=int, default=0, help="seed of --random-init models")


def model_spec(args: argparse.Namespace, num_frames: int | None = None):
    """The ModelSpec of parsed model flags (see add_model_flags) plus --device."""
    from eercf_core.model_spec import ModelSpec

    extra = {} if num_frames is None else {"num_frames": num_frames}
    return ModelSpec(args.model, args.pretrained, args.random_init, args.head, args.seed,
                     args.device, **extra)
