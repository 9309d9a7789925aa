"""Fine-store codecs: spec parsing, round trip and error bounds, lookup-table scores, codec
files."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from eercf_core.index.codecs import FP16, FineCodecSpec, VectorCodec, train_codecs
from eercf_core.index.fidelity import corpus_queries, measure_fidelity
from eercf_core.scoring.scores import ScoreParams
from tests.index_fixtures import DIMS, as_video_features, random_features


def _unit(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    x = rng.standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_spec_parsing():
    assert FineCodecSpec.parse(None).is_fp16 and FineCodecSpec.parse("fp16").is_fp16
    assert FineCodecSpec.parse("PQ64") == FineCodecSpec("PQ64", "PQ64", "PQ64")
    spec = FineCodecSpec.parse("patch=OPQ64,PQ64,frame=SQ8")
    assert (spec.patch, spec.frame, spec.context) == ("OPQ64,PQ64", "SQ8", FP16)
    assert str(spec) == "frame=SQ8,context=fp16,patch=OPQ64,PQ64"
    assert FineCodecSpec.parse(str(spec)) == spec
    for bad, message in (("coarse=SQ8", "unknown feature kind 'coarse'"),
                         ("patch=SQ8,patch=SQ4", "given twice"), ("patch=", "empty codec"),
                         ("", "empty codec spec")):
        with pytest.raises(ValueError, match=message):
            FineCodecSpec.parse(bad) if bad else FineCodecSpec.parse(" ")


def test_bad_factory_strings_are_refused_with_their_name():
    with pytest.raises(ValueError, match="'PQ5' for patch: not a FAISS index_factory string"):
        FineCodecSpec.parse("patch=PQ5").validate(16)
    with pytest.raises(ValueError, match=r"'HNSW8' for frame: .* no standalone codec"):
        FineCodecSpec.parse("frame=HNSW8").validate(16)


@pytest.mark.parametrize(("factory", "bytes_per_vector", "max_error"), [
    ("SQ8", 16, 0.01), ("SQfp16", 32, 1e-3), ("PQ4", 4, None), ("IVF4,PQ4", 5, None)])
def test_round_trip_error_bounds(factory, bytes_per_vector, max_error):
    rng = np.random.default_rng(0)
    train, test = _unit(rng, 1500, 16), _unit(rng, 200, 16)
    codec = VectorCodec(factory, 16, kind="patch")
    # the test vectors are in the training set: scalar quantisers clip outside the trained range
    codec.train(np.concatenate([train, test]))
    codes = codec.encode(test)
    assert codes.shape == (200, bytes_per_vector) and codes.dtype == np.uint8
    decoded = codec.decode(codes)
    buffer = np.empty((200, 16), dtype=np.float32)
    assert codec.decode(codes, out=buffer) is buffer and np.array_equal(buffer, decoded)
    with pytest.raises(ValueError, match=r"decode buffer must be C-contiguous float32 \[200, 16\]"):
        codec.decode(codes, out=np.empty((200, 16), dtype=np.float16))
    assert torch.equal(codec.decode_torch(codes.reshape(10, 20, -1)),
                       torch.from_numpy(decoded).view(10, 20, 16))
    error = np.abs(decoded - test).max()
    if max_error is not None:  # scalar quantisers: per-coordinate error bounded by the step
        assert error <= max_error
    else:  # PQ: a real approximation, clearly better than knowing nothing
        residual = np.linalg.norm(decoded - test, axis=1).mean()
        assert residual < 0.8 * np.linalg.norm(test - test.mean(0), axis=1).mean()
    # inner products with decoded vectors follow from the reconstruction error (Cauchy-Schwarz)
    queries = _unit(rng, 5, 16)
    ip_error = np.abs(queries @ decoded.T - queries @ test.T)
    assert (ip_error <= np.linalg.norm(decoded - test, axis=1)[None] + 1e-5).all()


@pytest.mark.parametrize("factory", ["PQ2", "OPQ2,PQ2", "IVF4,PQ2"])
def test_small_pq_encode_blocks_give_faiss_default_codes(factory):
    """Codes encoded with PQ_ENCODE_BLOCK (set when codecs is imported) equal those of FAISS's
    default block, on sub-vectors of 16 dims (the distance-table path the block size affects)."""
    import faiss

    from eercf_core.index import codecs

    assert faiss.cvar.product_quantizer_compute_codes_bs == codecs.PQ_ENCODE_BLOCK
    rng = np.random.default_rng(0)
    x = _unit(rng, 3000, 32)
    codec = VectorCodec(factory, 32)
    codec.train(x[:2000], seed=0)
    small = codec.encode(x)
    faiss.cvar.product_quantizer_compute_codes_bs = 256 * 1024  # FAISS's default
    try:
        default = codec.encode(x)
    finally:
        faiss.cvar.product_quantizer_compute_codes_bs = codecs.PQ_ENCODE_BLOCK
    np.testing.assert_array_equal(small, default)


def test_pq_lookup_tables_score_codes_without_decoding():
    rng = np.random.default_rng(1)
    codec = VectorCodec("PQ4", 16)
    codec.train(_unit(rng, 1500, 16))
    codes = codec.encode(_unit(rng, 30, 16))
    assert codec.scores_on_codes and not VectorCodec("SQ8", 16).scores_on_codes
    queries = torch.from_numpy(_unit(rng, 3, 16))
    tables = codec.query_tables(queries)
    sums = tables[:, codec.code_offsets(codes).view(-1)].view(3, 30, 4).sum(-1)
    torch.testing.assert_close(sums, queries @ codec.decode_torch(codes).T, rtol=0, atol=1e-5)


def test_codec_file_round_trip_and_refusals(tmp_path):
    rng = np.random.default_rng(2)
    codec = VectorCodec("SQ8", 16, kind="patch")
    codec.train(_unit(rng, 100, 16))
    sha = codec.save(tmp_path / "patch.codec")
    loaded = VectorCodec.load(tmp_path / "patch.codec", "SQ8", 16, "patch", sha)
    x = _unit(rng, 10, 16)
    assert np.array_equal(loaded.encode(x), codec.encode(x))
    with pytest.raises(ValueError, match=r"missing\.codec: codec file of the patch .* missing"):
        VectorCodec.load(tmp_path / "missing.codec", "SQ8", 16, "patch", sha)
    with pytest.raises(ValueError, match="expects a trained 32-d"):
        VectorCodec.load(tmp_path / "patch.codec", "SQ8", 32, "patch", sha)
    data = bytearray((tmp_path / "patch.codec").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (tmp_path / "patch.codec").write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"patch.codec: .* corrupt"):
        VectorCodec.load(tmp_path / "patch.codec", "SQ8", 16, "patch", sha)
    (tmp_path / "patch.codec").write_bytes(b"not a faiss index")
    with pytest.raises(ValueError, match=r"patch.codec: .* unreadable"):
        VectorCodec.load(tmp_path / "patch.codec", "SQ8", 16, "patch")
    with pytest.raises(ValueError, match="not trained"):
        VectorCodec("PQ4", 16).encode(x)


def test_train_codecs_is_seeded_and_skips_fp16_kinds():
    features = random_features(40, DIMS, seed=3)
    spec = FineCodecSpec.parse("patch=PQ4,frame=SQ8")
    first = train_codecs(spec, {k: features[k] for k in ("frame", "patch")}, DIMS.embed_dim,
                         max_vectors=300)
    again = train_codecs(spec, {k: features[k] for k in ("frame", "patch")}, DIMS.embed_dim,
                         max_vectors=300)
    assert sorted(first) == ["frame", "patch"]
    patch = features["patch"].reshape(-1, DIMS.embed_dim)
    assert np.array_equal(first["patch"].encode(patch), again["patch"].encode(patch))


def test_fidelity_is_exact_for_identical_features_and_measures_a_codec():
    video = as_video_features(random_features(30, DIMS, seed=4))
    params = ScoreParams.identity(DIMS.embed_dim, DIMS.num_frames)
    queries = corpus_queries(video, 12, seed=0)
    same = measure_fidelity(video, video, queries, params, k=20)
    assert same["top10_agreement"] == 1.0
    assert all(e["max_abs"] == 0 for e in same["score_errors"].values())
    codec = VectorCodec("SQ4", DIMS.embed_dim)
    codec.train(video.patch.reshape(-1, DIMS.embed_dim).numpy())
    patch = codec.decode_torch(codec.encode(video.patch.reshape(-1, DIMS.embed_dim).numpy()))
    coded = as_video_features(random_features(30, DIMS, seed=4))
    coded.patch = patch.view_as(video.patch)
    measured = measure_fidelity(video, coded, queries, params, k=20)
    errors = measured["score_errors"]
    assert errors["S_Fw"]["max_abs"] == 0 and errors["S_Pw"]["max_abs"] > 0
    assert errors["final"]["max_abs"] <= 0.2 * errors["S_Pw"]["max_abs"] + 1e-4
    assert 0 <= measured["top10_agreement"] <= 1
