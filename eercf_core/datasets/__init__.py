"""Importers for the paper's benchmarks (MSR-VTT, MSVD, VATEX, ActivityNet Captions).

`load_benchmark(name, annotations_dir)` parses a dataset's annotation files as distributed into a
`Benchmark` (splits of video ids, training captions, evaluation queries); `find_videos` matches
ids to files. Writing eercf's files from it is `eercf import-dataset`
(pipelines/commands/import_dataset.py).
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from eercf_core.datasets import activitynet, msrvtt, msvd, vatex
from eercf_core.datasets.common import (
    AnnotationError,
    Benchmark,
    EvalQuery,
    KnownSize,
    Split,
    clean_text,
    find_videos,
)
from eercf_core.datasets.safe_pickle import UnsafePickleError, load_plain_pickle
from eercf_core.errors import UserInputError

LOADERS: dict[str, Callable[[Path], Benchmark]] = {
    "msrvtt": msrvtt.load, "msvd": msvd.load, "vatex": vatex.load, "activitynet": activitynet.load}


def load_benchmark(name: str, annotations: str | Path) -> Benchmark:
    """Parse `name`'s annotation files in the folder `annotations` (see each module's doc)."""
    if name not in LOADERS:
        raise UserInputError(f"unknown dataset {name!r}; known: {sorted(LOADERS)}")
    folder = Path(annotations)
    if not folder.is_dir():
        raise AnnotationError(f"{folder}: annotations folder not found")
    return LOADERS[name](folder)


__all__ = ["AnnotationError", "Benchmark", "EvalQuery", "KnownSize", "LOADERS", "Split",
           "UnsafePickleError", "clean_text", "find_videos", "load_benchmark", "load_plain_pickle"]
