"""The `eercf` console script: one subcommand per job, each dispatching to its module's run(argv).

Modules are imported only when their subcommand runs, so `eercf --help` stays fast and a job's
heavy dependencies (Beam, FAISS, torch) load only where needed.
"""
from __future__ import annotations

import importlib
import logging
import sys
from collections.abc import Sequence

# subcommand -> (module, one-line help)
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "extract": ("pipelines.extract", "decode videos, run the model, write Parquet feature shards"),
    "build-index": ("pipelines.build_index", "build the FAISS recall index and fine-feature store"),
    "query": ("pipelines.query", "recall top-k per text query and rerank, write a ranked TSV"),
    "evaluate": ("pipelines.evaluate", "R@K, MdR, MnR of a ranked TSV against ground truth"),
    "report": ("pipelines.report", "ranked TSV -> HTML result gallery with previews (offline)"),
    "search": ("pipelines.search", "one-off text search of an index, printed as a table"),
    "train": ("pipelines.train", "train or fine-tune with the EERCF losses"),
    "synth": ("pipelines.synth", "generate a synthetic fine-grained video-caption corpus"),
    "benchmark": ("pipelines.benchmark", ("MSR-VTT/MSVD/VATEX/ActivityNet annotations -> "
                                          "manifests, captions, queries, ground truth")),
    "demo": ("pipelines.demo", "the whole method end to end on a generated corpus, offline"),
}


def _usage() -> str:
    width = max(len(n) for n in SUBCOMMANDS)
    lines = ["usage: eercf <command> [options]   (eercf <command> --help for its options)", "",
             "commands:"]
    lines += [f"  {name:<{width}}  {help_}" for name, (_, help_) in SUBCOMMANDS.items()]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `eercf` script. Returns the process exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in SUBCOMMANDS:
        print(f"eercf: unknown command {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    module = importlib.import_module(SUBCOMMANDS[name][0])
    result = module.run(rest)
    return result if isinstance(result, int) else 0


if __name__ == "__main__":
    sys.exit(main())
