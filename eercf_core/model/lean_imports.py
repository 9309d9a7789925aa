"""torchvision and open_clip, imported without Triton on a host that has no CUDA GPU.

torchvision's `ops.roi_align` imports `torch._dynamo`, which imports Triton when it is installed
(CUDA builds of torch bring it), and open_clip imports torchvision. Triton compiles GPU kernels
for `torch.compile`; eercf never compiles, and without a CUDA device Triton has nothing to run on,
yet its import maps `libtriton.so` and its Python modules into every worker process: 75 MB of
resident memory each (measured: `import open_clip, faiss, pyarrow` 768 -> 693 MB). So on a host
without a CUDA GPU, `triton` reads as not installed while these two load; torch then records
"no Triton", which is what it finds on such a host anyway. With a GPU, or when Triton is already
loaded, nothing changes.
"""
from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType

from eercf_core.model.device import cuda_available


@contextmanager
def triton_hidden_without_gpu() -> Iterator[None]:
    """Within the block, `import triton` raises ImportError, unless Triton is already loaded or
    this process sees a CUDA GPU."""
    hide = "triton" not in sys.modules and not cuda_available()
    if hide:
        sys.modules["triton"] = None  # type: ignore[assignment]  # import triton -> ImportError
    try:
        yield
    finally:
        if hide and not isinstance(sys.modules.get("triton"), ModuleType):
            sys.modules.pop("triton", None)


def import_open_clip() -> ModuleType:
    """The `open_clip` module, imported under `triton_hidden_without_gpu`."""
    if "open_clip" not in sys.modules:
        with triton_hidden_without_gpu():
            import open_clip  # noqa: F401
    return sys.modules["open_clip"]
