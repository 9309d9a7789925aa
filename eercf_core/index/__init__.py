"""The index directory: everything `eercf build-index` writes and `eercf query` reads.

    recall     FAISS recall index over the coarse vectors (build, search, save/load, recall check)
    list_search  a large batch of queries searched list by list in an IVF index (big-batch search)
    store      fine-feature store (writer and positional-read reader), float16 or codec codes
    codecs     FAISS standalone codecs for the store (`--fine-codec`): specs, training, files
    fidelity   rerank fidelity of a codec against float16 (recorded in the manifest)
    directory  the directory layout and manifest: open_index, read_manifest, make_manifest
    build      feature shards -> a complete index directory (atomic)
    fill       one shard's features into its rows of the store (the parallel fill's task)
    rerank     stage 2: rerank recalled candidates from the store
    search     two-stage, recall-only and exhaustive search over an opened index
"""
import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from eercf_core.index.build import build_index
    from eercf_core.index.directory import (
        IndexDirectory,
        open_index,
        read_manifest,
        read_video_ids,
    )
    from eercf_core.index.search import MODES, exhaustive, rank, recall_only, two_stage

# Names are imported on first use (PEP 562): a process that needs one submodule, e.g. a worker of
# the parallel store fill (`fill`), does not pay for the others (build imports torch, ~1-2 s).
_HOMES = {"build_index": "build", "IndexDirectory": "directory", "open_index": "directory",
          "read_manifest": "directory", "read_video_ids": "directory", "MODES": "search",
          "exhaustive": "search", "rank": "search", "recall_only": "search",
          "two_stage": "search"}

__all__ = ["MODES", "IndexDirectory", "build_index", "exhaustive", "open_index", "read_manifest",
           "rank", "read_video_ids", "recall_only", "two_stage"]


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        return getattr(importlib.import_module(f"eercf_core.index.{_HOMES[name]}"), name)
    raise AttributeError(f"module 'eercf_core.index' has no attribute {name!r}")
