"""Fidelity of a decode quality judged by features and rankings, not pixels (bench_decode).

- `feature_cosines`: per-video cosine between the features of two decodes of the same videos
  (coarse vector v, and each valid frame's raw CLIP feature f, worst frame per video).
- `cosine_stats`: min / 1st percentile / mean of such per-video cosines.
- `neighbour_lists_changed`: whether video-to-video top-10 lists over the same real videos
  move when the gallery is decoded the other way.
- `demo_rankings`: the trained demo model on the demo's test corpus, extracted once per decode
  quality with the real jobs (`eercf extract` and `eercf query` run as processes, build-index
  and evaluate from eercf_core): R@1/5/10 of coarse
  recall and two-stage ranking, and how many two-stage top-10 lists changed.
"""
from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

from eercf_core import VideoFeatures

log = logging.getLogger("bench.decode")
ROOT = Path(__file__).resolve().parents[1]  # the repository: `python -m pipelines.cli` runs there
GATE_P1_COSINE = 0.999  # issue 13: coarse and frame cosine >= this at the 1st percentile
DEMO_MODES: tuple[tuple[str, list[str]], ...] = (("coarse", ["--recall-only"]),
                                                 ("two-stage", []))
TOP_LIST = 10


def _unit(x: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.normalize(x.float(), dim=-1)


def feature_cosines(reference: VideoFeatures, other: VideoFeatures) -> dict[str, np.ndarray]:
    """Per-video cosines [B] of two feature sets of the same B videos (same order).

    coarse: cos(v_ref, v_other); frame: the smallest cos(f_ref, f_other) over the frames valid
    in both (a video is as good as its worst frame)."""
    coarse = (_unit(reference.coarse) * _unit(other.coarse)).sum(-1)
    frames = (_unit(reference.frame) * _unit(other.frame)).sum(-1)  # [B, T]
    valid = reference.mask & other.mask
    worst = torch.where(valid, frames, torch.ones_like(frames)).min(dim=1).values
    return {"coarse": coarse.numpy(), "frame": worst.numpy()}


def neighbour_lists_changed(reference: VideoFeatures, other: VideoFeatures,
                            top: int = TOP_LIST) -> dict[str, int]:
    """Video-to-video retrieval on real content: each video's reference coarse vector queries
    the gallery of all reference vectors, then of all `other` vectors; counts the queries whose
    top-`top` list (order included) or top-1 differs between the two galleries."""
    queries = _unit(reference.coarse)
    k = min(top, len(queries))
    before = (queries @ _unit(reference.coarse).T).topk(k, dim=1).indices
    after = (queries @ _unit(other.coarse).T).topk(k, dim=1).indices
    return {"queries": len(queries), f"top{k}_lists_changed": int((before != after).any(1).sum()),
            "top1_changed": int((before[:, 0] != after[:, 0]).sum())}


def cosine_stats(cosines: np.ndarray) -> dict[str, float]:
    """min, 1st percentile (linear interpolation) and mean of per-video cosines."""
    values = np.asarray(cosines, dtype=np.float64)
    return {"min": round(float(values.min()), 6), "p1": round(float(np.percentile(values, 1)), 6),
            "mean": round(float(values.mean()), 6), "videos": int(values.size)}


def gate(stats: dict[str, dict[str, float]]) -> bool:
    """The issue's feature gate: coarse and frame cosine >= 0.999 at the 1st percentile."""
    return all(stats[kind]["p1"] >= GATE_P1_COSINE for kind in ("coarse", "frame"))


def _features_by_id(shard_dir: Path) -> tuple[list[str], VideoFeatures]:
    import pyarrow as pa

    from eercf_core.files import shards

    tables = [shards.read_shard(p) for p in shards.list_shards(str(shard_dir))]
    return shards.features_from_table(pa.concat_tables(tables))


def _select(features: VideoFeatures, order: list[int]) -> VideoFeatures:
    index = torch.as_tensor(order, dtype=torch.long)
    return VideoFeatures(coarse=features.coarse[index], frame=features.frame[index],
                         context=features.context[index], patch=features.patch[index],
                         mask=features.mask[index])


def _eercf(args: list[str]) -> None:
    """Run `eercf ARGS` as its own process (bench imports only eercf_core; the jobs are run
    through their command line, as a user would)."""
    command = [sys.executable, "-m", "pipelines.cli", *args]
    status = subprocess.run(command, cwd=ROOT, check=False).returncode
    if status != 0:
        raise RuntimeError(f"eercf {' '.join(args)} exited {status}")


def demo_rankings(model: str | Path, corpus: Path, work: Path, qualities: tuple[str, ...],
                  workers: int) -> dict:
    """Extract the demo test split with `model` once per decode quality, index, query, evaluate.

    Returns per quality: R@1/5/10 (+MdR, MnR) of coarse recall and two-stage ranking; and
    against the first quality: per-video feature cosines and how many queries' two-stage
    top-10 lists (and top-1) differ. Raises FileNotFoundError when the inputs are missing."""
    from eercf_core.evaluation.ranked import evaluate
    from eercf_core.files.text_formats import read_ranked
    from eercf_core.index import build_index

    manifest, queries, truth = (corpus / "test_manifest.tsv", corpus / "test_queries.tsv",
                                corpus / "test_ground_truth.tsv")
    for needed in (Path(model), manifest, queries, truth):
        if not needed.exists():
            raise FileNotFoundError(f"demo fidelity: {needed} does not exist (train the demo "
                                    "first: eercf demo --out DIR, then --demo-dir=DIR)")
    result: dict = {"model": str(model), "corpus": str(corpus), "metrics": {}}
    tops: dict[str, dict[str, list[str]]] = {}
    features = {}
    for quality in qualities:
        out = work / quality
        shutil.rmtree(out, ignore_errors=True)  # extract would resume an earlier run's shards
        _eercf(["extract", "--input", str(manifest), "--output", str(out / "features"),
                "--model", str(model), "--decode-quality", quality, "--workers", str(workers),
                "--batch-size", "32", "--progress-seconds", "60"])
        build_index([str(out / "features")], str(out / "index"), overwrite=True)
        features[quality] = _features_by_id(out / "features")
        result["metrics"][quality] = {}
        for mode, flags in DEMO_MODES:
            ranked = out / f"{mode}.tsv"
            _eercf(["query", "--index", str(out / "index"), "--queries", str(queries),
                    "--output", str(ranked), "--model", str(model), "--recall-k", "50",
                    "--top-n", "0", *flags])
            metrics = evaluate(str(ranked), str(truth))["reranked"]
            result["metrics"][quality][mode] = {k: metrics[k] for k in
                                                ("R@1", "R@5", "R@10", "MdR", "MnR")}
            if mode == "two-stage":
                tops[quality] = {q: [r.video_id for r in rows[:TOP_LIST]]
                                 for q, rows in read_ranked(str(ranked)).items()}
    reference = qualities[0]
    ref_ids, ref_features = features[reference]
    for quality in qualities[1:]:
        ids, other = features[quality]
        if sorted(ids) != sorted(ref_ids):
            raise ValueError(f"demo fidelity: {quality} and {reference} extracted different "
                             f"videos ({len(ids)} vs {len(ref_ids)} ok rows)")
        position = {video_id: i for i, video_id in enumerate(ids)}
        aligned = _select(other, [position[v] for v in ref_ids])
        cosines = feature_cosines(ref_features, aligned)
        changed = [q for q in tops[reference] if tops[quality].get(q) != tops[reference][q]]
        top1 = [q for q in tops[reference] if tops[quality][q][:1] != tops[reference][q][:1]]
        result[f"{quality}_vs_{reference}"] = {
            "cosine": {kind: cosine_stats(values) for kind, values in cosines.items()},
            "metrics_unchanged": result["metrics"][quality] == result["metrics"][reference],
            "top10_lists_changed": len(changed), "top1_changed": len(top1),
            "queries": len(tops[reference]), "changed_queries_sample": changed[:5]}
    (work / "demo_fidelity.json").write_text(json.dumps(result, indent=2) + "\n")
    return result
