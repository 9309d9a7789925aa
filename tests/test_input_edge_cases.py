"""Input edge cases of extract and evaluate: glob characters in real names, BOMs, NaN scores."""
from __future__ import annotations

import pytest

from eercf_core.errors import UserInputError
from eercf_core.files.inputs import VideoRef, read_inputs
from eercf_core.video.writer import write_video


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


@pytest.mark.parametrize(("suffix", "sep"), [(".tsv", "\t"), (".csv", ",")])
def test_manifest_with_utf8_bom(tmp_path, suffix, sep):
    manifest = tmp_path / f"m{suffix}"
    manifest.write_bytes(("\ufeff" + f"video_id{sep}uri\na{sep}x/a.mp4\n").encode("utf-8"))
    assert read_inputs([str(manifest)]) == [VideoRef("a", str(tmp_path / "x/a.mp4"))]
    jsonl = tmp_path / "m.jsonl"
    jsonl.write_bytes(b'\xef\xbb\xbf{"video_id": "a", "uri": "/v/a.mp4"}\n')
    assert read_inputs([str(jsonl)]) == [VideoRef("a", "/v/a.mp4")]


def test_user_input_error_is_a_value_error():
    assert issubclass(UserInputError, ValueError)


@pytest.mark.parametrize("bad", ["nan", "inf", "-inf", "NaN"])
def test_ranked_file_with_non_finite_scores_is_refused(tmp_path, bad):
    from eercf_core.files.text_formats import FormatError, read_ranked

    ranked = tmp_path / "ranked.tsv"
    ranked.write_text("query_id\trank\tvideo_id\tscore\tcoarse_score\n"
                      "q1\t1\tv1\t0.5\t0.4\n"
                      f"q1\t2\tv2\t{bad}\t0.3\n")
    with pytest.raises(FormatError, match=r"ranked.tsv:3: scores must be finite"):
        read_ranked(str(ranked))
    ranked.write_text(f"q1\t1\tv1\t0.5\t{bad}\n")
    with pytest.raises(FormatError, match=r"ranked.tsv:1: scores must be finite"):
        read_ranked(str(ranked))


def test_build_index_shard_path_with_glob_characters(tmp_path):
    from eercf_core.files import shards
    from eercf_core.index.build import resolve_shards
    from schemas import FeatureDims

    folder = tmp_path / "feats[v1]"
    path = str(folder / "part-a.parquet")
    shards.write_shard(path, [{"video_id": "a", "uri": "/a.mp4", "status": "error",
                               "error": "x"}], FeatureDims(2, 1, 4), "m", "h")
    assert resolve_shards([str(folder)]) == [path]
    assert resolve_shards([path]) == [path]
    assert resolve_shards([str(tmp_path / "*" / "*.parquet")]) == [path]
