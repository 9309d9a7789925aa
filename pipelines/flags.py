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
            raise argparse.ArgumentTypeError(f"expected {'an integer' if kind is int else 'a number'}"
                                             f", got {text!r}") from None
        if not math.isfinite(value) or value < minimum or (value == minimum and not inclusive):
            raise argparse.ArgumentTypeError(f"must be {relation} {minimum:g}, got {text}")
        return value

    parse.__name__ = f"{kind.__name__} {relation} {minimum:g}"  # argparse names it in errors
    return parse


positive_int = _number(int, 1, inclusive=True)  # >= 1
non_negative_int = _number(int, 0, inclusive=True)  # >= 0
positive_float = _number(float, 0.0, inclusive=False)  # > 0
non_negative_float = _number(float, 0.0, inclusive=True)  # >= 0


def _beam_parser() -> argparse.ArgumentParser:
    """An argparse parser that knows every registered Beam pipeline option (all runners)."""
    from apache_beam.options.pipeline_options import PipelineOptions, _BeamArgumentParser

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
        problems.append(f"unknown flag {name} (not a flag of {parser.prog} and not a Beam "
                        f"pipeline option){'; did you mean ' + ' or '.join(close) + '?' if close else ''}")
    parser.error("; ".join(problems))
