"""Run every benchmark module `bench/bench_*.py` (or those named on the command line).

Each module has `main(argv) -> dict`; results are printed as they finish and merged into
`bench_out/results.json` (a run of some benchmarks keeps the others' last results).
Usage: python -m bench [name ...] [--quick]
"""
from __future__ import annotations

import importlib
import json
import logging
import pkgutil
import sys
import time
from pathlib import Path

import bench
from eercf_core.logs import setup_logging

log = logging.getLogger(__name__)


def main(argv: list[str]) -> int:
    setup_logging(0)  # eercf_core.logs: the same lines as `eercf`, other libraries quiet
    names = [a for a in argv if not a.startswith("-")]
    flags = [a for a in argv if a.startswith("-")]
    available = sorted(m.name for m in pkgutil.iter_modules(bench.__path__)
                       if m.name.startswith("bench_"))
    chosen = [n if n.startswith("bench_") else f"bench_{n}" for n in names] or available
    unknown = sorted(set(chosen) - set(available))
    if unknown:
        log.error("unknown benchmark(s) %s; available: %s", unknown, available)
        return 2
    out = Path("bench_out")
    out.mkdir(exist_ok=True)
    results_path = out / "results.json"
    results = json.loads(results_path.read_text()) if results_path.exists() else {}
    for name in chosen:
        start = time.perf_counter()
        log.info("running %s", name)
        results[name] = importlib.import_module(f"bench.{name}").main(flags)
        log.info("%s done in %.1f s: %s", name, time.perf_counter() - start,
                 json.dumps(results[name], indent=None, default=str))
        # Written after each benchmark, so a long run that fails late keeps the earlier results.
        results_path.write_text(json.dumps(results, indent=2, default=str))
    log.info("wrote %s", results_path)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
