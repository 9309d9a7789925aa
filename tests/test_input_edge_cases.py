"""Input edge cases of extract and evaluate: glob characters in real names, BOMs, NaN scores."""
from __future__ import annotations

import pytest

from eercf_core.errors import UserInputError
from eercf_core.video_writer import write_video
from pipelines.extract_inputs import VideoRef, read_inputs


def _video(path):
    import numpy as np

    return write_video(path, np.zeros((4, 16, 16, 3), dtype=np.uint8), fps=4)


def test_existing_path_with_glob_characters_is_that_path(tmp_path):
    folder = tmp_path / "set[1]*"
    clip = _video(folder / "clip[a].mp4")
    _video(folder / "other.mp4")
    # the file itself, not a pattern that matches nothing (or something else)
    assert read_inputs([str(clip)]) == [VideoRef("clip[a].mp4", str(clip))]
    # the directory itself
    assert sorted(r.video_id for r in read_inputs([str(folder)])) == ["clip[a].mp4", "other.mp4"]
    # a manifest whose name has glob characters is read as a manifest
    manifest = tmp_path / "list[v2].tsv"
    manifest.write_text(f"video_id\turi\nc\t{clip}\n")
    assert read_inputs([str(manifest)]) == [VideoRef("c", str(clip))]
    # a pattern that names no existing path is still a glob
    assert [r.video_id for r in read_inputs([str(tmp_path / "*" / "other.mp4")])] == \
        ["set[1]*/other.mp4"]


@pytest.mark.parametrize("suffix,sep", [(".tsv", "\t"), (".csv", ",")])
def test_manifest_with_utf8_bom(tmp_path, suffix, sep):
    manifest = tmp_path / f"m{suffix}"
    manifest.write_bytes(("\ufeff" + f"video_id{sep}uri\na{sep}x/a.mp4\n").encode("utf-8"))
    assert read_inputs([str(manifest)]) == [VideoRef("a", str(tmp_path / "x/a.mp4"))]
    jsonl = tmp_path / "m.jsonl"
    jsonl.write_bytes(b'\xef\xbb\xbf{"video_id": "a", "uri": "/v/a.mp4"}\n')
    assert read_inputs([str(jsonl)]) == [VideoRef("a", "/v/a.mp4")]


def test_user_input_error_is_a_value_error():
    assert issubclass(UserInputError, ValueError)
