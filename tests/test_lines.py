"""eercf_core/files/lines.py: the one text layer under queries, ground truth, manifests, captions
and dataset annotation files (fsspec, BOM, file:line errors, headers, ids, duplicates)."""
from __future__ import annotations

import fsspec
import pytest

from eercf_core.datasets.common import AnnotationError, read_csv_rows, read_id_list, read_json
from eercf_core.files.inputs import read_manifest
from eercf_core.files.lines import (
    FormatError,
    UniqueIds,
    check_id,
    is_header,
    read_lines,
    read_text,
)
from eercf_core.files.text_formats import read_ground_truth, read_queries
from eercf_core.training.data import read_captions

BOM = "\ufeff".encode()


def test_read_lines_drops_a_bom_and_line_endings_and_reads_fsspec_urls(tmp_path):
    path = tmp_path / "a.tsv"
    path.write_bytes(BOM + b"one\r\ntwo\n\nthree")
    assert list(read_lines(str(path))) == [(1, "one"), (2, "two"), (3, ""), (4, "three")]
    with fsspec.open("memory://lines/a.tsv", "wb") as handle:
        handle.write(BOM + b"x\ty\n")
    assert list(read_lines("memory://lines/a.tsv")) == [(1, "x\ty")]
    assert read_text("memory://lines/a.tsv") == "x\ty\n"


def test_undecodable_bytes_name_file_and_line(tmp_path):
    path = tmp_path / "bad.tsv"
    path.write_bytes(b"q1\tfine\nq2\t\xff\n")
    with pytest.raises(FormatError, match=r"bad.tsv:2: not valid UTF-8"):
        list(read_lines(str(path)))
    with pytest.raises(FormatError, match=r"bad.tsv:2: not valid UTF-8"):
        read_text(str(path))


def test_header_ids_and_duplicates():
    assert is_header([" Query_ID", "text "], ("query_id", "text"))
    assert not is_header(["q1", "text"], ("query_id", "text"))
    assert check_id(" v1 ", "f.tsv", 3, "video_id") == "v1"
    with pytest.raises(FormatError, match=r"f.tsv:3: missing video_id"):
        check_id("  ", "f.tsv", 3, "video_id")
    with pytest.raises(FormatError, match=r"f.tsv:4: video_id 'a\\tb' contains a TAB"):
        check_id("a\tb", "f.tsv", 4, "video_id")
    seen = UniqueIds("f.tsv", "query_id")
    seen.add("q1", 2)
    with pytest.raises(FormatError, match=r"f.tsv:7: duplicate query_id 'q1' \(first on line 2\)"):
        seen.add("q1", 7)


@pytest.mark.parametrize("reader", ["queries", "ground_truth", "captions", "manifest"])
def test_every_reader_takes_a_bom_and_an_fsspec_url(reader):
    url = f"memory://bom/{reader}.tsv"
    text = {"queries": "query_id\ttext\nq1\ta red flag\n",
            "ground_truth": "query_id\tvideo_id\nq1\tv1\n",
            "captions": "video_id\ttext\nv1\ta red flag\n",
            "manifest": "video_id\turi\nv1\t/videos/v1.mp4\n"}[reader]
    with fsspec.open(url, "wb") as handle:
        handle.write(BOM + text.encode())
    if reader == "queries":
        assert [(q.query_id, q.text) for q in read_queries(url)] == [("q1", "a red flag")]
    elif reader == "ground_truth":
        assert read_ground_truth(url) == {"q1": [("v1", 2)]}
    elif reader == "captions":
        assert read_captions(url, None) == [("v1", "a red flag")]
    else:
        assert [(r.video_id, r.uri) for r in read_manifest(url)] == [("v1", "/videos/v1.mp4")]


def test_captions_tsv_errors_name_file_and_line(tmp_path):
    path = tmp_path / "captions.tsv"
    path.write_text("v1\ta caption\nv2 without a tab\n")
    with pytest.raises(FormatError, match=r"captions.tsv:2: expected 'video_id<TAB>text'"):
        read_captions(str(path), None)
    path.write_text("v1\ta caption\nv\x0b2\tanother\n")
    with pytest.raises(FormatError, match=r"captions.tsv:2: video_id .* contains"):
        read_captions(str(path), None)


def test_dataset_errors_are_format_errors_with_file_and_line(tmp_path):
    ids = tmp_path / "test_list.txt"
    ids.write_bytes(BOM + b"abc\ndef\nabc\n")
    with pytest.raises(AnnotationError, match=r"test_list.txt:3: duplicate video 'abc' "
                                              r"\(first on line 1\)") as raised:
        read_id_list(ids)
    assert isinstance(raised.value, FormatError) and raised.value.line == 3
    bad = tmp_path / "data.json"
    bad.write_text('{"a": 1,\n "b": }\n')
    with pytest.raises(AnnotationError, match=r"data.json:2: not valid JSON"):
        read_json(bad)
    table = tmp_path / "split.csv"
    table.write_bytes(BOM + b"video_id,sentence\nv1,\"a quoted\nline\"\nv2,b\n")
    assert [(n, r["video_id"]) for n, r in read_csv_rows(table, ["video_id"])] == [
        (3, "v1"), (4, "v2")]
    with pytest.raises(AnnotationError, match=r"split.csv:1: header must name"):
        read_csv_rows(table, ["key"])
