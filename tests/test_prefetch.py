"""eercf_core.video.prefetch: the bounded decode-ahead queue between the decoders and the model."""
from __future__ import annotations

import threading
import time

import pytest

from eercf_core.video.prefetch import PrefetchStats, prefetch


class Source:
    """An iterator over 0..n-1 that records how far it was pulled and whether it was closed."""

    def __init__(self, n: int, fail_at: int | None = None):
        self.n, self.fail_at = n, fail_at
        self.pulled = 0
        self.closed = threading.Event()
        self.advanced = threading.Condition()

    def __iter__(self):
        try:
            for i in range(self.n):
                if i == self.fail_at:
                    raise RuntimeError(f"source failed at {i}")
                with self.advanced:
                    self.pulled = i + 1
                    self.advanced.notify_all()
                yield i
        finally:
            self.closed.set()

    def wait_pulled(self, count: int, timeout: float = 5.0) -> bool:
        with self.advanced:
            return self.advanced.wait_for(lambda: self.pulled >= count, timeout)


def test_items_arrive_in_order_and_the_source_is_closed():
    source = Source(50)
    stats = PrefetchStats()
    assert list(prefetch(iter(source), 4, stats=stats)) == list(range(50))
    assert source.closed.wait(5)
    assert stats.items == 50


def test_the_source_runs_ahead_while_the_consumer_works_but_never_past_the_bound():
    source = Source(100)
    items = prefetch(iter(source), 3)
    assert next(items) == 0
    # the consumer holds item 0 ("runs the model"); the producer fills the queue meanwhile
    assert source.wait_pulled(4)  # item 0 handed out + 3 waiting
    time.sleep(0.2)
    assert source.pulled <= 5  # 3 queued + at most one pulled and blocked on the full queue
    assert next(items) == 1
    assert source.wait_pulled(5)
    items.close()
    assert source.closed.wait(5)  # a consumer that stops stops and closes the source


def test_a_source_error_reaches_the_consumer_after_the_items_before_it():
    items = prefetch(iter(Source(10, fail_at=3)), 2)
    assert [next(items) for _ in range(3)] == [0, 1, 2]
    with pytest.raises(RuntimeError, match="source failed at 3"):
        next(items)


def test_a_consumer_error_stops_the_producer():
    source = Source(10_000)

    def consume() -> None:
        for item in prefetch(iter(source), 2):
            if item == 5:
                raise ZeroDivisionError

    with pytest.raises(ZeroDivisionError):
        consume()
    assert source.closed.wait(5)
    assert source.pulled < 20


def test_waits_are_measured_on_the_slower_side():
    def slow_source():
        for i in range(5):
            time.sleep(0.04)
            yield i

    stats = PrefetchStats()
    assert list(prefetch(slow_source(), 2, stats=stats)) == list(range(5))
    assert stats.consumer_wait_s >= 0.1  # the consumer waited for the slow source


def test_max_ahead_must_be_positive():
    with pytest.raises(ValueError, match="max_ahead must be >= 1, got 0"):
        next(prefetch(iter([1]), 0))
