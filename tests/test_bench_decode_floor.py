"""The exact-decode floor of `python -m bench decode --levers` (bench/decode_floor.py)."""
from __future__ import annotations

import numpy as np

from bench.decode_floor import _covered, _reference_pts, exact_floor
from eercf_core.video.writer import write_video


def test_covered_counts_keyframe_to_pick_and_only_the_given_references():
    pts = np.arange(10)
    keyframes = np.array([0, 5])
    references = {0, 2, 4, 5, 6, 8}
    assert _covered(pts, keyframes, [3, 7], references) == {0, 2, 3, 5, 6, 7}
    assert _covered(pts, keyframes, [3, 7]) == {0, 1, 2, 3, 5, 6, 7}
    assert _covered(pts, keyframes, [5]) == {5}  # a keyframe pick needs nothing before it
    assert _covered(pts, keyframes, []) == set()


def test_floor_of_a_generated_h264_clip(tmp_path):
    rng = np.random.default_rng(0)
    base = rng.integers(0, 255, (1, 64, 96, 3), dtype=np.uint8)
    frames = np.concatenate([np.roll(base, 2 * i, axis=2) for i in range(40)])
    path = write_video(tmp_path / "moving.mp4", frames, fps=4.0)  # 10 s: 10 targets
    references = _reference_pts(str(path))
    assert 0 < len(references) < 40  # x264's B-frames are not references

    result = exact_floor([str(path), str(tmp_path / "missing.mp4")])

    assert result["h264_files_both_decode"] == 1  # the missing file is skipped, not fatal
    work = result["codec_work_frames_x_megapixels"]
    assert 0 < work["floor"] <= work["eercf_exact"] <= work["decord"]
    assert result["eercf_exact_over_floor"] >= 1.0
