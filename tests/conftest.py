"""Shared fixtures: the shared real videos, tiny registered model configs, deterministic seeds."""
from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_VIDEOS = ROOT.parent / "shared" / "videos"


@pytest.fixture(scope="session")
def shared_videos() -> Path:
    """`../shared/videos` beside the checkout (CI has it too)."""
    if not SHARED_VIDEOS.is_dir():
        pytest.fail(f"shared videos not found at {SHARED_VIDEOS}")
    return SHARED_VIDEOS


@pytest.fixture(scope="session")
def tiny_model():
    """A random-initialised tiny EERCF model (registered open_clip config), seeded, CPU fp32."""
    import torch

    import eercf_core as ec

    torch.manual_seed(0)
    return ec.create_model("eercf-tiny", head="eercf", seed=0)
