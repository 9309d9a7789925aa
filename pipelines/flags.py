"""The CLI vocabulary every `eercf` command shares: one parser factory, one spelling per flag.

- `command_parser(name, doc)`: `prog="eercf NAME"`, the description, and `-v/--verbose`,
  `-q/--quiet` (read by `pipelines.cli` before the command runs: `verbosity`, then
  `setup_logging`, eercf_core.logs, the one logging setup), and `--storage-options JSON`
  (fsspec options for URLs; see eercf_core.files.paths).
- `--output` for a job's output and `--model` (plus `--pretrained`, `--random-init`, `--head`,
  `--seed`) for a model; `--device` (one default: CUDA when available); `--workers` (processes
  a job starts: decoders, encoders); the rerank flags of query and search
  (`add_rerank_flags`); range-checked numbers; the Beam-flag filter of the extract job.
- Older spellings (`--out`, `--output-dir`, `--init`, `--arch`, `--decode-workers`) stay
  accepted as hidden aliases of the same option: they parse into that option but are not
  listed in `--help`, so argparse's own `required=True` covers every spelling.
- Range checks run while argparse parses, so a bad value fails before any work with argparse's
  usage line, `argument --batch-size: must be >= 1, got 0`, and exit 2. `check_beam_flags`
  refuses a flag that is neither the job's own nor a Beam pipeline option (a misspelt
  `--shard-sise 8` would otherwise be dropped by Beam with a log line, and the job would run
  with the default).
"""
from __future__ import annotations

import argparse
import contextlib
import difflib
import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from eercf_core.config import NUM_FRAMES
from eercf_core.logs import OWN_LOGGERS as OWN_LOGGERS  # re-exported: the vocabulary in one
from eercf_core.logs import setup_logging as setup_logging  # import (pipelines.cli, tests)

if TYPE_CHECKING:
    import eercf_core as ec
    from eercf_core.model.spec import ModelSpec


class DefaultsHelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """argparse's defaults formatter without the noise: "(default: X)" only where there is a
    value to show (not None, not False) and the help does not already state its default."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if action.default in (None, False) or "default" in text.lower():
            return text
        return super()._get_help_string(action)


def command_parser(name: str, doc: str | None, **kwargs: Any) -> argparse.ArgumentParser:
    """The parser of `eercf NAME`: its description is the first paragraph of `doc`; it has
    `-v/--verbose` and `-q/--quiet` like every command."""
    description = (doc or "").strip().split("\n\n")[0]
    parser = argparse.ArgumentParser(prog=f"eercf {name}", description=description, **kwargs)
    add_verbosity(parser)
    add_storage_options(parser)
    return parser


def add_storage_options(parser: argparse.ArgumentParser) -> None:
    """`--storage-options JSON`: fsspec options for every URL the job reads or writes, keyed
    by protocol (`{"s3": {"endpoint_url": "http://host:9000"}}`) or flat (every remote
    protocol); merged over the environment variable EERCF_STORAGE_OPTIONS (see
    eercf_core.files.paths). Applied by `parse_args` / `apply_storage_options`."""
    parser.add_argument("--storage-options", default=None, metavar="JSON",
                        help="fsspec storage options for URLs (s3://, gs://, az://, ...) as a "
                             "JSON object, keyed by protocol or flat; merged over the "
                             "EERCF_STORAGE_OPTIONS environment variable")


def apply_storage_options(args: argparse.Namespace) -> None:
    """Apply the parsed `--storage-options` (and EERCF_STORAGE_OPTIONS) to this process and
    the worker processes it starts; a bad value is a UserInputError naming the flag."""
    from eercf_core.files import paths

    paths.configure(getattr(args, "storage_options", None))


def add_verbosity(parser: argparse.ArgumentParser) -> None:
    """`-v/--verbose` (repeatable) and `-q/--quiet`; `verbosity(args)` folds them into one int."""
    loud = parser.add_argument_group("logging")
    loud.add_argument("-v", "--verbose", action="count", default=0,
                      help="more log lines: -v adds eercf's debug lines and other libraries' "
                           "info lines (silenced by default), -vv everything")
    loud.add_argument("-q", "--quiet", action="count", default=0,
                      help="warnings and errors only")


def verbosity(argv: Sequence[str]) -> int:
    """-v/-q counted from a command line (before any `--`): +1 per -v, -1 per -q, so that
    logging is set up before the command (and its heavy imports) loads."""
    level = 0
    for arg in argv:
        if arg == "--":
            break
        if arg in ("--verbose", "--quiet"):
            level += 1 if arg == "--verbose" else -1
        elif len(arg) > 1 and arg[0] == "-" and arg[1] != "-" and set(arg[1:]) <= {"v", "q"}:
            level += arg.count("v") - arg.count("q")
    return level


def add_aliased(parser: argparse.ArgumentParser | Any, flag: str, aliases: Sequence[str] = (),
                **kwargs: Any) -> argparse.Action:
    """Add `flag` (to a parser or an argument group) plus hidden `aliases` of the same action.

    The aliases parse into the same action but are not among its option strings, so `--help`,
    usage lines and argparse's own errors (`required=True` included) name only `flag`.
    """
    action = parser.add_argument(flag, **kwargs)
    table = parser._option_string_actions  # shared by a parser and its groups
    for alias in aliases:
        if alias in table:
            raise ValueError(f"{alias} is already a flag of {getattr(parser, 'prog', parser)}")
        table[alias] = action
    return action


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


def add_device(parser: argparse.ArgumentParser | Any, what: str = "the model") -> None:
    """`--device`: where `what` runs; default (None, same as `auto`) CUDA when the process
    that loads the model sees a GPU, else the CPU. Names are checked while parsing
    (`device_name`); eercf_core.model.device resolves them."""
    parser.add_argument("--device", type=device_name, default=None,
                        help=f"device for {what}: auto, cpu, cuda, cuda:1 (default auto: cuda "
                             "when available to the process that loads the model, else cpu; on "
                             "CUDA the image tower runs in fp16 autocast)")


def add_workers(parser: argparse.ArgumentParser | Any, default: int | None, what: str) -> None:
    """`--workers` (hidden alias `--decode-workers`): how many processes the job starts for
    `what`. Default `default`; None means the cores of the machine it runs on."""
    shown = "the cores of the machine it runs on" if default is None else "%(default)s"
    add_aliased(parser, "--workers", ("--decode-workers",), type=positive_int, default=default,
                help=f"{what} (default: {shown})")


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


def parse_args(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> argparse.Namespace:
    """`parser.parse_args(argv)` (the one entry every command uses), then the storage options
    applied (`apply_storage_options`)."""
    args = parser.parse_args(None if argv is None else list(argv))
    apply_storage_options(args)
    return args


def _number(kind: type, minimum: float, inclusive: bool) -> Callable[[str], float]:
    relation = ">=" if inclusive else ">"

    def parse(text: str) -> float:
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


def refuse_beam_args_without_runner(parser: argparse.ArgumentParser,
                                    beam_args: list[str]) -> None:
    """Exit 2 via `parser.error` when arguments the job does not know are given without a
    `--runner` (query and build-index take Beam pipeline options only for a runner)."""
    from pipelines.beam.runner import selects_runner

    if beam_args and not selects_runner(beam_args):
        parser.error(f"unrecognized arguments: {' '.join(beam_args)} (Beam pipeline options "
                     "are taken only with --runner)")


def check_beam_flags(parser: argparse.ArgumentParser, beam_args: list[str]) -> None:
    """Exit 2 via `parser.error` naming each flag that is neither the job's nor Beam's, with the
    closest known spellings. Values left over without a flag are refused too. Without any
    leftover arguments there is nothing to check, and Beam is not imported (~1.5 s)."""
    if not beam_args:
        return
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
                    required: bool | None = None, help: str | None = None,
                    random_init: bool = True) -> None:
    """The model flags of every job that loads a model (eercf_core.model.spec): --model
    (required when no default, unless `required` says otherwise), --pretrained, and with
    `random_init` --random-init, --head, --seed. One set of flags, one meaning: the same values
    build the same model in extract, query, search and report; train takes --model and
    --pretrained from here (a name it trains is always randomly initialised, with its --seed)."""
    from eercf_core.model.spec import HEADS

    add_model(parser, default=default, required=default is None if required is None else required,
              help=help or ("checkpoint path/URL (official EERCF or eercf train), or an open_clip "
                            "name with --pretrained or --random-init"
                            + (f" (default {default})" if default else "")))
    parser.add_argument("--pretrained", default=None,
                        help="open_clip pretrained tag (e.g. openai) or local open_clip weights")
    if not random_init:
        return
    parser.add_argument("--random-init", action="store_true",
                        help="seeded random weights for a model name (tests and demos only: "
                             "useless for retrieval); recorded in summary.json")
    parser.add_argument("--head", choices=HEADS, default=None,
                        help="head of a --random-init model (default eercf)")
    parser.add_argument("--seed", type=int, default=0, help="seed of --random-init models")


def model_spec(args: argparse.Namespace, num_frames: int | None = None) -> ModelSpec:
    """The ModelSpec of parsed model flags (see add_model_flags) plus --device."""
    from eercf_core.model.spec import ModelSpec

    extra = {} if num_frames is None else {"num_frames": num_frames}
    return ModelSpec(args.model, args.pretrained, args.random_init, args.head, args.seed,
                     args.device, **extra)


def parse_weights(text: str | None) -> ec.RerankWeights:
    """'coarse=0.5,weak_frame=0.8,...' -> RerankWeights (unnamed weights keep official values).

    Raises argparse.ArgumentTypeError (argparse names --weights) for an unknown name, a value
    that is not a finite number, or all weights zero."""
    from eercf_core.config import RerankWeights

    if not text:
        return RerankWeights()
    known = sorted(RerankWeights().to_dict())
    values = {}
    for item in text.split(","):
        name, sep, value = (part.strip() for part in item.partition("="))
        if name not in known:
            raise argparse.ArgumentTypeError(f"unknown weight {name!r} in {text!r}; known: {known}")
        try:
            number = float(value)
        except ValueError:
            number = math.nan
        if not sep or not math.isfinite(number):
            raise argparse.ArgumentTypeError(f"{name} needs a finite number (name=value), got "
                                             f"{item.strip()!r}")
        values[name] = number
    weights = RerankWeights(**values)
    if not any(weights.to_dict().values()):
        raise argparse.ArgumentTypeError(f"all rerank weights are zero in {text!r}")
    return weights


def add_rerank_flags(parser: argparse.ArgumentParser | Any) -> None:
    """The flags of the two-stage ranking, shared by query and search: --recall-k, --weights,
    --rerank-method, --no-frame-mask, --nprobe (see `score_config`)."""
    from eercf_core.config import RECALL_K, RerankWeights
    from eercf_core.index.rerank import METHODS

    rank = parser.add_argument_group("ranking")
    rank.add_argument("--recall-k", type=positive_int, default=RECALL_K,
                      help="candidates recalled by the coarse score and reranked (default "
                           "%(default)s)")
    rank.add_argument("--weights", type=parse_weights, default=RerankWeights(),
                      help="rerank weights, e.g. coarse=0.5,weak_frame=0.8,strong_frame=0.2,"
                           "weak_patch=0.2,strong_patch=0 (the official defaults)")
    rank.add_argument("--rerank-method", choices=METHODS, default="grouped",
                      help="how candidates are fine-scored (same scores; default grouped)")
    rank.add_argument("--no-frame-mask", action="store_true",
                      help="let padded frames into the softmaxes (exact official parity)")
    rank.add_argument("--nprobe", type=positive_int, default=None,
                      help="override the IVF nprobe")


def score_config(args: argparse.Namespace) -> ec.ScoreConfig:
    """The ScoreConfig of parsed rerank flags (`--no-frame-mask`)."""
    from eercf_core.config import ScoreConfig

    return ScoreConfig(mask_padded_frames=not args.no_frame_mask)
