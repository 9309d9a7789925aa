"""The index directory: everything `eercf build-index` writes and `eercf query` reads.

    recall     FAISS recall index over the coarse vectors (build, search, save/load, recall check)
    store      memory-mapped fine-feature store (writer and reader), float16 or codec codes
    codecs     FAISS standalone codecs for the store (`--fine-codec`): specs, training, files
    fidelity   rerank fidelity of a codec against float16 (recorded in the manifest)
    directory  the directory layout and manifest: open_index, read_manifest, make_manifest
    build      feature shards -> a complete index directory (atomic)
    rerank     stage 2: rerank recalled candidates from the store
    search     two-stage, recall-only and exhaustive search over an opened index
"""
from eercf_core.index.build import build_index
from eercf_core.index.directory import IndexDirectory, open_index, read_manifest, read_video_ids
from eercf_core.index.search import MODES, exhaustive, rank, recall_only, two_stage

__all__ = ["MODES", "IndexDirectory", "build_index", "exhaustive", "open_index", "read_manifest",
           "rank", "read_video_ids", "recall_only", "two_stage"]
