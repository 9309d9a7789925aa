"""How fast can an exact decode be? Frames any bit-exact decoder must decode (bench_decode).

To output a frame bit for bit, a decoder has to decode it and every reference frame between
the keyframe before it and it; non-reference frames on the way can be skipped (eercf's pyav
path does). decord's accurate seek decodes every frame from that keyframe to each of its 12
uniform frames. `codec_work` sums, per file, frames x megapixels for:

- `floor`: the reference frames + the picks of eercf's sampling (the least any exact decode of
  the same frames can do);
- `eercf_exact`: what the exact quality decoded (`frames_decoded`);
- `decord`: the frames decord's seek-and-decode-forward covers.

Counted on H.264 files only, where "reference" is the bitstream's nal_ref_idc (FFmpeg's
skip_frame=NONREF drops exactly the others); other codecs mark references differently.
"""
from __future__ import annotations

import logging

import numpy as np

from eercf_core.video.decode import QUALITY_EXACT, DecodeOptions, decode_video
from eercf_core.video.decord_decoder import import_decord
from eercf_core.video.pyav_decoder import index_packets

log = logging.getLogger(__name__)
DECORD_FRAMES = 12


def decord_indices(count: int) -> list[int]:
    """The frame indices decord's baseline reads from a `count`-frame video: 12 uniform."""
    return np.linspace(0, count - 1, DECORD_FRAMES).round().astype(int).tolist()


def _reference_pts(uri: str) -> set[int]:
    """Presentation timestamps of the H.264 stream's reference frames (full decode with
    non-reference frames skipped)."""
    import av

    with av.open(uri) as container:
        stream = container.streams.video[0]
        stream.codec_context.skip_frame = "NONREF"
        return {frame.pts for frame in container.decode(stream) if frame.pts is not None}


def _covered(pts: np.ndarray, keyframes: np.ndarray, picks: list[int],
             only: set[int] | None = None) -> set[int]:
    """The pts decoded to reach each pick from the keyframe before it: all frames, or those
    in `only`, plus the picks themselves."""
    needed: set[int] = set(picks)
    for pick in picks:
        key = keyframes[max(0, np.searchsorted(keyframes, pick, "right") - 1)]
        span = pts[(pts >= key) & (pts < pick)]
        needed.update(int(p) for p in span if only is None or int(p) in only)
    return needed


def _decord_picks(uri: str, pts: np.ndarray) -> list[int]:
    """The pts of the 12 uniform frames decord's baseline reads ([] when decord rejects the
    file)."""
    decord = import_decord()

    try:
        count = len(decord.VideoReader(uri, ctx=decord.cpu(0), num_threads=1))
    except Exception:  # decord raises plain Exception subclasses for files it cannot open
        return []
    return sorted({int(pts[min(i, len(pts) - 1)]) for i in decord_indices(count)})


def exact_floor(files: list[str]) -> dict:
    """Codec work (decoded frames x megapixels) of the floor, eercf's exact and decord, summed
    over the H.264 files both eercf and decord decode, and the speed-up ceilings they imply."""
    import av

    work = {"floor": 0.0, "eercf_exact": 0.0, "decord": 0.0}
    counted = 0
    for uri in files:
        try:
            with av.open(uri) as container:
                stream = container.streams.video[0]
                if stream.codec_context.name != "h264":
                    continue
                index = index_packets(container, stream, uri)
                time_base = float(stream.time_base)
            video = decode_video(uri, DecodeOptions(quality=QUALITY_EXACT))
        except Exception as exc:  # a file eercf cannot decode has no floor to count
            log.debug("floor: %s skipped: %s", uri, exc)
            continue
        picks = sorted({int(index.pts[np.argmin(np.abs(index.pts - (index.start + t / time_base)))])
                        for t in video.frame_times})
        floor = _covered(index.pts, index.keyframes, picks, _reference_pts(uri))
        decord = _covered(index.pts, index.keyframes, _decord_picks(uri, index.pts))
        if not decord:
            continue  # the ceiling compares files both decode
        megapixels = video.width * video.height / 1e6
        work["floor"] += len(floor) * megapixels
        work["eercf_exact"] += video.frames_decoded * megapixels
        work["decord"] += len(decord) * megapixels
        counted += 1
    rounded = {k: round(v, 1) for k, v in work.items()}
    return {"h264_files_both_decode": counted, "codec_work_frames_x_megapixels": rounded,
            "eercf_exact_over_floor": round(work["eercf_exact"] / work["floor"], 3),
            "decord_over_floor": round(work["decord"] / work["floor"], 2),
            "decord_over_eercf_exact": round(work["decord"] / work["eercf_exact"], 2)}
