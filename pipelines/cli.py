"""The `eercf` console script: one subcommand per job, each dispatching to its module's run(argv).

Logging is set up once here (`pipelines.flags.setup_logging`: eercf's INFO lines, other
libraries' warnings; `-v`/`-q` on every command), before the command's module is imported.
Modules are imported only when their subcommand runs, so `eercf --help` stays fast and a job's
heavy dependencies (Beam, FAISS, torch) load only where needed.
Ctrl-C and SIGTERM stop every child process and print one line (pipelines.interrupts).

Errors: an expected error (eercf_core.errors: a bad input or flag, a refused index, an unwritable
output) prints one line, `eercf <command>: error: <what and where>`, and exits 2 (1 for a
run that failed for a reason outside the user's inputs: errors.RunFailedError, a storage
outage); `--debug` anywhere on the command line shows the traceback instead. Bugs keep their
traceback (exit 1).
"""
from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

from eercf_core.errors import exit_code_of, is_expected, one_line
from pipelines.flags import setup_logging, verbosity
from pipelines.interrupts import exit_code, install_signal_handlers, interrupted

# subcommand -> (module under pipelines.commands, one-line help)
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "extract": ("extract", "decode videos, run the model, write Parquet feature shards"),
    "verify": ("verify", "check every shard of an extract output fully (checksums, records)"),
    "build-index": ("build_index", "build the FAISS recall index and fine-feature store"),
    "query": ("query", "recall top-k per text query and rerank, write a ranked TSV"),
    "evaluate": ("evaluate", "R@K, MdR, MnR of a ranked TSV against ground truth"),
    "report": ("report", "ranked TSV -> HTML result gallery with previews (offline)"),
    "search": ("search", "one-off text search of an index, printed as a table"),
    "train": ("train", "train or fine-tune with the EERCF losses"),
    "synth": ("synth", "generate a synthetic fine-grained video-caption corpus"),
    "import-dataset": ("import_dataset", ("MSR-VTT/MSVD/VATEX/ActivityNet annotations -> "
                                          "manifests, captions, queries, ground truth")),
    "demo": ("demo", "the whole method end to end on a generated corpus, offline"),
}
# Old names that still work and are not listed (`benchmark` was renamed so that it cannot be
# confused with `bench/`, the speed benchmarks).
HIDDEN_ALIASES = {"benchmark": "import-dataset"}


def command_module(name: str) -> str:
    """The module implementing subcommand `name` (a listed name or a hidden alias)."""
    return f"pipelines.commands.{SUBCOMMANDS[HIDDEN_ALIASES.get(name, name)][0]}"


def _usage() -> str:
    width = max(len(n) for n in SUBCOMMANDS)
    lines = [("usage: eercf <command> [options] [--debug]   (eercf <command> --help for its "
              "options; --debug: tracebacks for every error)"), "", "commands:"]
    lines += [f"  {name:<{width}}  {help_}" for name, (_, help_) in SUBCOMMANDS.items()]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `eercf` script. Returns the process exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    argv = [a for a in argv if a != "--debug"]
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in SUBCOMMANDS and name not in HIDDEN_ALIASES:
        print(f"eercf: unknown command {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    # Before the command's module is imported: its imports (faiss, open_clip, Beam) log.
    setup_logging(verbosity(rest))
    install_signal_handlers()
    try:
        module = importlib.import_module(command_module(name))
        result = module.run(rest)
    except KeyboardInterrupt as exc:  # Ctrl-C or SIGTERM (pipelines.interrupts)
        report = interrupted(exc, "rerun to resume")
        print(f"eercf {name}: {report}", file=sys.stderr)
        return exit_code(report)
    except Exception as exc:
        if debug or not is_expected(exc):
            raise
        print(f"eercf {name}: error: {one_line(exc)}", file=sys.stderr)
        return exit_code_of(exc)
    return result if isinstance(result, int) else 0


if __name__ == "__main__":
    sys.exit(main())
