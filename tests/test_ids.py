"""Ids with control characters (TAB, LF, CR, other C0, DEL, C1, U+2028) are refused where they
enter, with file:line: manifests, file names, query files, ground truth, shards."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from eercf_core.files.ids import control_character_problem
from eercf_core.files.inputs import read_inputs
from eercf_core.files.text_formats import FormatError, read_ground_truth, read_queries
from eercf_core.index import build_index
from tests.index_fixtures import DIMS, random_features

BAD_IDS = ["a\tb", "a\nb", "a\rb", "a\x00b", "a\x1fb", "a\x7fb", "a\x85b", "a\u2028b"]


def test_control_character_problem_names_the_character():
    assert control_character_problem("clip 01/é.mp4") is None
    assert control_character_problem("ab\tc") == "contains a TAB (U+0009) at position 3"
    assert "CR (carriage return) (U+000D)" in control_character_problem("\r")
    assert "U+001B" in control_character_problem("x\x1b")
    for bad in BAD_IDS:
        assert control_character_problem(bad), repr(bad)


@pytest.mark.parametrize("bad", BAD_IDS)
def test_jsonl_manifest_refuses_control_characters(tmp_path, bad):
    manifest = tmp_path / "m.jsonl"
    lines = [json.dumps({"video_id": "ok", "uri": "a.mp4"}),
             json.dumps({"video_id": bad, "uri": "b.mp4"})]
    manifest.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=r"m\.jsonl:2: video_id .* contains a"):
        read_inputs([str(manifest)])


@pytest.mark.parametrize(("suffix", "sep"), [(".tsv", "\t"), (".csv", ",")])
def test_tsv_csv_manifests_refuse_control_characters(tmp_path, suffix, sep):
    manifest = tmp_path / f"m{suffix}"
    manifest.write_text(f"video_id{sep}uri\nok{sep}a.mp4\nb\x0bad{sep}b.mp4\n")
    with pytest.raises(ValueError, match=rf"m\{suffix}:3: video_id 'b\\x0bad' contains a "
                                         r"control character \(U\+000B\)"):
        read_inputs([str(manifest)])
    if suffix == ".csv":  # a quoted field may hold a line break: refused at its record's line
        manifest.write_text('video_id,uri\nok,a.mp4\n"two\nlines",b.mp4\n')
        with pytest.raises(ValueError, match=r"m\.csv:4: video_id 'two\\nlines' contains a LF"):
            read_inputs([str(manifest)])


def test_file_name_with_tab_refused(tmp_path):
    (tmp_path / "corpus").mkdir()
    (tmp_path / "corpus" / "good.mp4").write_bytes(b"x")
    (tmp_path / "corpus" / "bad\tname.mp4").write_bytes(b"x")
    with pytest.raises(ValueError, match=r"bad\\tname\.mp4.*contains a TAB.*manifest"):
        read_inputs([str(tmp_path / "corpus")])


@pytest.mark.parametrize("bad", ["q\r1", "q\x1c1", "q\x7f1"])
def test_tsv_query_ids_refused(tmp_path, bad):
    queries = tmp_path / "q.tsv"
    queries.write_bytes(f"query_id\ttext\nq0\ta cat\n{bad}\ta dog\n".encode())
    with pytest.raises(FormatError, match=r"q\.tsv:3: query_id .* contains a"):
        read_queries(str(queries))


@pytest.mark.parametrize("bad", ["q\t1", "q\n1", "q\r1", "q\x001"])
def test_jsonl_query_ids_refused(tmp_path, bad):
    queries = tmp_path / "q.jsonl"
    queries.write_text(json.dumps({"query_id": "q0", "text": "a cat"}) + "\n"
                       + json.dumps({"query_id": bad, "text": "a dog"}) + "\n")
    with pytest.raises(FormatError, match=r"q\.jsonl:2: query_id .* contains a"):
        read_queries(str(queries))


def test_ground_truth_ids_refused(tmp_path):
    truth = tmp_path / "gt.tsv"
    truth.write_bytes(b"query_id\tvideo_id\nq0\tv0\nq1\tv\r1\n")
    with pytest.raises(FormatError, match=r"gt\.tsv:3: video_id 'v\\r1' contains a CR"):
        read_ground_truth(str(truth))
    truth.write_bytes(b"q0\tv0\nq\x1b1\tv1\n")
    with pytest.raises(FormatError, match=r"gt\.tsv:2: query_id 'q\\x1b1' contains a"):
        read_ground_truth(str(truth))


def test_build_index_refuses_shard_ids_with_control_characters(tmp_path):
    """Shards written before ids were checked: build-index names the shard and the id."""
    from eercf_core.files.shards import write_shard

    features = random_features(2, DIMS)
    rows = [{"video_id": vid, "uri": f"/{i}.mp4", "status": "ok",
             "coarse_feature": features["coarse"][i], "frame_features": features["frame"][i],
             "context_frame_features": features["context"][i],
             "patch_features": features["patch"][i], "frame_mask": features["mask"][i]}
            for i, vid in enumerate(["fine", "tab\there"])]
    shard = tmp_path / "shards" / "part-0.parquet"
    write_shard(str(shard), rows, DIMS, "synthetic", "0" * 64)
    with pytest.raises(ValueError, match=r"part-0\.parquet: video_id 'tab\\there' contains a TAB"):
        build_index([str(shard.parent)], str(tmp_path / "index"))
    assert not (tmp_path / "index").exists()
    assert not list(Path(tmp_path).glob(".index*"))
