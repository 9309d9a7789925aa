"""Shared fixtures: the shared real videos, tiny registered model configs, deterministic seeds."""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import SHARED_VIDEOS


@pytest.fixture(scope="session")
def shared_videos() -> Path:
    """`../shared/videos` beside the checkout (CI has it); the test is skipped without it."""
    if not SHARED_VIDEOS.is_dir():
        pytest.skip(f"real test videos not found at {SHARED_VIDEOS} (../shared beside the "
                    "checkout): skipping a test that needs them")
    return SHARED_VIDEOS


@pytest.fixture(scope="session")
def tiny_model():
    """A random-initialised tiny EERCF model (registered open_clip config), seeded, CPU fp32."""
    import torch

    import eercf_core as ec

    torch.manual_seed(0)
    return ec.create_model("eercf-tiny", head="eercf", seed=0)
