"""Previews: JPEG encoding, the index's preview store, schema v1 shards without previews, and the
frame-gate weights the report shows."""
from __future__ import annotations

import io
import json

import numpy as np
import pytest
import torch
from PIL import Image

import eercf_core as ec
from eercf_core.files.shards import read_shard, shard_version, write_shard
from eercf_core.index import build_index as build_index_directory
from eercf_core.video import previews
from schemas.video_features import COLUMNS_SINCE
from tests.index_fixtures import DIMS, write_synthetic_shards
from tests.report_fixtures import make_corpus


def _image(payload: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(payload)).convert("RGB"), dtype=np.int32)


def test_encode_previews_middle_frame_and_strip():
    t, s = 6, 160
    frames = np.zeros((t, s, s, 3), dtype=np.uint8)
    for i in range(5):  # 5 valid frames, each its own grey level; slot 5 padded
        frames[i] = 40 * (i + 1)
    mask = np.array([True] * 5 + [False])
    out = previews.encode_previews(frames, mask)
    thumb, strip = _image(out["preview_jpeg"]), _image(out["preview_strip_jpeg"])
    assert thumb.shape == (previews.THUMB_SIZE, previews.THUMB_SIZE, 3)  # 160 px -> 128
    assert abs(thumb.mean() - 120) < 3  # the middle valid frame (index 2 of 5, level 120)
    cell = previews.STRIP_CELL
    assert strip.shape == (cell, 5 * cell, 3)  # valid frames only, one cell each
    levels = [strip[:, k * cell + 8:(k + 1) * cell - 8].mean() for k in range(5)]
    np.testing.assert_allclose(levels, [40, 80, 120, 160, 200], atol=4)
    assert len(out["preview_jpeg"]) < 8000 and len(out["preview_strip_jpeg"]) < 8000
    assert previews.encode_previews(frames, np.zeros(t, dtype=bool)) == {
        "preview_jpeg": None, "preview_strip_jpeg": None}


def test_preview_store_roundtrip_and_corruption(tmp_path):
    writer = previews.PreviewStoreWriter(tmp_path / "p")
    writer.append(b"thumb0", b"strip0")
    writer.append(None, None)
    writer.append(b"t2", b"")
    meta = writer.close()
    assert meta["num_videos"] == 3 and meta["with_preview"] == 2
    store = previews.PreviewStore(tmp_path / "p")
    assert [store.get(i) for i in range(3)] == [b"thumb0", None, b"t2"]
    assert [store.get(i, "strip") for i in range(3)] == [b"strip0", None, None]
    with pytest.raises(IndexError, match="out of range"):
        store.get(3)
    (tmp_path / "p" / "thumb.bin").write_bytes(b"short")
    with pytest.raises(ValueError, match=r"thumb.bin: 5 bytes"):
        previews.PreviewStore(tmp_path / "p")
    assert previews.open_previews(tmp_path / "no-index") is None


def test_index_of_v2_shards_has_previews_by_row(tmp_path):
    corpus = make_corpus(tmp_path / "c")
    manifest = json.loads((corpus.index / "manifest.json").read_text())
    assert manifest["previews"]["with_preview"] == 16
    assert manifest["feature_schema_versions_read"] == [2]
    store = previews.open_previews(corpus.index)
    ids = json.loads((corpus.index / "video_ids.json").read_text())
    for row in (0, 7, 15):
        number = int(ids[row][3:])
        expected = previews.encode_previews(corpus.frames[number], corpus.mask[number])
        assert store.get(row) == expected["preview_jpeg"]
        assert store.get(row, "strip") == expected["preview_strip_jpeg"]


def test_version_1_shards_still_index_and_query(tmp_path):
    write_synthetic_shards(tmp_path / "v1", 12, per_shard=5, errors=(2,))
    for path in sorted((tmp_path / "v1").glob("*.parquet")):  # rewrite them as version 1
        table = read_shard(str(path))
        assert "preview_jpeg" in table.column_names
        rows = [{k: v for k, v in r.items() if k not in COLUMNS_SINCE}  # version 2 columns
                for r in table.to_pylist()]
        write_shard(str(path), rows, DIMS, "synthetic", "0" * 64, version=1)
        assert shard_version(str(path)) == 1
        assert "preview_jpeg" not in read_shard(str(path)).column_names
    build_index_directory([str(tmp_path / "v1")], str(tmp_path / "index"))
    manifest = json.loads((tmp_path / "index" / "manifest.json").read_text())
    assert manifest["num_videos"] == 12 and manifest["previews"]["with_preview"] == 0
    assert manifest["feature_schema_versions_read"] == [1]
    assert previews.open_previews(tmp_path / "index").get(0) is None

    # a v1 corpus from a real model: query works end to end
    corpus = make_corpus(tmp_path / "c1", version=1)
    ranked = corpus.ranked.read_text().splitlines()
    assert len(ranked) == 1 + 7 * 16


def test_frame_gate_weights_are_the_s_fs_gate():
    torch.manual_seed(0)
    q, n, t, d = 3, 4, 5, 8
    normalise = torch.nn.functional.normalize
    text = normalise(torch.randn(q, d), dim=-1)
    frame = normalise(torch.randn(q, n, t, d), dim=-1)
    context = normalise(torch.randn(q, n, t, d), dim=-1)
    mask = torch.ones(q, n, t, dtype=torch.bool)
    mask[:, 1, -2:] = False
    gate = ec.scores.frame_gate_weights(text, frame, mask)
    assert gate.shape == (q, n, t)
    torch.testing.assert_close(gate.sum(-1), torch.ones(q, n))
    assert bool((gate[:, 1, -2:] == 0).all())
    # S_Fs rebuilt from these weights equals the score module's S_Fs
    params = ec.ScoreParams.identity(d, t)
    pooled = normalise(torch.einsum("qnt,qntd->qnd", gate, context), dim=-1)
    rebuilt = params.logit_scale * torch.einsum("qd,qnd->qn", text, pooled)
    fine = ec.scores.candidate_fine_scores(text, frame, context, torch.randn(q, n, t * 2, d),
                                           mask, params, scores=["S_Fs"])
    torch.testing.assert_close(rebuilt, fine["S_Fs"], atol=1e-4, rtol=1e-5)
