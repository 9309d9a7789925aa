"""The report in a real browser: headless Chromium opens it from disk; the DOM must show every query
(across pages), N result cards each with a loaded preview, the ground truth highlighted on the
right card, no console errors and no network requests. A screenshot is kept as an artifact
(test_artifacts/report.png, git-ignored). Skipped where Chromium is not installed."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

import eercf_core as ec
from eercf_core.files.text_formats import read_ranked
from eercf_core.index import open_index
from eercf_core.report import load_results, write_report
from pipelines.commands import evaluate
from tests.browser import Browser, find_chromium
from tests.report_fixtures import make_corpus

CHROMIUM = find_chromium()
pytestmark = [pytest.mark.slow, pytest.mark.skipif(
    CHROMIUM is None, reason="chromium not installed (apt-get install chromium; .ci/run does it)")]
ARTIFACTS = Path(__file__).resolve().parents[1] / "test_artifacts"
TOP_N = 5
PER_PAGE = 3

# One page's DOM, once its images have finished loading (or failing).
PAGE_STATE = """(async () => {
  window.eercfReport.show(%d);
  const images = [...document.images];
  await Promise.all(images.map((i) => i.complete ? null
    : new Promise((done) => {
        i.addEventListener("load", done);
        i.addEventListener("error", done);
      })));
  return [...document.querySelectorAll("section.query")].map((s) => ({
    id: s.dataset.queryId,
    text: s.querySelector("h3").textContent,
    status: (s.querySelector(".status") || {}).textContent,
    cards: [...s.querySelectorAll(".card")].map((c) => ({
      video: c.dataset.videoId, rank: Number(c.dataset.rank), truth: c.classList.contains("truth"),
      border: getComputedStyle(c).borderTopColor,
      thumb: (c.querySelector("img.thumb") || {}).naturalWidth || 0,
      strip: (c.querySelector("img.stripimg") || {}).naturalWidth || 0,
      gate: !!c.querySelector(".strip .hl") && !!c.querySelector(".gateframe")})),
  }));
})()"""


def test_report_in_headless_chromium(tmp_path):
    pytest.importorskip("websocket", reason="websocket-client (the test extra) is not installed")
    corpus = make_corpus(tmp_path / "corpus")
    ranked = read_ranked(str(corpus.ranked))
    # ground truth: query i's video at rank i % TOP_N + 1; the last query's beyond the shown top-N
    truth = {q: rows[i % TOP_N].video_id for i, (q, rows) in enumerate(ranked.items())}
    last = list(ranked)[-1]
    truth[last] = ranked[last][TOP_N + 3].video_id
    gt = tmp_path / "gt.tsv"
    gt.write_text("".join(f"{q}\t{v}\n" for q, v in truth.items()))
    evaluate.run(["--ranked", str(corpus.ranked), "--ground-truth", str(gt),
                  "--output", str(tmp_path / "eval")])
    page = write_report(load_results(str(corpus.ranked), str(corpus.queries), str(gt)),
                               open_index(corpus.index), tmp_path / "report",
                               ec.load_model(corpus.checkpoint, device="cpu"), TOP_N,
                               tmp_path / "eval", recall_k=5)

    with Browser(CHROMIUM, tmp_path / "profile") as browser:
        browser.navigate(f"{page.as_uri()}#per={PER_PAGE}")
        assert browser.evaluate("document.body.dataset.ready") == "1"
        pages = browser.evaluate("window.eercfReport.numPages()")
        assert pages == -(-len(ranked) // PER_PAGE)
        seen = []
        for number in range(1, pages + 1):
            sections = browser.evaluate(PAGE_STATE % number)
            assert len(sections) == min(PER_PAGE, len(ranked) - PER_PAGE * (number - 1))
            seen += [s["id"] for s in sections]
            for section in sections:
                rows = ranked[section["id"]]
                cards = section["cards"]
                assert [(c["rank"], c["video"]) for c in cards] == \
                    [(r.rank, r.video_id) for r in rows[:TOP_N]]
                assert all(c["thumb"] > 0 and c["strip"] > 0 and c["gate"] for c in cards), cards
                highlighted = [c["video"] for c in cards if c["truth"]]
                if section["id"] == last:
                    assert highlighted == [] and f"rank {TOP_N + 4} " in section["status"]
                else:
                    assert highlighted == [truth[section["id"]]]
                    assert {c["border"] for c in cards if c["truth"]} == {"rgb(26, 143, 76)"}
                    assert len({c["border"] for c in cards}) == 2  # the others look different
        assert seen == list(ranked)  # every query, each once, in order
        assert browser.evaluate("[...document.querySelectorAll('#plots img')]"
                                ".map((i) => i.naturalWidth)")[0] > 0
        labels = browser.evaluate("[...document.querySelectorAll('table.metrics tbody tr')]"
                                  ".map((r) => r.cells[0].textContent)")
        # every metric group of metrics.json: t2v reranked/coarse, and v2t (complete lists here)
        assert {"t2v / reranked", "t2v / coarse", "v2t / coarse"} <= set(labels), labels
        browser.evaluate("window.eercfReport.show(1)")
        shot = browser.screenshot(tmp_path / "report.png")
        errors = browser.console_errors()
        urls = browser.requested_urls()
    ARTIFACTS.mkdir(exist_ok=True)
    shutil.copyfile(shot, ARTIFACTS / "report.png")
    assert shot.stat().st_size > 10_000
    assert errors == []
    assert urls and all(url.startswith(("file:", "data:")) for url in urls), urls

