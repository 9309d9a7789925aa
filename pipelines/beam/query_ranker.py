"""Ranking blocks of queries for `eercf query`, the same way in the launcher and on workers.

`QueryJob` holds everything a process needs to rank (picklable: the index path, the model, the
mode and its settings); `ranker(job)` opens the index and loads the model once per process.
The queries are cut into blocks of `--batch-size` (`query_blocks`); a block is the unit of work
both locally and on a Beam runner, so a distributed run computes exactly what a local run does
and its ranked TSV is byte-identical.
"""
from __future__ import annotations

import functools
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import eercf_core as ec
from eercf_core.errors import UserInputError
from eercf_core.files.text_formats import Query
from eercf_core.index import open_index, rank
from eercf_core.model.spec import ModelSpec, load_model_spec
from eercf_core.progress import Progress

log = logging.getLogger(__name__)

RankedRow = tuple[str, int, str, float, float]  # query_id, rank, video_id, score, coarse_score
ROW_CHUNK = 256


@dataclass(frozen=True)
class QueryJob:
    """The settings of one query run (paths absolute where the command was typed)."""

    index: str
    model: str
    pretrained: str | None
    device: str
    nprobe: int | None
    mode: str  # one of eercf_core.index.MODES
    recall_k: int
    top_n: int  # 0 = all videos
    weights: ec.RerankWeights
    config: ec.ScoreConfig
    rerank_method: str
    random_init: bool = False  # the model flags of eercf_core.model.spec, as extract takes them
    head: str | None = None
    seed: int = 0

    def model_spec(self, num_frames: int) -> ModelSpec:
        """The model of this job (a model built by name gets the index's T)."""
        return ModelSpec(self.model, self.pretrained, self.random_init, self.head, self.seed,
                         self.device, num_frames)


class Ranker:
    """The opened index and the loaded model of a QueryJob; ranks blocks of queries."""

    def __init__(self, job: QueryJob):
        self.job = job
        self.index = open_index(job.index, job.nprobe)
        self.model = load_model_spec(job.model_spec(self.index.dims.num_frames))
        self.index.check_model(self.model.identity.model_id,
                               self.model.identity.checkpoint_sha256)
        if self.model.dims != self.index.dims:
            raise UserInputError(f"model dims {self.model.dims} differ from the index dims "
                             f"{self.index.dims}")
        self.params = self.model.score_params.detach().to("cpu")
        self.top_n = min(job.top_n or len(self.index.video_ids), len(self.index.video_ids))

    def rows(self, block: Sequence[Query]) -> Iterator[RankedRow]:
        """The ranked rows of one block: top_n per query, in query then rank order, built
        ROW_CHUNK queries at a time (a block of 16,384 x top-100 would be 1.6 M row tuples)."""
        job = self.job
        text = self.model.encode_text([q.text for q in block]).float().cpu()
        ranking = rank(self.index, text, self.params, job.mode, job.recall_k, self.top_n,
                       job.weights, job.config, job.rerank_method)
        del text
        ids = self.index.video_ids
        all_rows = ranking.indices.numpy()
        for first in range(0, len(block), ROW_CHUNK):
            chunk = slice(first, first + ROW_CHUNK)
            rows = all_rows[chunk]
            # one vectorised lookup per chunk (a memory-mapped id map reads only these rows)
            names = ids.take(rows) if hasattr(ids, "take") else [ids[i] for i in rows.ravel()]
            width = rows.shape[1] if rows.ndim == 2 else 0
            yield from ((query.query_id, position, names[q * width + position - 1], score, coarse)
                        for q, (query, scores, coarses) in enumerate(zip(
                            block[chunk], ranking.scores[chunk].tolist(),
                            ranking.coarse_scores[chunk].tolist()))
                        for position, (score, coarse) in enumerate(zip(scores, coarses), 1))


@functools.lru_cache(maxsize=2)
def ranker(job: QueryJob) -> Ranker:
    """The Ranker of `job`, created once per process."""
    return Ranker(job)


def query_blocks(queries: Sequence[Query], batch_size: int) -> list[tuple[int, list[Query]]]:
    """(block number, queries) for consecutive blocks of `batch_size` queries."""
    if batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {batch_size}")
    return [(number, list(queries[begin:begin + batch_size]))
            for number, begin in enumerate(range(0, len(queries), batch_size))]


def stream_rows(job: QueryJob, blocks: Sequence[tuple[int, list[Query]]],
                progress: Progress) -> Iterator[RankedRow]:
    """Rank `blocks` in this process, yielding rows block by block (memory bounded by one
    block, whatever the number of queries)."""
    worker = ranker(job)
    for _, block in blocks:
        yield from worker.rows(block)
        progress.add(len(block))
