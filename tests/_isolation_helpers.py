"""Module-level functions for isolation tests (worker processes import them by name)."""
from __future__ import annotations

import os
import signal
import time


def behave(item: tuple[str, float]) -> str:
    """('ok', x) -> returns; ('raise', _) -> raises; ('crash', _) -> segfaults; ('hang', s)
    sleeps."""
    kind, value = item
    if kind == "raise":
        raise ValueError(f"bad item {value}")
    if kind == "crash":
        os.kill(os.getpid(), signal.SIGSEGV)
    if kind == "hang":
        time.sleep(value)
    return f"done {value}"
