"""Vector codecs for the fine-feature store: FAISS standalone codecs chosen by a spec string.

A spec names one codec for every fine feature kind, or one per kind:
  "fp16"                               float16 as in the shards (today's store, the default)
  "PQ64"                               any FAISS `index_factory` string with a standalone codec
                                       (sa_encode/sa_decode): SQ8, SQ4, SQfp16, PQ64, PQ64x4,
                                       OPQ64,PQ64, RQ8x8, LSQ.., IVF256,PQ64 (residual PQ), ..
  "patch=PQ64,frame=SQ8,context=SQ8"  per kind; a kind not named stays fp16. Factory strings may
                                       contain commas ("patch=OPQ64,PQ64,frame=SQ8"): a comma item
                                       without "=" continues the previous kind's string.
Codecs are trained on a bounded sample of the kind's vectors (`VectorCodec.train`), then encode
[n, D] float vectors to [n, code_size] uint8 codes and decode them back to float32.
Inner products with codes: PQ codecs (also after an OPQ rotation) score through per-query lookup
tables (`VectorCodec.query_tables`), without materialising decoded vectors; an OPQ codec's
queries are rotated once (`to_code_space`) so its codes decode without the inverse rotation
(`decode_code_space`).
"""
from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import faiss
import numpy as np

if TYPE_CHECKING:
    import torch

from eercf_core.errors import UserInputError

log = logging.getLogger(__name__)

# FAISS encodes PQ codes with sub-vectors of >= 16 dims (PQ32 at D = 512) through a distance
# table of block x M x 256 floats per block of vectors (default block 262,144: 1 GB per 32,768
# vectors at PQ32), which spills the caches: blocks of 256 vectors encode the same codes 4.7x
# faster on one thread (25k -> 117k vectors/s, PQ32 at D = 512; OPQ32,PQ32 3.7x, IVF256,PQ32 4.1x;
# PQ64, whose 8-dim sub-vectors take the per-vector path, unchanged).
PQ_ENCODE_BLOCK = 256
if hasattr(faiss.cvar, "product_quantizer_compute_codes_bs"):  # FAISS >= 1.7.3
    faiss.cvar.product_quantizer_compute_codes_bs = PQ_ENCODE_BLOCK

FP16 = "fp16"
CODED_KINDS = ("frame", "context", "patch")
# Training vectors per codec (PQ: 256 per centroid of an 8-bit sub-quantizer, FAISS's own cap).
DEFAULT_TRAIN_VECTORS = 65_536
# OPQ rotation / PQ alternations (FAISS default 50: ~10 min for OPQ64 on 65,536 512-d vectors on
# the shared 2-core box; the rotation's gain on rerank-score error is already there at 10).
OPQ_ITERATIONS = 10


@dataclass(frozen=True)
class FineCodecSpec:
    """The codec of each fine feature kind: {"frame": .., "context": .., "patch": ..}."""

    frame: str = FP16
    context: str = FP16
    patch: str = FP16

    @classmethod
    def parse(cls, text: str | None) -> FineCodecSpec:
        """Parse "fp16", one factory string for all kinds, or "kind=factory,..." (see module
        doc)."""
        text = (text or FP16).strip()
        if not text:
            raise UserInputError("--fine-codec: empty codec spec")
        if "=" not in text:
            return cls(*(_normalise(text, kind="all kinds"),) * 3)
        chosen: dict[str, list[str]] = {}
        current = None
        for item in text.split(","):
            item = item.strip()
            name, sep, value = item.partition("=")
            if sep:
                current = name.strip()
                if current not in CODED_KINDS:
                    raise UserInputError(f"--fine-codec {text!r}: unknown feature kind "
                                         f"{current!r}; kinds: {', '.join(CODED_KINDS)}")
                if current in chosen:
                    raise UserInputError(f"--fine-codec {text!r}: kind {current!r} given twice")
                chosen[current] = [value.strip()]
            elif current is None:
                raise UserInputError(f"--fine-codec {text!r}: {item!r} before any kind=codec")
            else:
                chosen[current].append(item)
        return cls(**{kind: _normalise(",".join(parts), kind=kind)
                      for kind, parts in chosen.items()})

    def codec(self, kind: str) -> str:
        return getattr(self, kind)

    @property
    def is_fp16(self) -> bool:
        return all(self.codec(kind) == FP16 for kind in CODED_KINDS)

    def __str__(self) -> str:
        values = {self.codec(kind) for kind in CODED_KINDS}
        if len(values) == 1:
            return values.pop()
        return ",".join(f"{kind}={self.codec(kind)}" for kind in CODED_KINDS)

    def validate(self, embed_dim: int) -> None:
        """Build every named codec for vectors of `embed_dim` (ValueError naming a bad one)."""
        for kind in CODED_KINDS:
            if self.codec(kind) != FP16:
                VectorCodec(self.codec(kind), embed_dim, kind=kind)


def _normalise(factory: str, kind: str) -> str:
    if not factory:
        raise UserInputError(f"--fine-codec: empty codec for {kind}")
    return FP16 if factory.lower() in (FP16, "float16") else factory


class VectorCodec:
    """One FAISS standalone codec for D-dimensional vectors.

    `factory` is an `index_factory` string; `kind` only names the codec in error messages.
    """

    def __init__(self, factory: str, dim: int, kind: str = "vectors",
                 index: faiss.Index | None = None) -> None:
        self.factory, self.dim, self.kind = factory, dim, kind
        if index is None:
            try:
                # L2: the metric only matters for search; FAISS PQ training under the inner-product
                # metric ran >10x slower here.
                index = faiss.index_factory(dim, factory, faiss.METRIC_L2)
            except RuntimeError as exc:
                raise UserInputError(f"codec {factory!r} for {kind}: not a FAISS index_factory "
                                     f"string for dimension {dim}: {_faiss_message(exc)}"
                                     ) from None
        self.index = index
        for part in _parts(index):
            if hasattr(part, "do_polysemous_training"):
                # Polysemous training (index_factory's default for "PQ..") only serves Hamming
                # search, which the store never does, and costs ~40x the k-means.
                part.do_polysemous_training = False
            if isinstance(part, faiss.IndexPreTransform):
                for i in range(part.chain.size()):  # type: ignore[attr-defined]
                    transform = faiss.downcast_VectorTransform(
                        part.chain.at(i))  # type: ignore[attr-defined]  # a SWIG vector
                    if isinstance(transform, faiss.OPQMatrix):
                        transform.niter = OPQ_ITERATIONS
        try:
            self.code_size = int(index.sa_code_size())
        except RuntimeError as exc:
            raise UserInputError(
                f"codec {factory!r} for {kind}: FAISS index {type(index).__name__} has no "
                f"standalone codec (sa_encode): {_faiss_message(exc)}") from None
        self._pq_tables: torch.Tensor | None = None
        self._rotation: torch.Tensor | None = None  # [D, D] of an OPQ pre-transform, once read

    @property
    def is_trained(self) -> bool:
        return bool(self.index.is_trained)

    def train(self, sample: np.ndarray, seed: int = 0) -> None:
        """Train on sample [n, D] (float). Codecs that need no training accept any n >= 1."""
        sample = np.ascontiguousarray(sample, dtype=np.float32)
        if sample.ndim != 2 or sample.shape[1] != self.dim:
            raise ValueError(f"codec {self.factory!r} for {self.kind}: training sample must be "
                             f"[n, {self.dim}], got {sample.shape}")
        _seed_clustering(self.index, seed)
        try:
            self.index.train(sample)
        except RuntimeError as exc:
            raise UserInputError(f"codec {self.factory!r} for {self.kind}: training on "
                                 f"{len(sample)} vectors failed: {_faiss_message(exc)}") from None
        self._pq_tables = self._rotation = None

    def encode(self, vectors: np.ndarray) -> np.ndarray:
        """vectors [n, D] (float) -> codes [n, code_size] uint8."""
        self._check_trained()
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        return self.index.sa_encode(vectors)

    def decode(self, codes: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """codes [n, code_size] uint8 -> vectors [n, D] float32 (one vectorised FAISS sa_decode).

        `out`, a C-contiguous float32 [n, D] buffer, is filled and returned if given (reusing a
        buffer measured ~3x faster than letting FAISS allocate: fresh pages fault on first write).
        """
        self._check_trained()
        codes = np.ascontiguousarray(codes, dtype=np.uint8)
        if out is None:
            return self.index.sa_decode(codes)
        if out.dtype != np.float32 or out.shape != (len(codes), self.dim) \
                or not out.flags.c_contiguous:
            raise ValueError(f"codec {self.factory!r}: decode buffer must be C-contiguous float32 "
                             f"[{len(codes)}, {self.dim}], got {out.dtype} {out.shape}")
        self.index.sa_decode(codes, out)
        return out

    def decode_torch(self, codes: np.ndarray) -> torch.Tensor:
        """codes [*R, code_size] -> float32 tensor [*R, D]."""
        import torch
        decoded = torch.from_numpy(self.decode(codes.reshape(-1, self.code_size)))
        return decoded.view(*codes.shape[:-1], self.dim)

    def _code_space(self) -> tuple[torch.Tensor | None, faiss.Index]:
        """(A, inner): a codec "OPQ..,<inner>" is an orthonormal A [D, D] then `inner`, so
        s·decode(c) = (A s)·inner_decode(c); (None, the index) for any other codec."""
        import torch
        index = faiss.downcast_index(self.index)
        if not isinstance(index, faiss.IndexPreTransform) \
                or index.chain.size() != 1:  # type: ignore[attr-defined]
            return None, index
        transform = faiss.downcast_VectorTransform(
            index.chain.at(0))  # type: ignore[attr-defined]
        if not (isinstance(transform, faiss.LinearTransform) and transform.is_orthonormal
                and not transform.have_bias and transform.d_in == transform.d_out == self.dim):
            return None, index
        if self._rotation is None and self.is_trained:
            self._rotation = torch.from_numpy(faiss.vector_to_array(transform.A).reshape(
                self.dim, self.dim).copy())
        return self._rotation, faiss.downcast_index(index.index)

    def to_code_space(self, queries: torch.Tensor) -> torch.Tensor:
        """queries [*R, D] float32 -> [*R, D] whose inner products with `decode_code_space`
        vectors equal their inner products with `decode` vectors (an OPQ codec rotates the
        queries once instead of rotating every decoded vector back; others: unchanged)."""
        rotation, _ = self._code_space()
        return queries if rotation is None else queries @ rotation.T

    def decode_code_space(self, codes: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """codes [n, code_size] -> [n, D] float32 vectors in the codec's code space (`decode`
        without an OPQ codec's inverse rotation: D² multiply-adds per vector saved)."""
        self._check_trained()
        rotation, inner = self._code_space()
        if rotation is None:
            return self.decode(codes, out)
        codes = np.ascontiguousarray(codes, dtype=np.uint8)
        if out is None:
            return inner.sa_decode(codes)
        inner.sa_decode(codes, out)
        return out

    @property
    def scores_on_codes(self) -> bool:
        """Whether `inner_products` scores codes by lookup tables (no decoding)."""
        return self._lookup_tables() is not None

    def query_tables(self, queries: torch.Tensor) -> torch.Tensor:
        """Per-query lookup tables [Q, M*ksub] (PQ codecs only): entry (m, c) = s_m · centroid_mc.

        queries [Q, D] float32. Σ_m table[m, code_m] is the inner product with the decoded vector.
        """
        import torch
        tables = self._lookup_tables()
        if tables is None:
            raise ValueError(f"codec {self.factory!r} has no lookup-table scoring")
        m, ksub, dsub = tables.shape
        queries = self.to_code_space(queries.float())
        return torch.einsum("qmd,mcd->qmc", queries.reshape(-1, m, dsub),
                            tables).reshape(len(queries), m * ksub)

    def code_offsets(self, codes: np.ndarray) -> torch.Tensor:
        """codes [*R, M] uint8 -> int64 [*R, M] positions into `query_tables` rows."""
        import torch
        tables = self._lookup_tables()
        assert tables is not None
        offsets = torch.arange(tables.shape[0]) * tables.shape[1]
        return torch.from_numpy(codes.astype(np.int64)) + offsets

    def _lookup_tables(self) -> torch.Tensor | None:
        """PQ centroids [M, ksub, dsub] when the codec is an 8-bit PQ (after an OPQ rotation or
        not), else None."""
        import torch
        _, inner = self._code_space()
        if self._pq_tables is None and isinstance(inner, faiss.IndexPQ) \
                and inner.pq.nbits == 8 and self.is_trained:
            pq = inner.pq
            self._pq_tables = torch.from_numpy(
                faiss.vector_to_array(pq.centroids).reshape(pq.M, pq.ksub, pq.dsub).copy())
        return self._pq_tables

    def _check_trained(self) -> None:
        if not self.is_trained:
            raise ValueError(f"codec {self.factory!r} for {self.kind} is not trained")

    def save(self, path: str | Path) -> str:
        """Write the trained codec to `path` (FAISS format); returns its sha256."""
        self._check_trained()
        data = faiss.serialize_index(self.index).tobytes()
        Path(path).write_bytes(data)
        return hashlib.sha256(data).hexdigest()

    @classmethod
    def load(cls, path: str | Path, factory: str, dim: int, kind: str,
             sha256: str | None = None) -> VectorCodec:
        """Read a codec written by `save`; ValueError naming the file if missing, corrupt or not
        the recorded codec (sha256, dimension, code size)."""
        path = Path(path)
        if not path.is_file():
            raise ValueError(f"{path}: codec file of the {kind} features ({factory}) is missing")
        data = path.read_bytes()
        if sha256 is not None and hashlib.sha256(data).hexdigest() != sha256:
            raise ValueError(f"{path}: codec file of the {kind} features ({factory}) is corrupt "
                             "(sha256 differs from the one recorded at build time)")
        try:
            index = faiss.deserialize_index(np.frombuffer(data, dtype=np.uint8))
        except RuntimeError as exc:
            raise ValueError(f"{path}: codec file of the {kind} features ({factory}) is "
                             f"unreadable: {_faiss_message(exc)}") from None
        if index.d != dim or not index.is_trained:
            raise ValueError(f"{path}: codec of the {kind} features has dimension {index.d} "
                             f"(trained: {index.is_trained}); the store expects a trained "
                             f"{dim}-d {factory} codec")
        return cls(factory, dim, kind, index=index)


def _parts(index: faiss.Index) -> list:
    """The index, downcast, and the indices it wraps (pre-transform, IVF quantizer)."""
    parts, todo = [], [index]
    while todo:
        part = faiss.downcast_index(todo.pop())
        parts.append(part)
        for attribute in ("index", "quantizer"):
            inner = getattr(part, attribute, None)
            if isinstance(inner, faiss.Index):
                todo.append(inner)
    return parts


def _seed_clustering(index: faiss.Index, seed: int) -> None:
    """Make k-means based training reproducible (FAISS seeds its clustering with 1234 otherwise)."""
    for part in _parts(index):
        for quantizer in (part, getattr(part, "pq", None)):
            params = getattr(quantizer, "cp", None)
            if isinstance(params, faiss.ClusteringParameters):
                params.seed = seed


def _faiss_message(exc: RuntimeError) -> str:
    """The first informative line of a FAISS C++ exception."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    for line in lines:
        if line.lower().startswith("error"):
            return line
    return lines[-1] if lines else repr(exc)


def sample_rows(num_rows: int, limit: int, seed: int = 0) -> np.ndarray:
    """Sorted indices of min(limit, num_rows) rows drawn without replacement."""
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(num_rows, min(limit, num_rows), replace=False))


def train_codecs(spec: FineCodecSpec, samples: dict[str, np.ndarray], dim: int,
                 max_vectors: int = DEFAULT_TRAIN_VECTORS, seed: int = 0
                 ) -> dict[str, VectorCodec]:
    """Train the codec of every non-fp16 kind on (a sample of at most `max_vectors` of) its
    vectors: samples[kind] [n, D]. Returns {kind: trained codec}."""
    codecs = {}
    for kind in CODED_KINDS:
        factory = spec.codec(kind)
        if factory == FP16:
            continue
        vectors = samples[kind].reshape(-1, dim)
        vectors = vectors[sample_rows(len(vectors), max_vectors, seed)]
        codec = VectorCodec(factory, dim, kind=kind)
        codec.train(vectors, seed=seed)
        log.info("codec %s for %s: trained on %d vectors, %d B per vector", factory, kind,
                 len(vectors), codec.code_size)
        codecs[kind] = codec
    return codecs
