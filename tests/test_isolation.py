"""eercf_core.video.isolation: subprocess workers usable from daemonic processes, one shared pool
per process for many threads, early-stopped iterations."""
from __future__ import annotations

import multiprocessing
import threading

import pytest

from eercf_core.video.isolation import IsolatedPool, shared_pool
from tests._isolation_helpers import behave, pool_results_in_daemon


def test_pool_runs_inside_a_daemonic_process():
    # Dask's nanny workers are daemonic: multiprocessing refuses to start children there
    ctx = multiprocessing.get_context("spawn")
    results = ctx.Queue()
    process = ctx.Process(target=pool_results_in_daemon, daemon=True,
                          args=([("ok", 1), ("crash", 2), ("ok", 3)], results))
    process.start()
    try:
        outcomes = results.get(timeout=120)
    finally:
        process.join(30)
    assert process.exitcode == 0
    assert [(i, v) for i, v, _ in outcomes] == [(0, "done 1"), (1, None), (2, "done 3")]
    assert "SIGSEGV" in outcomes[1][2]


def test_shared_pool_serves_many_threads_with_one_set_of_workers():
    pool = shared_pool(behave, workers=2, timeout=30)
    assert shared_pool(behave, workers=2, timeout=30) is pool
    results: dict[int, list] = {}

    def caller(k: int) -> None:
        items = [("ok", 100 * k + i) for i in range(6)]
        results[k] = sorted((o.index, o.value) for o in pool.imap_unordered(items))

    threads = [threading.Thread(target=caller, args=(k,)) for k in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    for k in range(4):
        assert results[k] == [(i, f"done {100 * k + i}") for i in range(6)]
    assert pool.restarts == 0


def test_stopping_an_iteration_early_leaves_the_pool_usable():
    with IsolatedPool(behave, workers=1, timeout=30) as pool:
        first = pool.imap_unordered([("ok", i) for i in range(50)])
        assert next(first).value == "done 0"
        first.close()
        assert [o.value for o in pool.imap_unordered([("ok", 7)])] == ["done 7"]
    with pytest.raises(RuntimeError, match="closed"):
        list(pool.imap_unordered([("ok", 1)]))


def test_functions_must_be_importable_by_name():
    with pytest.raises(ValueError, match="module-level function"):
        IsolatedPool(lambda item: item)


def test_kill_all_workers_stops_blocked_workers():
    from eercf_core.video.isolation import kill_all_workers

    pool = IsolatedPool(behave, workers=2, timeout=None)
    killed: list = []

    def kill_from_the_side() -> None:  # as a signal handler does, once both items are running
        killed.extend(pool._workers)
        kill_all_workers()

    threading.Timer(3, kill_from_the_side).start()
    with pytest.raises(RuntimeError, match="closed"):
        list(pool.imap_unordered([("hang", 600), ("hang", 600)]))
    pool.close()
    assert len(killed) == 2 and all(w.process.poll() is not None for w in killed)
