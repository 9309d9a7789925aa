"""Build an index directory: feature shards -> FAISS recall index + fine-feature store + manifest.

Reads Parquet shards (fsspec URLs: directories, shard files or globs), skips and counts error rows,
refuses shards from different models, and writes an index directory (see
`eercf_core.index.directory`).
The directory is built under a hidden temp name beside the output and renamed when complete, so
an interrupted build leaves no half-written index at the output path.
"""
from __future__ import annotations

import collections
import functools
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from glob import escape as glob_escape
from pathlib import Path

import numpy as np
import pyarrow as pa
import torch

from eercf_core.config import RECALL_K
from eercf_core.errors import UserInputError
from eercf_core.files import paths
from eercf_core.files.atomic import TEMP_MARKER, atomic_directory, temp_owner_pid, write_json
from eercf_core.files.commits import ROW_FIELDS, InvalidRecord, read_valid_record
from eercf_core.files.ids import control_character_problem
from eercf_core.files.inputs import is_glob
from eercf_core.files.output_check import check_writable_dir
from eercf_core.files.output_lock import OutputLock, lock_beside, pid_alive
from eercf_core.files.shards import (
    SHARD_SUFFIX,
    decode_qualities,
    list_shards,
    read_shard,
    shard_identity,
    shard_version,
)
from eercf_core.index import recall
from eercf_core.index.codec_selection import DEFAULT_MIN_AGREEMENT, is_auto, select_codec
from eercf_core.index.codecs import (
    CODED_KINDS,
    DEFAULT_TRAIN_VECTORS,
    FineCodecSpec,
    VectorCodec,
    train_codecs,
)
from eercf_core.index.directory import (
    MANIFEST,
    RECALL_FILE,
    STORE_DIR,
    make_manifest,
    write_video_ids,
)
from eercf_core.index.fidelity import corpus_queries, measure_fidelity, round_trip
from eercf_core.index.fill import (
    FILL_MARKERS,
    FillTask,
    check_fill_markers,
    init_fill_worker,
    ok_batches,
)
from eercf_core.index.remote import index_exists, upload_index
from eercf_core.index.store import FineStoreWriter, bytes_per_video
from eercf_core.model.features import VideoFeatures
from eercf_core.progress import Progress
from eercf_core.scoring.scores import ScoreParams
from eercf_core.video.previews import STORE_DIR as PREVIEW_DIR
from eercf_core.video.previews import write_preview_store
from schemas import COLUMN_OF_FEATURE, STATUS_OK, FeatureDims

log = logging.getLogger(__name__)
# Corpora of at least this many ok videos get `--fine-codec auto` unless a codec is named: a
# float16 store is 628 KB per ViT-B/32 video (63 GB at 100k), the auto codec ~51 KB at a held-out
# top-10 agreement >= 0.95 (README, "Automatic codec").
AUTO_DEFAULT_MIN_VIDEOS = 100_000


def resolve_shards(inputs: list[str]) -> list[str]:
    """Shard URLs from directories (completed shards in them), shard files or glob patterns
    (an existing path with glob characters is that file or directory)."""
    shards: list[str] = []
    for item in inputs:
        fs, path = paths.filesystem(item)
        if is_glob(item):
            paths.invalidate(item)
            shards += [paths.full_url(item, fs, p) for p in sorted(fs.glob(path))
                       if p.endswith(SHARD_SUFFIX)]
        elif fs.isdir(path):
            shards += list_shards(item)
        elif fs.isfile(path):
            shards.append(item)
        else:
            raise UserInputError(f"{item}: no such shard file or directory")
    if not shards:
        raise UserInputError(f"no feature shards found in {inputs}")
    return shards


def check_identity(shards: list[str]) -> tuple[FeatureDims, str, str]:
    """(dims, model_id, sha256) shared by every shard; ValueError naming two that differ."""
    first = shard_identity(shards[0])
    for shard in shards[1:]:
        other = shard_identity(shard)
        if other != first:
            raise UserInputError(
                f"shards from different models or dims: {shards[0]} has model {first[1]!r} "
                f"(sha256 {first[2][:12]}…, dims {first[0]}), {shard} has model {other[1]!r} "
                f"(sha256 {other[2][:12]}…, dims {other[0]}); index one model's shards at a time")
    return first


def _scan(shards: list[str]) -> tuple[list[str], int, dict[str, int], list[int]]:
    """Pass 1 (ids, status, decode quality): ok video ids in shard order, number of error rows,
    ok videos per decode quality (an index built from mixed settings says so), ok rows per
    shard (the row slice each shard fills). From each shard's commit record
    (eercf_core.files.commits) when it has a valid one, else from its columns."""
    ids: list[str] = []
    per_shard: list[int] = []
    where: dict[str, str] = {}
    errors = 0
    qualities: collections.Counter = collections.Counter()
    for shard in shards:
        before = len(ids)
        video_ids, ok, shard_qualities = _id_columns(shard)
        errors += int((~ok).sum())
        for video_id, is_ok, quality in zip(video_ids, ok, shard_qualities):
            if not is_ok:
                continue
            problem = control_character_problem(video_id)
            if problem:
                raise UserInputError(f"{shard}: video_id {video_id!r} {problem}; ids must be "
                                 "printable (re-extract with a manifest that gives clean ids)")
            qualities[str(quality)] += 1
            if video_id in where:
                raise UserInputError(f"duplicate video_id {video_id!r} in {where[video_id]} and "
                                     f"{shard}")
            where[video_id] = shard
            ids.append(video_id)
        per_shard.append(len(ids) - before)
    return ids, errors, dict(sorted(qualities.items())), per_shard


def _id_columns(shard: str) -> tuple[list[str], np.ndarray, list[str | None]]:
    """(video ids, ok mask, decode qualities) of a shard's rows: from its commit record (no rows
    read), else from its columns (a shard from before records, or one copied without its
    record; its pages are checksummed when its features are read)."""
    try:
        columns = read_valid_record(shard).columns
    except InvalidRecord as exc:
        if shard_version(shard) >= 3:
            log.warning("%s; reading its id columns instead", exc)
        table = read_shard(shard, columns=list(ROW_FIELDS))
        columns = {"video_id": table.column("video_id").to_pylist(),
                   "status": table.column("status").to_pylist(),
                   "decode_quality": decode_qualities(table)}
    return (columns["video_id"],
            np.array([s == STATUS_OK for s in columns["status"]], dtype=bool),
            columns["decode_quality"])


def _fill_store(shards: list[str], writer: FineStoreWriter, batch_rows: int) -> None:
    """Pass 2: stream the ok rows' features into the store, `batch_rows` rows at a time."""
    progress = Progress("store", writer.num_videos, "videos", show_failed=False, logger=log)
    for _, arrays in ok_batches(shards, writer.dims, batch_rows):
        before = writer.written
        writer.append(**arrays)
        progress.add(writer.written - before)


def _fill_store_parallel(shards: list[str], per_shard: list[int], writer: FineStoreWriter,
                         batch_rows: int, workers: int) -> None:
    """Pass 2 on `workers` processes: one task per shard, each writing its own row slice of the
    preallocated store files (disjoint, so no locking); the rows and bytes are those of the
    serial `_fill_store`. Processes are spawned (never forked after FAISS/torch started
    threads); a failed task fails the build."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    tasks = _fill_tasks(shards, per_shard, writer, batch_rows)
    progress = Progress("store", writer.num_videos, "videos", show_failed=False, logger=log)
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                             initializer=init_fill_worker) as pool:
        for future in as_completed([pool.submit(task.fill) for task in tasks]):
            progress.add(future.result())


def _fill_tasks(shards: list[str], per_shard: list[int], writer: FineStoreWriter,
                batch_rows: int) -> list[FillTask]:
    """One `FillTask` per shard with ok rows: its rows' slice of the store, the codec files the
    writer saved. The writer is told the rows are written elsewhere."""
    codecs = {kind: (str(info["file"]), str(info["factory"]), str(info["sha256"]))
              for kind, info in writer.codec_meta.items()}
    writer.filled_elsewhere()
    starts = np.concatenate([[0], np.cumsum(per_shard)[:-1]]).astype(int).tolist()
    return [FillTask(os.path.abspath(writer.directory), writer.dims.to_dict(), codecs, shard,
                     start, count, batch_rows)
            for shard, start, count in zip(shards, starts, per_shard) if count]


class IncompleteFillError(RuntimeError):
    """A runner's fill tasks did not all finish: the store is incomplete, nothing is written."""


def _fill_store_on_runner(shards: list[str], per_shard: list[int], writer: FineStoreWriter,
                          batch_rows: int, fill_runner: Callable[[list[FillTask]], None]
                          ) -> None:
    """Pass 2 as one `FillTask` per shard, run by `fill_runner` (e.g. a Beam pipeline on Dask
    whose workers share this filesystem). Every task must leave its marker; a missing one fails
    the build naming the shards (IncompleteFillError)."""
    tasks = _fill_tasks(shards, per_shard, writer, batch_rows)
    log.info("store: %d fill tasks on the runner", len(tasks))
    fill_runner(tasks)
    missing = check_fill_markers(tasks)
    if missing:
        shown = ", ".join(task.shard for task in missing[:5])
        raise IncompleteFillError(
            f"{len(missing)} of {len(tasks)} shards were not filled into the store by the runner "
            f"({shown}{' ...' if len(missing) > 5 else ''}): the runner lost work or its "
            "workers do not share the output's filesystem; nothing was written")
    shutil.rmtree(writer.directory / FILL_MARKERS)


# The codec sample comes from at least this many whole shards (fewer when the corpus has fewer):
# shards are chunks of the input order, and one shard may hold one kind of video only.
SAMPLE_MIN_SHARDS = 4


def _sample_shards(shards: list[str], per_shard: list[int], need: int, seed: int
                   ) -> tuple[list[str], int]:
    """Whole shards in random order until they hold `need` ok rows and at least
    SAMPLE_MIN_SHARDS shards (index order kept); returns (shards, their ok rows). Reading them
    costs O(sample), not O(corpus)."""
    chosen: list[int] = []
    rows = 0
    for i in np.random.default_rng(seed).permutation(len(shards)).tolist():
        if per_shard[i] == 0:
            continue
        chosen.append(i)
        rows += per_shard[i]
        if rows >= need and len(chosen) >= SAMPLE_MIN_SHARDS:
            break
    chosen.sort()
    return [shards[i] for i in chosen], rows


def _read_samples(shards: list[str], dims: FeatureDims, samples: list[np.ndarray],
                  batch_rows: int) -> list[VideoFeatures]:
    """The stored (float16) features of each sorted array of ok-row numbers in `samples` (rows
    numbered over `shards` in order), all read in one pass that stops after the last row, into
    arrays allocated once (no concatenation copy)."""
    shapes = dims.feature_shapes()
    wanted = [{kind: np.empty((len(rows), *shapes[kind]),
                              bool if kind == "mask" else np.float16)
               for kind in COLUMN_OF_FEATURE} for rows in samples]
    filled = [0] * len(samples)
    last = max(int(rows[-1]) for rows in samples if len(rows))
    first = 0
    for _, arrays in ok_batches(shards, dims, batch_rows):
        count = len(arrays["mask"])
        for number, (rows, out) in enumerate(zip(samples, wanted)):
            hits = rows[(rows >= first) & (rows < first + count)] - first
            for kind, values in arrays.items():
                out[kind][filled[number]:filled[number] + len(hits)] = values[hits]
            filled[number] += len(hits)
        del arrays
        first += count
        if first > last:
            break
    assert filled == [len(rows) for rows in samples], (filled, [len(r) for r in samples])
    # Decoding a shard's row group holds ~2 shards of Arrow buffers, which the pool keeps after
    # they are freed (~700 MB at ViT-B/32, 500 videos per shard): hand them back before training.
    pa.default_memory_pool().release_unused()
    return [VideoFeatures(**{kind: torch.from_numpy(out[kind]) for kind in COLUMN_OF_FEATURE})
            for out in wanted]


def _train_fine_codecs(shards: list[str], dims: FeatureDims, per_shard: list[int],
                       spec: FineCodecSpec | None, train_videos: int, train_vectors: int,
                       fidelity_videos: int, fidelity_queries: int, batch_rows: int, seed: int,
                       auto: dict | None = None,
                       text_queries: tuple[torch.Tensor, ScoreParams] | None = None
                       ) -> tuple[FineCodecSpec, dict[str, VectorCodec], dict]:
    """Train the codecs on a sample of videos and measure their fidelity on another sample.

    Both samples come from one read of a few whole shards (`_sample_shards`: random shards
    holding at least the two samples, SAMPLE_MIN_SHARDS or more), so the codec costs
    O(sample) reads, not another scan of the corpus.

    Returns (spec, codecs, manifest record). `spec` None selects the codec (`--fine-codec auto`,
    `eercf_core.index.codec_selection`, with `auto` = {"min_agreement", "max_bytes_per_video"});
    the kept spec may then be fp16 (no codecs). The fidelity sample is disjoint from the training
    sample when the corpus has enough videos (`held_out`); queries are corpus-derived and the
    scores use identity parameters (τ = 100, W_g = W_f = I). `text_queries` (text vectors of
    the model given to build-index and its score parameters) are measured too (`fidelity.text`)
    and, with auto, must reach the target as well.
    """
    start = time.perf_counter()
    sample_shards, sample_rows = _sample_shards(shards, per_shard,
                                                train_videos + fidelity_videos, seed)
    order = np.random.default_rng(seed).permutation(sample_rows)
    train_rows = np.sort(order[:train_videos])
    held_out = sample_rows >= train_videos + min(fidelity_videos, RECALL_K)
    fidelity_rows = np.sort(order[train_videos:train_videos + fidelity_videos] if held_out
                            else order[:fidelity_videos])
    train, reference = _read_samples(sample_shards, dims, [train_rows, fidelity_rows],
                                     batch_rows)
    read_seconds = time.perf_counter() - start
    sample = {"shards": len(sample_shards), "of_shards": len(shards), "videos": sample_rows,
              "read_seconds": round(read_seconds, 3)}
    params = ScoreParams.identity(dims.embed_dim, dims.num_frames)
    selection: dict | None = None
    if spec is None:
        chosen = select_codec(train, reference, corpus_queries(reference, fidelity_queries, seed),
                              params, dims, train_vectors=train_vectors, seed=seed,
                              text_queries=text_queries, **(auto or {}))
        spec, codecs, selection = chosen.spec, chosen.codecs, chosen.record
        selection["held_out"] = held_out
        train_seconds = time.perf_counter() - start
        if chosen.fidelity is None:  # float16 kept: nothing met the target
            return spec, codecs, {"codec": str(spec), "selection": selection, "sample": sample,
                                  "seconds": {"selection": round(train_seconds, 3)}}
        fidelity = chosen.fidelity
    else:
        codecs = train_codecs(spec, {kind: getattr(train, kind).numpy() for kind in CODED_KINDS},
                              dims.embed_dim, train_vectors, seed)
        train_seconds = time.perf_counter() - start
        decoded = round_trip(reference, codecs)
        fidelity = measure_fidelity(reference, decoded,
                                    corpus_queries(reference, fidelity_queries, seed), params)
        if text_queries is not None:
            fidelity["text"] = measure_fidelity(reference, decoded, *text_queries)
            fidelity["text"]["query_source"] = "text queries encoded by the model"
    fidelity.update(held_out=held_out,
                    score_params="identity (tau 100, W_g = W_f = I): build-index has no model")
    log.info("fine codec %s: top-10 agreement %.4f, max rerank score error %.4f (mean gap "
             "between top-10 neighbours %.4f)", spec, fidelity["top10_agreement"],
             fidelity["score_errors"]["final"]["max_abs"],
             fidelity["final_neighbour_gap_mean_top10"] or 0.0)
    record = {"codec": str(spec), "training_videos": len(train_rows),
              "training_vectors": {kind: min(train_vectors, len(train_rows) * rows)
                                   for kind, rows in _vectors_per_video(dims).items()
                                   if kind in codecs},
              "fidelity": fidelity, "sample": sample,
              "seconds": {"train": round(train_seconds, 3),
                          "fidelity": round(time.perf_counter() - start - train_seconds, 3)}}
    if selection is not None:
        record["selection"] = selection
        record["seconds"] = {"selection": round(train_seconds, 3)}
    return spec, codecs, record


def _vectors_per_video(dims: FeatureDims) -> dict[str, int]:
    return {kind: int(np.prod(shape[:-1])) for kind, shape in dims.feature_shapes().items()}


def build_index(inputs: list[str], output: str, factory: str | None = None,
                nprobe: int | None = None, recall_sample: int = 1000,
                recall_check_k: int = RECALL_K, batch_rows: int = 256, overwrite: bool = False,
                seed: int = 0, fine_codec: str | FineCodecSpec | None = None,
                codec_train_videos: int = 256, codec_train_vectors: int = DEFAULT_TRAIN_VECTORS,
                fidelity_videos: int = 200, fidelity_queries: int = 200,
                min_agreement: float = DEFAULT_MIN_AGREEMENT,
                max_bytes_per_video: int | None = None,
                fidelity_text: tuple[torch.Tensor, ScoreParams] | None = None,
                codec_candidates: list[str] | None = None,
                recall_target: float = recall.DEFAULT_RECALL_TARGET,
                min_recall: float | None = None, workers: int | None = 1,
                fill_runner: Callable[[list[FillTask]], None] | None = None) -> dict:
    """Build an index directory at `output` from the shards in `inputs`; returns the manifest.

    Holds the output's lock for the whole build (a second build into `output` is refused with
    OutputLockedError naming the holder) and first removes temp directories of dead builds.
    `fine_codec` (a spec string, see `eercf_core.index.codecs`; default fp16 below
    AUTO_DEFAULT_MIN_VIDEOS ok videos and "auto" at or above) stores the fine
    features as codes of codecs trained on `codec_train_videos` sampled videos (at most
    `codec_train_vectors` vectors per kind); their rerank fidelity is measured on
    `fidelity_videos` other sampled videos with `fidelity_queries` corpus-derived queries.
    `fine_codec="auto"` keeps the smallest candidate codec whose held-out top-10 agreement reaches
    `min_agreement` within `max_bytes_per_video` (float16 if none does; every candidate is
    recorded in the manifest's fine_store.selection). `fidelity_text` = (text vectors [Q, D] of
    the extracting model, its ScoreParams): text queries measured besides the corpus-derived ones.
    `codec_candidates`: the specs auto chooses from (default
    `codec_selection.default_candidates`).
    An approximate recall index gets the smallest nprobe / efSearch reaching `recall_target`
    (recall@`recall_check_k` vs exact on `recall_sample` held-out queries, `recall.tune`; a given
    `nprobe` is measured, not tuned); a missed target is a loud warning, and with `min_recall` a
    recall below it fails the build (RecallTooLowError, nothing written at `output`).
    `workers` processes fill the store, one shard per task (None: the machine's cores from
    PARALLEL_MIN_VIDEOS videos on; 1: in this process, also inside daemonic processes, which may
    not start children). `fill_runner` instead runs the fill as one `FillTask` per shard (e.g.
    `pipelines.beam.index_fill`: a Beam pipeline on Dask): its workers write the store in place,
    so they must reach `output`'s directory at the same path; a task that leaves no marker
    fails the build (IncompleteFillError).
    """
    if paths.is_url(output):
        if fill_runner is not None:
            raise UserInputError(f"{output}: a runner's workers fill the store in place, so the "
                                 "index must be built on a filesystem path they share, not a URL")
        return _build_and_upload(output, overwrite, functools.partial(
            build_index, inputs, factory=factory, nprobe=nprobe, recall_sample=recall_sample,
            recall_check_k=recall_check_k, batch_rows=batch_rows, seed=seed,
            fine_codec=fine_codec, codec_train_videos=codec_train_videos,
            codec_train_vectors=codec_train_vectors, fidelity_videos=fidelity_videos,
            fidelity_queries=fidelity_queries, min_agreement=min_agreement,
            max_bytes_per_video=max_bytes_per_video, fidelity_text=fidelity_text,
            codec_candidates=codec_candidates,
            recall_target=recall_target,
            min_recall=min_recall, workers=workers, fill_runner=fill_runner))
    started = time.perf_counter()
    out = Path(paths.require_local(output, "an index is built on a local disk"))
    if out.exists() and not overwrite:  # checked again on rename; fail before the slow part
        raise UserInputError(f"{out}: already exists (pass --overwrite to replace it)")
    by_default = fine_codec is None  # fp16 below AUTO_DEFAULT_MIN_VIDEOS videos, auto at or above
    auto = isinstance(fine_codec, str) and is_auto(fine_codec)
    spec = (None if auto else fine_codec if isinstance(fine_codec, FineCodecSpec)
            else FineCodecSpec.parse(fine_codec))
    if not 0.0 < min_agreement <= 1.0:
        raise UserInputError(f"--min-agreement {min_agreement}: must be in (0, 1]")
    if min(codec_train_videos, codec_train_vectors, fidelity_videos, fidelity_queries) < 1:
        raise UserInputError("codec training/fidelity sample sizes must be >= 1")
    check_writable_dir(str(out.parent), "--output's parent")  # the build happens beside it
    with OutputLock(lock_beside(str(out)), "build-index", output):
        removed = remove_stale_temps(out)
        if removed:
            log.info("removed %d temp directories left by killed builds of %s", removed, output)
        shards = resolve_shards(inputs)
        dims, model_id, sha = check_identity(shards)
        if spec is not None:
            spec.validate(dims.embed_dim)
        for candidate in codec_candidates or ():
            FineCodecSpec.parse(candidate).validate(dims.embed_dim)
        if fidelity_text is not None and (fidelity_text[0].ndim != 2
                                          or fidelity_text[0].shape[1] != dims.embed_dim):
            raise UserInputError(f"fidelity text vectors must be [Q, {dims.embed_dim}] (the "
                                 f"shards' dimension), got {tuple(fidelity_text[0].shape)}")
        ids, error_rows, qualities, per_shard = _scan(shards)
        if not ids:
            raise UserInputError(f"no ok rows in {len(shards)} shard(s) ({error_rows} error rows)")
        log.info("%d shards: %d ok videos, %d error rows skipped; model %s, dims %s",
                 len(shards), len(ids), error_rows, model_id, dims)
        if len(qualities) > 1:
            log.warning("shards mix decode qualities (videos per quality: %s)", qualities)
        if by_default and len(ids) >= AUTO_DEFAULT_MIN_VIDEOS:
            log.info("%d videos >= %d: fine codec auto by default (a float16 store would take "
                     "%.1f GB; pass --fine-codec fp16 to keep it)", len(ids),
                     AUTO_DEFAULT_MIN_VIDEOS, len(ids) * bytes_per_video(dims) / 1e9)
            auto, spec = True, None

        with atomic_directory(out, overwrite) as temp:
            codecs: dict[str, VectorCodec] = {}
            codec_record: dict | None = None
            if spec is None or not spec.is_fp16:
                spec, codecs, codec_record = _train_fine_codecs(
                    shards, dims, per_shard, spec, codec_train_videos, codec_train_vectors,
                    fidelity_videos, fidelity_queries, batch_rows, seed,
                    auto={"min_agreement": min_agreement, "candidates": codec_candidates,
                          "max_bytes_per_video": max_bytes_per_video} if auto else None,
                    text_queries=fidelity_text)
                if by_default and "selection" in codec_record:
                    codec_record["selection"]["default_at_videos"] = AUTO_DEFAULT_MIN_VIDEOS
            writer = FineStoreWriter(temp / STORE_DIR, len(ids), dims, codecs)
            fill_workers = _fill_workers(workers, len(shards), len(ids))
            if fill_runner is not None:
                _fill_store_on_runner(shards, per_shard, writer, batch_rows, fill_runner)
            elif fill_workers > 1:
                _fill_store_parallel(shards, per_shard, writer, batch_rows, fill_workers)
            else:
                _fill_store(shards, writer, batch_rows)
            writer.close()
            previews = write_preview_store(shards, ids, temp / PREVIEW_DIR)
            store_seconds = time.perf_counter() - started

            coarse = np.load(temp / STORE_DIR / "coarse.npy", mmap_mode="r")[:len(ids)]
            index_start = time.perf_counter()
            factory = factory or recall.default_factory(len(ids))
            index = recall.build(coarse, factory, nprobe, seed=seed,
                                 ondisk_dir=temp if len(ids) >= recall.ONDISK_MIN_VIDEOS
                                 else None)
            tuned: dict | None = None
            if not recall.describe(index, factory)["exact"]:
                queries = recall.held_out_queries(coarse, min(recall_sample, len(ids)), seed)
                tuned = recall.tune(index, coarse, queries, recall_check_k, recall_target,
                                    fixed=nprobe)
                check_recall(tuned, min_recall)
            index_seconds = time.perf_counter() - index_start
            info = recall.describe(index, factory)
            if tuned is not None:
                info["recall_vs_exact"] = tuned
            recall.save(index, temp / RECALL_FILE)
            write_video_ids(temp, ids)
            manifest = make_manifest(
                model_id=model_id, checkpoint_sha256=sha, dims=dims, num_videos=len(ids),
                num_error_rows=error_rows, decode_quality=qualities, shards=shards, index_info=info,
                fine_store=writer.describe(codec_record),
                build_seconds={"store": round(store_seconds, 3), "index": round(index_seconds, 3),
                               "total": round(time.perf_counter() - started, 3)})
            manifest["feature_schema_versions_read"] = previews.pop("feature_schema_versions")
            manifest["previews"] = previews
            write_json(temp / MANIFEST, manifest)  # last: its presence marks the directory complete
        return manifest


# Below this many videos, `workers=None` fills in-process: spawning workers (each imports torch
# and FAISS, seconds) costs more than it saves.
PARALLEL_MIN_VIDEOS = 2000


def _fill_workers(workers: int | None, num_shards: int, num_videos: int) -> int:
    """Processes for the store fill: `workers` (None: the cpu count from PARALLEL_MIN_VIDEOS
    videos on, else 1), at most one per shard, 1 in a daemonic process (no children there)."""
    import multiprocessing
    import os

    if multiprocessing.current_process().daemon:
        return 1
    if workers is None:
        workers = (os.cpu_count() or 1) if num_videos >= PARALLEL_MIN_VIDEOS else 1
    return max(1, min(workers, num_shards))


class RecallTooLowError(UserInputError):
    """The recall index misses --min-recall on held-out queries."""


def check_recall(tuned: dict, min_recall: float | None) -> None:
    """Log the tuned recall; warn loudly when the target is missed, raise RecallTooLowError when
    the recall is below `min_recall`."""
    name = tuned.get("parameter", "parameters")
    log.info("recall@%d vs exact on %d held-out queries: %.4f at %s=%s (target %.2f)",
             tuned["k"], tuned["num_queries"], tuned["recall"], name, tuned["value"],
             tuned["target"])
    if not tuned["met"]:
        log.warning("RECALL TARGET MISSED: recall@%d vs exact is %.4f < target %.2f even at %s=%s;"
                    " queries will miss true neighbours (use a finer --index-factory, e.g. "
                    "IVF...,Flat or Flat, or a lower --recall-target)", tuned["k"],
                    tuned["recall"], tuned["target"], name, tuned["value"])
    if min_recall is not None and tuned["recall"] < min_recall:
        raise RecallTooLowError(
            f"recall@{tuned['k']} vs exact on {tuned['num_queries']} held-out queries is "
            f"{tuned['recall']:.4f} < --min-recall {min_recall} ({name} curve: "
            f"{tuned.get('curve')}); no index written")


def _build_and_upload(output: str, overwrite: bool,
                      build: Callable[..., dict]) -> dict:
    """Build the index for URL `output` in a local temp directory (under the local cache dir)
    and upload it with its manifest last (`eercf_core.index.remote.upload_index`); the remote
    output is locked for the whole build. Returns the manifest."""
    check_writable_dir(output)
    if not overwrite and index_exists(output):  # checked again on upload; fail before the work
        raise UserInputError(f"{output}: already exists (pass --overwrite to replace it)")
    staging = Path(paths.cache_dir()) / "builds"
    staging.mkdir(parents=True, exist_ok=True)
    with OutputLock(lock_beside(output), "build-index", output), \
            tempfile.TemporaryDirectory(dir=staging, prefix="index-") as temp:
        manifest = build(str(Path(temp) / "index"))
        upload_index(Path(temp) / "index", output, overwrite)
    return manifest


def remove_stale_temps(out: Path) -> int:
    """Delete the temp directories beside `out` that killed builds left (`.<name>.tmp-<pid>...`,
    `.<name>.old.tmp-<pid>...`, and the older `.<name>.old-<pid>`) whose pid no longer runs;
    a live build's temp is never touched. Returns how many were removed."""
    if not out.parent.is_dir():
        return 0
    removed = 0
    for marker in (TEMP_MARKER, ".old-"):
        for entry in out.parent.glob(f".{glob_escape(out.name)}*{marker}*"):
            pid = temp_owner_pid(entry.name, marker)
            if pid is None or pid_alive(pid):
                continue
            log.warning("removing %s, left by build-index process %d (no longer running)",
                        entry, pid)
            if entry.is_dir():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)
            removed += 1
    return removed
