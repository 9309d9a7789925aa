"""Short, stable causes for videos that could not be used, and the partly-decoded warning.

An error row of a feature shard carries one of `CAUSES` in `error_cause` (what went wrong, in
words that do not change between runs or files) and the detail in `error` (file, decoder
message). `summary.json` groups errors by cause. `classify_message` recovers the cause from the
text of rows written before the column existed (schema version 1).
"""
from __future__ import annotations

import os
import stat

from eercf_core.files import paths

NOT_REGULAR_FILE = "not a regular file"  # a FIFO, device, socket or directory
FILE_NOT_FOUND = "file not found"
PERMISSION_DENIED = "permission denied"
EMPTY_FILE = "empty file"  # 0 bytes
NOT_A_VIDEO = "not a video"  # no container format recognised, or no video stream
CORRUPT_CONTAINER = "corrupt container"  # a video signature, but the container cannot be opened
CORRUPT_BITSTREAM = "corrupt bitstream"  # opened, but the video data cannot be decoded
TIMEOUT = "timeout"
DECODER_CRASHED = "decoder crashed"
OUT_OF_MEMORY = "out of memory"
DECODE_ERROR = "decode error"  # anything else
CAUSES = (NOT_REGULAR_FILE, FILE_NOT_FOUND, PERMISSION_DENIED, EMPTY_FILE, NOT_A_VIDEO,
          CORRUPT_CONTAINER, CORRUPT_BITSTREAM, TIMEOUT, DECODER_CRASHED, OUT_OF_MEMORY,
          DECODE_ERROR)

PARTLY_DECODED = "partly decoded"
# A video counts as partly decoded when the readable part falls short of the declared duration by
# more than this many seconds and this fraction: real files differ by up to ~0.2 s / 17 % (an
# audio track longer than the video, a header rounded up), truncations by much more.
PARTIAL_MIN_SECONDS = 1.0
PARTIAL_MIN_FRACTION = 0.1

# File signatures of common video containers (offset, bytes): a file that has one but cannot be
# opened is a corrupt container rather than "not a video".
_SIGNATURES = ((4, b"ftyp"), (4, b"moov"), (4, b"mdat"), (4, b"free"), (0, b"\x1a\x45\xdf\xa3"),
               (0, b"RIFF"), (0, b"\x00\x00\x01\xba"), (0, b"\x00\x00\x01\xb3"), (0, b"FLV"),
               (0, b"OggS"), (0, b"\x30\x26\xb2\x75"))


def check_local_file(uri: str) -> tuple[str, str] | None:
    """(cause, detail) when a local `uri` cannot be a video before opening it, else None.

    Uses stat only, so a FIFO is never opened (opening one blocks until a writer appears).
    Remote URLs are not checked (None).
    """
    path = paths.local_path(uri)
    if path is None:
        return None
    try:
        info = os.stat(path)
    except FileNotFoundError:
        return FILE_NOT_FOUND, "no such file"
    except PermissionError:
        return PERMISSION_DENIED, "cannot stat the file"
    if not stat.S_ISREG(info.st_mode):
        kind = ("a named pipe (FIFO)" if stat.S_ISFIFO(info.st_mode) else
                "a directory" if stat.S_ISDIR(info.st_mode) else
                "a socket" if stat.S_ISSOCK(info.st_mode) else
                "a device" if stat.S_ISCHR(info.st_mode) or stat.S_ISBLK(info.st_mode) else
                "a special file")
        return NOT_REGULAR_FILE, f"{kind}, not read"
    if info.st_size == 0:
        return EMPTY_FILE, "0 bytes"
    return None


def has_video_signature(uri: str) -> bool:
    """True when a local file starts like a known video container (False when unreadable/remote)."""
    path = paths.local_path(uri)
    if path is None:
        return False
    try:
        with open(path, "rb") as handle:
            head = handle.read(16)
    except OSError:
        return False
    return any(head[offset:offset + len(magic)] == magic for offset, magic in _SIGNATURES)


def exception_cause(exc: BaseException, opened: bool, uri: str) -> str:
    """The cause of a decoder exception; `opened` says whether the container had been opened."""
    if isinstance(exc, FileNotFoundError):
        return FILE_NOT_FOUND
    if isinstance(exc, PermissionError):
        return PERMISSION_DENIED
    if isinstance(exc, MemoryError):
        # FFmpeg reports ENOMEM when corrupt data asks for absurd buffers (av.error.MemoryError)
        return CORRUPT_BITSTREAM if type(exc).__module__.startswith("av") else OUT_OF_MEMORY
    if opened:
        return CORRUPT_BITSTREAM
    return CORRUPT_CONTAINER if has_video_signature(uri) else NOT_A_VIDEO


def partial_decode_warning(readable: float | None, declared: float | None) -> str | None:
    """The "partly decoded" warning when `readable` seconds fall well short of `declared`."""
    if readable is None or not declared or declared <= 0:
        return None
    missing = declared - readable
    if missing > PARTIAL_MIN_SECONDS and missing > PARTIAL_MIN_FRACTION * declared:
        return (f"{PARTLY_DECODED}: {readable:.1f} s of the {declared:.1f} s the container "
                "declares could be read (truncated file?)")
    return None


def classify_message(message: str) -> str:
    """The cause of an error message written without one (version 1 shards)."""
    text = message.lower()
    rules = ((("timed out after",), TIMEOUT),
             (("worker process crashed", "worker process exited", "worker process vanished"),
              DECODER_CRASHED),
             (("out of memory while processing",), OUT_OF_MEMORY),
             (("file not found", "no such file"), FILE_NOT_FOUND),
             (("permission denied",), PERMISSION_DENIED),
             (("no video stream",), NOT_A_VIDEO),
             (("memoryerror", "invalid data", "corrupt", "stream ended before",
               "no video packets"), CORRUPT_BITSTREAM))
    for needles, cause in rules:
        if any(n in text for n in needles):
            return cause
    return DECODE_ERROR


def outcome_cause(pool_cause: str | None) -> str:
    """The row cause of a failed IsolatedPool outcome (its `cause`: a decoder's or the pool's)."""
    from eercf_core.video import isolation

    pool = {isolation.TIMEOUT: TIMEOUT, isolation.CRASHED: DECODER_CRASHED,
            isolation.OUT_OF_MEMORY: OUT_OF_MEMORY}
    if pool_cause in pool:
        return pool[pool_cause]
    return pool_cause if pool_cause in CAUSES else DECODE_ERROR
