"""Video decoding and frame sampling for extraction (method §2.1, §2.2).

Sampling (method §2.1 and §11.10): candidate frames at 1 fps, then `linspace` to T of them;
fewer than T: zero frames with mask False (eercf_core.video.sampling).

Early resize (method §2.2 steps 1-2): shortest side scaled to the model's image size S, centre
crop to S x S: uint8 [T, S, S, 3] plus a bool mask [T] (eercf_core.video.sampling).

The code is split by backend; this module is the entry point and keeps every public name:
- `sampling`: sample times, resize size, centre crop, frame assembly (no decoder);
- `decode_common`: `DecodeOptions`, `DecodedVideo`, `DecodeError`, quality presets, opening a
  source;
- `pyav_decoder` ("pyav", default): keyframe-aware seeking, non-reference frame skipping,
  only the chosen frames converted;
- `decord_decoder` ("decord"): `get_batch` on the official indices `int(t*fps)`;
"auto" tries pyav, then decord if pyav fails.

Decode quality (`DecodeOptions.quality`, recorded in every shard row):
- "exact": the frames as the codec defines them, scaled bicubic: the same bits as before the
  setting existed (tests/test_decode.py compares them with an independent decode).
- "fast" (default): for sources whose shortest side is at least 2x the model's image size S,
  the pyav decoder skips the in-loop deblocking filter (`skip_loop_filter=all`: every frame,
  references included, so small block-edge errors propagate until the next keyframe) and scales
  bilinear instead of bicubic; smaller sources are decoded exactly as "exact". Same sampled
  frames and times, pixels drift by about one grey level on the large sources, which cost the
  most to decode; `python -m bench decode` measures the speed and whether features and
  rankings move (fidelity table). decord has no such knobs: its frames are recorded as "exact".

Measured and left out (numbers in the README, "Decode numbers"): NVDEC through FFmpeg's CUDA
hwaccel. Its frames are the software frames bit for bit (H.264, HEVC, VP9; MPEG-4 Part 2
differs, its IDCT rounding is the decoder's choice), but on an H200 host it decoded the shared
files 4x slower than this software path and used more CPU per video: FFmpeg waits for each
frame, and every file sets up a hardware decoder.

Decoders are created here, inside whichever process calls `decode_video`: call it in a worker
(see eercf_core.video.isolation), never create a decoder before a fork.
"""
from __future__ import annotations

from eercf_core.video.decode_common import (
    BACKENDS,
    DEFAULT_MAX_OFFSET,
    DEFAULT_QUALITY,
    DEFAULT_SEEK_GAP,
    FAST_MIN_DOWNSCALE,
    MAX_PIXELS,
    QUALITIES,
    QUALITY_EXACT,
    QUALITY_FAST,
    QUALITY_PRESETS,
    SKIP_MIN_FRAMES,
    DecodedVideo,
    DecodeError,
    DecodeOptions,
    QualityPreset,
)
from eercf_core.video.decord_decoder import decode_decord
from eercf_core.video.pyav_decoder import decode_pyav
from eercf_core.video.sampling import assemble_frames, center_crop, resize_size, sample_times

__all__ = [
    "BACKENDS", "DEFAULT_MAX_OFFSET", "DEFAULT_QUALITY", "DEFAULT_SEEK_GAP", "FAST_MIN_DOWNSCALE",
    "MAX_PIXELS", "QUALITIES", "QUALITY_EXACT", "QUALITY_FAST", "QUALITY_PRESETS",
    "SKIP_MIN_FRAMES", "DecodeError", "DecodeOptions", "DecodedVideo", "QualityPreset",
    "assemble_frames", "center_crop", "decode_job", "decode_video", "resize_size", "sample_times",
]


def decode_video(uri: str, options: DecodeOptions | None = None) -> DecodedVideo:
    """Decode and sample one video (local path or fsspec URL) to uint8 [T, S, S, 3] + mask.

    Raises DecodeError naming the file and the reason on any failure.
    """
    options = options or DecodeOptions()
    if options.backend == "pyav":
        return decode_pyav(uri, options)
    if options.backend == "decord":
        return decode_decord(uri, options)
    try:
        return decode_pyav(uri, options)
    except DecodeError as first:
        try:
            return decode_decord(uri, options)
        except DecodeError:
            raise first from None


def decode_job(job: tuple[str, DecodeOptions]) -> DecodedVideo:
    """`decode_video(uri, options)` for a `(uri, options)` pair: the unit of work that
    eercf_core.video.isolation.IsolatedPool runs in a worker process."""
    uri, options = job
    return decode_video(uri, options)
