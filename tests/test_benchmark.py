"""Benchmark importers on small files in each exact format: counts, missing videos, Unicode,
ActivityNet time order, the MSVD pickle guard, and files the project's own readers accept."""
from __future__ import annotations

import json
import os
import pickle

import pytest

from eercf_core.datasets import (
    AnnotationError,
    UnsafePickleError,
    load_benchmark,
    load_plain_pickle,
)
from eercf_core.files.inputs import read_manifest
from eercf_core.files.text_formats import read_ground_truth, read_queries
from eercf_core.training.data import read_captions
from pipelines.commands import import_dataset as benchmark
from tests.benchmark_fixtures import EXPECTED, MSVD_CAPTIONS, write_dataset


@pytest.mark.parametrize("dataset", sorted(EXPECTED))
def test_import_writes_what_the_jobs_read(tmp_path, shared_videos, dataset, capsys):
    ann, videos = write_dataset(dataset, tmp_path, shared_videos)
    out = tmp_path / "out"
    assert benchmark.run([dataset, "--annotations", str(ann), "--videos", str(videos),
                          "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    summary = json.loads((out / "benchmark.json").read_text())
    assert [s["split"] for s in summary["splits"]] == list(EXPECTED[dataset])
    for split, (annotated, found, num_queries) in EXPECTED[dataset].items():
        folder = out / split
        refs = read_manifest(str(folder / "manifest.tsv"))
        assert len(refs) == found and all(os.path.exists(r.uri) for r in refs)
        queries = read_queries(str(folder / "queries.tsv"))
        truth = read_ground_truth(str(folder / "ground_truth.tsv"))
        assert len(queries) == num_queries and sum(map(len, truth.values())) == num_queries
        assert {q.query_id for q in queries} == set(truth)
        assert {v for items in truth.values() for v, _ in items} <= {r.video_id for r in refs}
        assert len(read_captions(str(folder / "captions.jsonl"), "train")) == num_queries
        missing = (folder / "missing_videos.txt").read_text().split()
        assert len(missing) == annotated - found
        item = next(s for s in summary["splits"] if s["split"] == split)
        assert (item["annotated_videos"], item["videos_found"], item["queries"]) == \
            (annotated, found, num_queries)
        assert "published" in item["size_check"] and "differs" in item["size_check"]
        if missing:
            assert missing[0] in (out / "README.txt").read_text()
    assert "eercf extract --input" in printed and "differs" in printed


def test_msrvtt_ids_texts_and_unicode(tmp_path, shared_videos):
    ann, _ = write_dataset("msrvtt", tmp_path, shared_videos)
    splits = {s.name: s for s in load_benchmark("msrvtt", ann).splits}
    test = splits["test_1k"]
    assert [q.query_id for q in test.queries] == ["ret0", "ret1", "ret2"]
    assert test.queries[1].text == "a little girl does gymnastics, très bien"
    train = splits["train_9k"]
    assert [q.query_id for q in train.queries][:3] == ["video1#0", "video1#1", "video1#2"]
    assert train.queries[2].text == "someone strums chords"  # tab/newline/double space collapsed
    assert ("video2", "鹦鹉爬梯子") in train.captions
    assert train.known.videos == 9000 and test.known.videos == 1000


def test_activitynet_paragraph_in_time_order_and_both_file_names(tmp_path, shared_videos):
    ann, _videos = write_dataset("activitynet", tmp_path, shared_videos)
    bench = load_benchmark("activitynet", ann)
    val = next(s for s in bench.splits if s.name == "val_1")
    assert val.queries[0].query_id == "v_AAAAAAAAAAA"
    assert val.queries[0].text == "Two men grip hands. Both strain. Then he pulls the arm down."
    assert val.queries[1].text == "A lion runs to a tree. Il grimpe après un singe — 猴子."
    assert bench.video_file_names("v_BBBBBBBBBBB")[:2] == ["v_BBBBBBBBBBB.mp4", "BBBBBBBBBBB.mp4"]
    assert val.known.videos == 4917
    assert any("val_2.json not found" in note for note in bench.notes)


def test_msvd_pickle_with_reduce_payload_is_refused(tmp_path, shared_videos):
    ann, videos = write_dataset("msvd", tmp_path, shared_videos)
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    for protocol in (0, 2, 4, 5):
        evil = dict(MSVD_CAPTIONS, abc_1_2=[Payload()])
        (ann / "raw-captions.pkl").write_bytes(pickle.dumps(evil, protocol=protocol))
        with pytest.raises(UnsafePickleError, match=r"raw-captions.pkl: refused import of "
                                                    r"(posix|nt)\.system"):
            load_benchmark("msvd", ann)
        with pytest.raises(UnsafePickleError):
            benchmark.run(["msvd", "--annotations", str(ann), "--videos", str(videos),
                           "--output", str(tmp_path / "out")])
    assert not marker.exists()
    assert not (tmp_path / "out").exists()


def test_msvd_pickle_refuses_other_types_by_name(tmp_path):
    path = tmp_path / "x.pkl"
    for value, opcode in (({"a": (1, 2)}, "BININT1"), ({"a": {1.5}}, "EMPTY_SET"),
                          ({"a": [b"raw"]}, "SHORT_BINBYTES")):
        path.write_bytes(pickle.dumps(value, protocol=4))
        with pytest.raises(UnsafePickleError, match=f"refused opcode {opcode}"):
            load_plain_pickle(path)
    path.write_bytes(b"not a pickle")
    with pytest.raises(UnsafePickleError, match="not a readable pickle"):
        load_plain_pickle(path)
    for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
        path.write_bytes(pickle.dumps(MSVD_CAPTIONS, protocol=protocol))
        assert load_plain_pickle(path) == MSVD_CAPTIONS


def test_bad_annotations_name_the_file(tmp_path, shared_videos):
    ann, _videos = write_dataset("vatex", tmp_path, shared_videos)
    records = json.loads((ann / "vatex_validation_v1.0.json").read_text())
    records[1]["enCap"] = "not a list"
    (ann / "vatex_validation_v1.0.json").write_text(json.dumps(records))
    with pytest.raises(AnnotationError, match=r"vatex_validation_v1.0.json: record 1 .*enCap"):
        load_benchmark("vatex", ann)
    records[1] = dict(records[0])
    (ann / "vatex_validation_v1.0.json").write_text(json.dumps(records))
    with pytest.raises(AnnotationError, match="duplicate video"):
        load_benchmark("vatex", ann)
    with pytest.raises(AnnotationError, match="no MSR-VTT split files"):
        load_benchmark("msrvtt", ann)
    msvd_ann, _ = write_dataset("msvd", tmp_path, shared_videos)
    (msvd_ann / "test_list.txt").write_text("abc_1_2\nunknown_9_9\n")
    with pytest.raises(AnnotationError, match=r"test_list.txt: 1 videos have no captions"):
        load_benchmark("msvd", msvd_ann)
    anet_ann, _ = write_dataset("activitynet", tmp_path, shared_videos)
    data = json.loads((anet_ann / "val_1.json").read_text())
    data["v_BBBBBBBBBBB"]["timestamps"].pop()
    (anet_ann / "val_1.json").write_text(json.dumps(data))
    with pytest.raises(AnnotationError, match=r"v_BBBBBBBBBBB.*2 sentences but 1 timestamps"):
        load_benchmark("activitynet", anet_ann)
    with pytest.raises(AnnotationError, match="videos folder not found"):
        benchmark.run(["msrvtt", "--annotations", str(write_dataset("msrvtt", tmp_path,
                                                                     shared_videos)[0]),
                       "--videos", str(tmp_path / "nope"), "--output", str(tmp_path / "o")])


def test_splits_option(tmp_path, shared_videos):
    ann, videos = write_dataset("msrvtt", tmp_path, shared_videos)
    out = tmp_path / "out"
    assert benchmark.run(["msrvtt", "--annotations", str(ann), "--videos", str(videos),
                          "--output", str(out), "--splits", "test_1k"]) == 0
    assert (out / "test_1k" / "queries.tsv").is_file() and not (out / "train_9k").exists()
    with pytest.raises(SystemExit):
        benchmark.run(["msrvtt", "--annotations", str(ann), "--videos", str(videos),
                       "--output", str(out), "--splits", "test_3k"])
