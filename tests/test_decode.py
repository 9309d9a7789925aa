"""Frame sampling, decoding (PyAV and decord paths) and the isolated worker pool."""
from __future__ import annotations

import numpy as np
import pytest

from eercf_core.video.decode import (
    FAST_MIN_DOWNSCALE,
    DecodeError,
    DecodeOptions,
    center_crop,
    decode_video,
    resize_size,
    sample_times,
)
from eercf_core.video.isolation import IsolatedPool
from eercf_core.video.writer import write_video
from tests._isolation_helpers import behave


def _counter_video(path, seconds: float, fps: int = 10, size=(48, 64), gop: int | None = None):
    """Each frame's brightness encodes its index: frame k has value (k * 7) % 250 + 3."""
    n = round(seconds * fps)
    values = [(k * 7) % 250 + 3 for k in range(n)]
    frames = np.stack([np.full((*size, 3), v, dtype=np.uint8) for v in values])
    write_video(path, frames, fps=fps)
    return values


def test_sample_times_follow_method():
    # 1 fps candidates t < duration, then linspace to T
    assert sample_times(5.0).tolist() == [0, 1, 2, 3, 4]
    assert sample_times(0.1).tolist() == [0.0]
    assert sample_times(10.38).tolist() == list(range(11))
    many = sample_times(122.6)
    assert len(many) == 12 and many[0] == 0 and many[-1] == 122
    np.testing.assert_array_equal(many, np.linspace(0, 122, 12, dtype=int))
    assert sample_times(30.0, num_frames=4).tolist() == [0, 9, 19, 29]


def test_resize_and_crop_geometry():
    assert resize_size(1280, 720, 224) == (398, 224)
    assert resize_size(406, 720, 224) == (224, 397)
    image = np.arange(5 * 7 * 3).reshape(5, 7, 3)
    assert center_crop(image, 3).shape == (3, 3, 3)
    np.testing.assert_array_equal(center_crop(image, 3)[0, 0], image[1, 2])


@pytest.mark.parametrize("max_offset", [0.0, 0.5])
def test_pyav_picks_frames_near_targets(tmp_path, max_offset):
    values = _counter_video(tmp_path / "count.mp4", seconds=20, fps=10)
    video = decode_video(str(tmp_path / "count.mp4"),
                         DecodeOptions(image_size=32, max_offset=max_offset))
    assert video.frames.shape == (12, 32, 32, 3) and video.frames.dtype == np.uint8
    assert video.mask.all()
    targets = sample_times(20.0)
    times = np.asarray(video.frame_times)
    assert np.all(np.abs(times - targets) <= max(max_offset, 1e-6) + 1e-6)
    if max_offset == 0:  # exact: the frame showing at the target, by content
        expected = [values[round(t * 10)] for t in targets]
        np.testing.assert_allclose(video.frames[:, 16, 16, 0], expected, atol=3)
    assert video.frames_total == 200 and video.fps == pytest.approx(10)
    assert video.duration == pytest.approx(20.0, abs=0.11)


def test_short_video_is_masked(tmp_path):
    _counter_video(tmp_path / "short.webm", seconds=3.2, fps=5)
    video = decode_video(str(tmp_path / "short.webm"), DecodeOptions(image_size=16))
    assert video.mask.tolist() == [True] * 4 + [False] * 8
    assert not video.frames[4:].any()
    assert video.frames[:4].any()


def test_decord_path_matches_plan(tmp_path):
    values = _counter_video(tmp_path / "c.avi", seconds=6, fps=10, size=(96, 128))
    video = decode_video(str(tmp_path / "c.avi"), DecodeOptions(image_size=16, backend="decord"))
    assert video.decoder == "decord"
    assert video.frame_indices == [0, 10, 20, 30, 40, 50]
    np.testing.assert_allclose(video.frames[:6, 8, 8, 0], [values[i] for i in range(0, 60, 10)],
                               atol=6)


def test_rotation_metadata_is_applied(shared_videos):
    base = shared_videos / "robustness"
    upright = decode_video(str(base / "decord__video_0.mov"), DecodeOptions(image_size=64))
    turned = decode_video(str(base / "decord__video_90.mov"), DecodeOptions(image_size=64))
    assert (upright.width, upright.height) == (568, 320)
    assert (turned.width, turned.height) == (320, 568)
    assert turned.rotation in (90, 270)


def test_bad_inputs_raise_decode_error_naming_the_file(tmp_path):
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"\x00" * 1000)
    with pytest.raises(DecodeError, match=r"junk.mp4"):
        decode_video(str(junk))
    with pytest.raises(DecodeError, match=r"missing.mp4"):
        decode_video(str(tmp_path / "missing.mp4"))
    with pytest.raises(DecodeError, match=r"junk.mp4"):
        decode_video(str(junk), DecodeOptions(backend="auto"))


def test_fsspec_memory_url(tmp_path):
    import fsspec

    _counter_video(tmp_path / "m.mp4", seconds=2, fps=10)
    with fsspec.open("memory://eercf-decode/m.mp4", "wb") as handle:
        handle.write((tmp_path / "m.mp4").read_bytes())
    video = decode_video("memory://eercf-decode/m.mp4", DecodeOptions(image_size=16))
    assert video.mask.sum() == 2


def test_isolated_pool_survives_errors_crashes_and_hangs():
    items = [("ok", 1), ("raise", 2), ("crash", 3), ("hang", 60), ("ok", 5)]
    with IsolatedPool(behave, workers=2, timeout=5) as pool:
        outcomes = {o.index: o for o in pool.imap_unordered(items)}
        assert sorted(outcomes) == [0, 1, 2, 3, 4]
        assert outcomes[0].value == "done 1" and outcomes[4].value == "done 5"
        assert "bad item 2" in outcomes[1].error
        assert "crashed" in outcomes[2].error and "SIGSEGV" in outcomes[2].error
        assert "timed out" in outcomes[3].error
        assert pool.restarts == 2
        again = list(pool.imap_unordered([("ok", 7)]))  # the pool is still usable
        assert again[0].value == "done 7"


@pytest.mark.parametrize("max_offset", [0.0, 0.5])
def test_nonref_skipping_keeps_the_chosen_frames_exact(tmp_path, max_offset):
    # libx264 defaults use B-frames; the skipped non-reference ones must not change any pick
    yy, xx = np.mgrid[0:48, 0:64]
    frames = np.stack([np.repeat((127 + 100 * np.sin(xx / 5 + yy / 9 + k / 3))[..., None], 3, -1)
                       for k in range(150)]).astype(np.uint8)  # smooth motion: B-frames pay
    write_video(tmp_path / "moving.mp4", frames, fps=10)
    skipping = decode_video(str(tmp_path / "moving.mp4"),
                            DecodeOptions(image_size=32, max_offset=max_offset))
    full = decode_video(str(tmp_path / "moving.mp4"),
                        DecodeOptions(image_size=32, max_offset=max_offset, skip_window=-1))
    assert skipping.frame_times == full.frame_times
    np.testing.assert_array_equal(skipping.frames, full.frames)
    assert skipping.frames_decoded < full.frames_decoded


def test_mpeg_ps_seek_does_not_land_a_gop_late(shared_videos):
    # the MPEG-PS demuxer seeks by searching timestamps and lands on the next keyframe (0.48 s
    # late here); the decoder must re-seek so that the exact frames are the ones at the targets
    path = shared_videos / "robustness" / "kivy__cityCC0.mpg"
    video = decode_video(str(path), DecodeOptions(image_size=32, max_offset=0.0))
    np.testing.assert_allclose(video.frame_times, sample_times(video.duration), atol=0.041)
    snapped = decode_video(str(path), DecodeOptions(image_size=32))
    offsets = np.abs(np.asarray(snapped.frame_times) - sample_times(snapped.duration))
    assert offsets.max() <= 0.5 + 1e-6


def _reference_frames(path: str, times: list[float], size: int) -> np.ndarray:
    """Independent reference for `exact`: decode every frame in order, keep those at `times`,
    convert each with a fresh bicubic swscale context (the pre-quality-setting conversion)."""
    import av

    wanted, found = {round(t, 6) for t in times}, {}
    with av.open(path) as container:
        stream = container.streams.video[0]
        start = None
        for frame in container.decode(stream):
            start = frame.pts if start is None else start
            t = round((frame.pts - start) * float(stream.time_base), 6)
            if t in wanted and t not in found:
                nw, nh = resize_size(frame.width, frame.height, size)
                image = frame.to_ndarray(width=nw, height=nh, format="rgb24",
                                         interpolation="BICUBIC")
                found[t] = center_crop(image, size)
    return np.stack([found[round(t, 6)] for t in times])


def _moving_video(path) -> None:
    yy, xx = np.mgrid[0:120, 0:160]
    frames = np.stack([np.stack([127 + 100 * np.sin(xx / 7 + yy / 11 + k / 4),
                                 127 + 90 * np.cos(xx / 13 - k / 5), (xx * 3 + yy + 5 * k) % 256],
                                -1) for k in range(60)]).astype(np.uint8)
    write_video(path, frames, fps=5)


def _named_video(name: str, tmp_path, shared_videos):
    """"generated": a moving 160 x 120 H.264 clip written now; else that shared file."""
    if name != "generated":
        return next(shared_videos.rglob(name))
    path = tmp_path / "moving.mp4"
    _moving_video(path)
    return path


@pytest.mark.parametrize("name", ["generated", "msrvtt__video9770.mp4", "mmaction2__test.avi"])
def test_exact_quality_matches_the_codec_frames_bit_for_bit(tmp_path, shared_videos, name):
    path = _named_video(name, tmp_path, shared_videos)
    video = decode_video(str(path), DecodeOptions(image_size=48, max_offset=0.0, quality="exact"))
    assert video.quality == "exact" and video.facts()["decode_quality"] == "exact"
    valid = int(video.mask.sum())
    np.testing.assert_array_equal(video.frames[:valid],
                                  _reference_frames(str(path), video.frame_times, 48))


# Measured on the 42 shared files (bench_decode, drift_max_video): 2.9 grey levels mean |diff|
# for the worst video; generated files stay under 1.5. The bound leaves room for other FFmpeg
# builds, and a floor checks that `fast` changes something (it is not `exact` renamed).
FAST_DRIFT_BOUND = 4.0


@pytest.mark.parametrize("name", ["generated", "msrvtt__video9770.mp4", "datajuicer__video1.mp4",
                                  "torchcodec__nasa_13013.mp4"])
def test_fast_quality_same_frames_within_measured_drift(tmp_path, shared_videos, name):
    path = _named_video(name, tmp_path, shared_videos)
    exact = decode_video(str(path), DecodeOptions(image_size=48, quality="exact"))
    fast = decode_video(str(path), DecodeOptions(image_size=48))  # fast is the default
    assert fast.quality == "fast" and fast.facts()["decode_quality"] == "fast"
    assert fast.frame_times == exact.frame_times and (fast.mask == exact.mask).all()
    drift = np.abs(fast.frames.astype(np.int16) - exact.frames)[fast.mask].mean()
    assert 0 < drift <= FAST_DRIFT_BOUND


@pytest.mark.parametrize("name", ["generated", "msrvtt__video9770.mp4"])
def test_fast_quality_leaves_sources_under_twice_the_model_size_exact(tmp_path, shared_videos,
                                                                      name):
    path = _named_video(name, tmp_path, shared_videos)
    size = 61 if name == "generated" else 121  # sources 160 x 120 and 320 x 240
    assert FAST_MIN_DOWNSCALE == 2.0  # 120 / 61 and 240 / 121 are just under 2
    exact = decode_video(str(path), DecodeOptions(image_size=size, quality="exact"))
    fast = decode_video(str(path), DecodeOptions(image_size=size, quality="fast"))
    assert fast.quality == "fast"  # the setting is recorded even where it changed nothing
    np.testing.assert_array_equal(fast.frames, exact.frames)


def test_unknown_quality_is_refused_and_decord_records_exact(tmp_path):
    with pytest.raises(ValueError, match="unknown decode quality 'best'"):
        DecodeOptions(quality="best")
    _counter_video(tmp_path / "c.avi", seconds=2, fps=10, size=(96, 128))
    video = decode_video(str(tmp_path / "c.avi"),
                         DecodeOptions(image_size=16, backend="decord", quality="fast"))
    assert video.quality == "exact"  # decord has no quality knobs


def test_decord_import_leaves_torch_cpu_math_working(tmp_path):
    """decord2 dlopens every nvidia-* pip library globally on import, NVBLAS included, after
    which torch's CPU matrix multiplies segfault (exit 139). import_decord skips that preload:
    in a fresh process, decord first, then torch, then an attention forward must work, and no
    NVBLAS may be mapped."""
    from tests.helpers import run_fresh_python

    script = (
        "from eercf_core.video.decord_decoder import import_decord\n"
        "decord = import_decord()\n"
        "assert hasattr(decord, 'VideoReader')\n"
        "import torch\n"
        "m = torch.nn.MultiheadAttention(64, 4)\n"
        "x = torch.randn(10, 3, 64)\n"
        "m(x, x, x)\n"
        "maps = open('/proc/self/maps').read()\n"
        "assert 'libnvblas' not in maps, 'NVBLAS was loaded'\n"
        "print('ok')\n")
    assert run_fresh_python(script) == "ok"
