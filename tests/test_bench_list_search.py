"""`python -m bench list_search` at a tiny size: both methods run and agree (the plumbing; the
numbers are the benchmark's)."""
from __future__ import annotations

from bench import bench_list_search


def test_list_search_bench_runs_both_methods_and_compares_them(tmp_path):
    result = bench_list_search.main([f"--work={tmp_path}", "--videos=20000", "--dim=16",
                                     "--nlist=64", "--queries=300", "--settings=cached"])
    assert result["factory"] == "IVF64,SQ8" and result["lists_mb"] > 0
    runs = {run["method"]: run for run in result["runs"]}
    assert set(runs) == {"by_query", "by_list"}
    assert all(run["setting"] == "cached" and run["search_seconds"] >= 0
               and run["peak_rss_mb"] > 0 for run in runs.values())
    assert runs["by_list"]["top100_overlap"] > 0.999
