"""Compact sets of video ids for the launcher: 16 bytes per id instead of ~100-200.

The launcher of `eercf extract` must know, for every input, whether it is already done, and
check the inputs for repeated ids, at millions of videos. A Python set or dict of the id strings
costs ~100-200 bytes per id (the str object, the hash table slot, a value); `IdDigests` keeps
each id's 128-bit BLAKE2b digest in one sorted numpy array (`S16`: 16 bytes per id; 16 MB at 1M
ids, 160 MB at 10M) and answers membership for batches of ids by binary search.

Two different ids share a digest with probability ~n²/2¹²⁹ (about 1e-27 at 10M ids): not a
risk a run can meet. Exact answers where one is needed anyway (which lines repeat an id) come
from a second, targeted pass over the source (`eercf_core.files.inputs.check_manifest`).
"""
from __future__ import annotations

import hashlib
import itertools
from collections.abc import Iterable, Iterator

import numpy as np

DIGEST_BYTES = 16
BATCH = 65_536  # ids hashed and looked up per numpy call


def digest(video_id: str) -> bytes:
    """The 16-byte digest of an id (BLAKE2b-128 of its UTF-8)."""
    return hashlib.blake2b(video_id.encode("utf-8", "surrogatepass"),
                           digest_size=DIGEST_BYTES).digest()


def digests(ids: Iterable[str]) -> np.ndarray:
    """The digests of `ids`, in order, as an `S16` array."""
    return np.array([digest(i) for i in ids], dtype=f"S{DIGEST_BYTES}")


class DigestCollector:
    """Accumulates digests (with repeats) in compact chunks; `finish()` sorts them into an
    IdDigests. Memory: 16 bytes per id added (plus one open chunk of Python bytes)."""

    def __init__(self) -> None:
        self._chunks: list[np.ndarray] = []
        self._open: list[bytes] = []

    def add(self, video_id: str) -> None:
        self._open.append(digest(video_id))
        if len(self._open) >= BATCH:
            self._flush()

    def update(self, ids: Iterable[str]) -> None:
        for video_id in ids:
            self.add(video_id)

    def _flush(self) -> None:
        if self._open:
            self._chunks.append(np.array(self._open, dtype=f"S{DIGEST_BYTES}"))
            self._open = []

    def finish(self) -> IdDigests:
        self._flush()
        values = (np.concatenate(self._chunks) if self._chunks
                  else np.empty(0, dtype=f"S{DIGEST_BYTES}"))
        self._chunks = []
        return IdDigests(values)


class IdDigests:
    """A sorted multiset of id digests: `contains` / `counts` for batches of ids."""

    def __init__(self, values: np.ndarray):
        self.unique, self._counts = (np.unique(values, return_counts=True) if len(values)
                                     else (values, np.empty(0, dtype=np.int64)))
        self.total = len(values)

    @classmethod
    def of(cls, ids: Iterable[str]) -> IdDigests:
        collector = DigestCollector()
        collector.update(ids)
        return collector.finish()

    def __len__(self) -> int:
        """Distinct ids."""
        return len(self.unique)

    @property
    def nbytes(self) -> int:
        return int(self.unique.nbytes + self._counts.nbytes)

    def repeated(self) -> int:
        """How many distinct ids were added more than once."""
        return int((self._counts > 1).sum())

    def repeated_digests(self) -> list[bytes]:
        """The digests added more than once."""
        # numpy drops an S16 value's trailing zero bytes when it hands one out: pad them back
        return [bytes(d).ljust(DIGEST_BYTES, b"\0") for d in self.unique[self._counts > 1]]

    def counts(self, ids: list[str]) -> np.ndarray:
        """How many times each of `ids` was added (int64 array, same order)."""
        return self.counts_of(digests(ids))

    def counts_of(self, query: np.ndarray) -> np.ndarray:
        """`counts` for ids given by their digests (an `S16` array, e.g. another IdDigests'
        `unique`): one vectorised binary search, no id strings."""
        if not len(self.unique) or not len(query):
            return np.zeros(len(query), dtype=np.int64)
        at = np.minimum(np.searchsorted(self.unique, query), len(self.unique) - 1)
        return np.where(self.unique[at] == query, self._counts[at], 0)

    def contains(self, ids: list[str]) -> np.ndarray:
        """Boolean array: which of `ids` were added."""
        return self.counts(ids) > 0


def batches(items: Iterable, size: int = BATCH) -> Iterator[list]:
    """`items` in lists of at most `size` (streamed)."""
    iterator = iter(items)
    while batch := list(itertools.islice(iterator, size)):
        yield batch
