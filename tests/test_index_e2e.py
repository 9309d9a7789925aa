"""Slow end to end: generated videos -> eercf extract -> build-index -> query -> evaluate, and the
index ranking equals eercf_core's two-stage (and exhaustive) ranking of the same shards."""
from __future__ import annotations

import json

import numpy as np
import pytest

import eercf_core as ec
from eercf_core.files.shards import features_from_table, list_shards, read_shard
from eercf_core.files.text_formats import read_ranked
from eercf_core.index import open_index
from eercf_core.index.codecs import FineCodecSpec
from eercf_core.index.fidelity import round_trip
from eercf_core.video.writer import write_video
from pipelines.commands import build_index, evaluate, extract, query

pytestmark = pytest.mark.slow
CAPTIONS = ["a bright red scene", "dark moving shapes", "a green field", "blue sky slowly"]


def test_extract_index_query_evaluate(tmp_path):
    model = ec.create_model("eercf-tiny", seed=0)
    checkpoint = str(tmp_path / "model.pt")
    ec.save_model(model, checkpoint)
    rng = np.random.default_rng(0)
    for i in range(8):
        base = rng.integers(0, 255, size=(1, 48, 64, 3))
        frames = np.clip(base + np.arange(16)[:, None, None, None] * (i + 1), 0, 255)
        write_video(tmp_path / "videos" / f"clip{i}.mp4", frames.astype(np.uint8), fps=8)
    (tmp_path / "videos" / "broken.mp4").write_bytes(b"not a video" * 50)
    assert extract.run(["--input", str(tmp_path / "videos"), "--output", str(tmp_path / "shards"),
                        "--model", checkpoint, "--device", "cpu", "--shard-size", "3",
                        "--decode-workers", "1"]) == 0
    (tmp_path / "q.jsonl").write_text("".join(json.dumps({"query_id": f"q{i}", "text": c}) + "\n"
                                              for i, c in enumerate(CAPTIONS)))
    ids, features = [], []
    for shard in list_shards(str(tmp_path / "shards")):
        i, f = features_from_table(read_shard(shard))
        ids += i
        features.append(f)
    loaded = ec.load_model(checkpoint, device="cpu")
    text = loaded.encode_text(CAPTIONS)
    # fp16 (today's store) and a compressed store: PQ patches scored on codes, SQ8 frames.
    for codec in ("fp16", "patch=PQ8,frame=SQ8,context=SQ8"):
        index_dir = tmp_path / f"index-{codec}"
        assert build_index.run(["--shards", str(tmp_path / "shards"), "--output", str(index_dir),
                                "--fine-codec", codec]) == 0
        manifest = json.loads((index_dir / "manifest.json").read_text())
        assert manifest["num_videos"] == 8 and manifest["num_error_rows"] == 1
        assert manifest["checkpoint_sha256"] == model.identity.checkpoint_sha256
        assert FineCodecSpec.parse(manifest["fine_store"]["codec"]) == FineCodecSpec.parse(codec)
        # the reference: the core's ranking of the shard features as the store's codecs decode them
        video = round_trip(ec.VideoFeatures.cat(features), open_index(index_dir).store.codecs)
        common = ["--index", str(index_dir), "--queries", str(tmp_path / "q.jsonl"),
                  "--model", checkpoint, "--top-n", "0"]
        for mode, reference in (([], ec.two_stage_rank(loaded, text, video, k=3)),
                                (["--exhaustive"], ec.exhaustive_rank(loaded, text, video))):
            out = tmp_path / f"ranked{len(mode)}-{codec}.tsv"
            assert query.run([*common, "--recall-k", "3", "--output", str(out), *mode]) == 0
            ranked = read_ranked(str(out))
            for q in range(len(CAPTIONS)):
                assert [r.video_id for r in ranked[f"q{q}"]] == [ids[i] for i in
                                                                  reference.indices[q].tolist()]
                np.testing.assert_allclose([r.score for r in ranked[f"q{q}"]],
                                           reference.scores[q].numpy(), atol=1e-4)
    (tmp_path / "gt.tsv").write_text("".join(f"q{i}\t{ids[i]}\n" for i in range(len(CAPTIONS))))
    assert evaluate.run(["--ranked", str(tmp_path / "ranked0-fp16.tsv"), "--ground-truth",
                         str(tmp_path / "gt.tsv"), "--output", str(tmp_path / "eval")]) == 0
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["reranked"]["num_queries"] == 4 and metrics["reranked"]["censored"] == 0
