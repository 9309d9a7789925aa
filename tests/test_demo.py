"""A reduced `eercf demo` end to end: synth -> train -> extract (Beam) -> index -> query x3 ->
evaluate."""
from __future__ import annotations

import json

import pytest

from pipelines.commands import demo


@pytest.mark.slow
def test_reduced_demo_end_to_end(tmp_path, capsys):
    out = tmp_path / "demo"
    code = demo.run(["--output", str(out), "--num-train", "240", "--num-test", "60",
                     "--steps", "150", "--batch-size", "32", "--recall-k", "60", "--no-sweep"])
    assert code == 0
    printed = capsys.readouterr().out
    summary = json.loads((out / "demo_summary.json").read_text())
    rows = {r["mode"]: r for r in summary["table"]}
    assert list(rows) == ["recall-only", "two-stage", "exhaustive"]
    for row in rows.values():
        m = row["metrics"]
        assert set(m) >= {"R@1", "R@5", "R@10", "MdR", "MnR"}
        assert m["num_queries"] == 60 and m["censored"] == 0
        assert 0 <= m["R@1"] <= m["R@5"] <= m["R@10"] <= 100
        assert row["seconds"] > 0
        assert row["label"] in printed
    assert summary["num_videos"] == 60
    coarse, two_stage = rows["recall-only"]["metrics"], rows["two-stage"]["metrics"]
    # recall k = all 60 videos: two-stage reranks everything, so it equals exhaustive fine scoring
    exhaustive = rows["exhaustive"]["metrics"]
    assert {k: two_stage[k] for k in ("R@1", "R@5", "R@10", "MdR", "MnR")} == \
        {k: exhaustive[k] for k in ("R@1", "R@5", "R@10", "MdR", "MnR")}
    # the trained model is far above chance (1/60) with the coarse vector alone
    assert coarse["R@10"] > 3 * 100 * 10 / 60
    assert (out / "demo_table.md").read_text() in printed
    assert any(p.endswith("recall_at_k.png") for p in summary["plots"])
    assert (out / "train" / "model.pt").is_file()
    # the demo ends with the result gallery of its test queries, and prints where it is
    page = out / "report" / "index.html"
    assert summary["report"] == str(page)
    assert f"result gallery (open in a browser): {page.resolve()}" in printed
    html = page.read_text()
    assert html.count('"video_id"') == 60 * 10 and '"has_gate":true' in html
    assert len(list((out / "report" / "assets").glob("*-thumb.jpg"))) > 0
