"""Which device a model runs on, and in which precision.

`--device` names: `auto` (a CUDA GPU when this process sees one, else the CPU: resolved where
the model is loaded, i.e. on the worker, not where the command is typed), `cpu`, `cuda`,
`cuda:N`. Precision follows the device: on CUDA the image tower runs under fp16 autocast
(weights stay fp32, matmuls and convolutions in fp16, the features come back fp32), on the CPU
in fp32. `EercfModel.half_precision` overrides that rule (tests run the fp16 path on a CPU).
"""
from __future__ import annotations

import re
from typing import TYPE_CHECKING

from eercf_core.errors import UserInputError

if TYPE_CHECKING:
    import torch

AUTO = "auto"
DEVICE_PATTERN = re.compile(r"^(auto|cpu|cuda(:\d+)?|mps)$")


def check_device_name(name: str) -> str:
    """`name` when it is a device name this project accepts (see module docstring), else
    ValueError naming it."""
    if not DEVICE_PATTERN.match(name):
        raise ValueError(f"unknown device {name!r}: expected auto, cpu, cuda or cuda:N")
    return name


def cuda_available() -> bool:
    """torch.cuda.is_available(), in one place so that tests can pretend a GPU exists."""
    import torch

    return torch.cuda.is_available()


def resolve_device(name: str | torch.device | None) -> torch.device:
    """The torch.device for a `--device` value: None or `auto` -> `cuda` when a GPU is visible,
    else `cpu`; `cuda`/`cuda:N` must exist here (UserInputError naming the flag otherwise)."""
    import torch

    if name is None or (isinstance(name, str) and name == AUTO):
        return torch.device("cuda" if cuda_available() else "cpu")
    if isinstance(name, str):
        check_device_name(name)
    device = torch.device(name)
    if device.type == "cuda":
        if not cuda_available():
            raise UserInputError(f"--device {name}: no CUDA GPU is visible to this process "
                                 "(torch.cuda.is_available() is False); use --device auto or cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise UserInputError(f"--device {name}: this process sees "
                                 f"{torch.cuda.device_count()} CUDA device(s)")
    return device


def usable_here(name: str | None) -> bool:
    """True when `name` resolves to a device this process has (auto and cpu always do)."""
    try:
        resolve_device(name)
    except UserInputError:
        return False
    return True


def autocast_dtype(device: torch.device, half_precision: bool | None = None
                   ) -> torch.dtype | None:
    """The autocast dtype of the image tower on `device`: float16 on CUDA, None (plain fp32)
    elsewhere; `half_precision` True/False forces fp16/fp32 on any device."""
    import torch

    if half_precision is None:
        half_precision = device.type == "cuda"
    return torch.float16 if half_precision else None
