"""Decode ahead of the model: iterate a source in a background thread through a bounded queue.

`prefetch(source, max_ahead)` yields what `source` yields, in order, while a daemon thread keeps
pulling from `source` until `max_ahead` items wait in the queue. Between the decoder pool
(eercf_core.video.isolation, whose children decode while its iterator is pulled) and the model
this overlaps the two: while the consumer runs a batch through the model, the thread keeps the
decoders fed and collects their results; while the decoders work, the consumer takes finished
items from the queue. The bound keeps memory fixed (`max_ahead` decoded videos, about 1.8 MB
each at T=12, 224 px), and when the model is the slower side the decoders wait, not the memory.

Failure behaviour, so that neither side can wait forever on the other:
- an exception raised by `source` is re-raised in the consumer, after the items before it;
- a consumer that stops early (an exception downstream, `close()`, garbage collection) stops the
  thread: it stops pulling, closes `source` (for the pool: cancels the queued items) and exits;
  the consumer does not wait for an item still running in `source` (a decoder stuck until its
  time limit), the daemon thread finishes that on its own.
Crashes and hangs of single items are the pool's business: it turns them into error Outcomes, so
they arrive here as ordinary items.
"""
from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")
_ITEM, _END, _ERROR = "item", "end", "error"
_POLL_S = 0.05  # how often a producer blocked on a full queue checks for a stopped consumer


class PrefetchStats:
    """Where a prefetching consumer waited: seconds the consumer spent waiting for an item
    (`consumer_wait_s`: the source was slower) and seconds the producer spent waiting for room
    (`producer_wait_s`: the consumer was slower), plus the items passed."""

    def __init__(self) -> None:
        self.consumer_wait_s = 0.0
        self.producer_wait_s = 0.0
        self.items = 0

    def as_dict(self) -> dict[str, float]:
        return {"items": self.items, "consumer_wait_s": round(self.consumer_wait_s, 3),
                "producer_wait_s": round(self.producer_wait_s, 3)}


def prefetch(source: Iterable[T], max_ahead: int, name: str = "prefetch",
             stats: PrefetchStats | None = None) -> Iterator[T]:
    """Yield the items of `source` in order, produced by a daemon thread at most `max_ahead`
    items ahead of this iterator's consumer (see module docstring).

    `max_ahead` >= 1 (ValueError otherwise). `stats`, when given, accumulates the waits of both
    sides (time.monotonic seconds).
    """
    if max_ahead < 1:
        raise ValueError(f"max_ahead must be >= 1, got {max_ahead}")

    box: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=max_ahead)
    stopped = threading.Event()

    def put(kind: str, value: Any) -> bool:
        """Queue (kind, value) unless the consumer stopped; False when it did."""
        started = time.monotonic()
        try:
            while not stopped.is_set():
                try:
                    box.put((kind, value), timeout=_POLL_S)
                    return True
                except queue.Full:
                    continue
            return False
        finally:
            if stats is not None:
                stats.producer_wait_s += time.monotonic() - started

    def produce() -> None:
        iterator = iter(source)
        try:
            for item in iterator:
                if not put(_ITEM, item):
                    return
            put(_END, None)
        except BaseException as exc:  # handed to the consumer, which re-raises it
            put(_ERROR, exc)
        finally:
            close = getattr(iterator, "close", None)
            if close is not None:
                try:
                    close()
                except Exception:  # closing must not hide the outcome above
                    log.exception("%s: closing the source failed", name)

    thread = threading.Thread(target=produce, name=name, daemon=True)
    thread.start()
    try:
        while True:
            started = time.monotonic()
            kind, value = box.get()
            if stats is not None:
                stats.consumer_wait_s += time.monotonic() - started
            if kind == _ITEM:
                if stats is not None:
                    stats.items += 1
                yield value
            elif kind == _END:
                return
            else:
                raise value
    finally:
        stopped.set()
        thread.join(timeout=_POLL_S * 4)  # a producer inside source finishes on its own
