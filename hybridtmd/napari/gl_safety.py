"""Keep Triton out of a napari process, where it would crash it.

torch's CUDA build ships Triton, which torchvision imports (``torchvision.ops`` -> ``torch._dynamo``
-> ``import triton``) the first time hybridtmd builds a CNN. Triton's library bundles its own
LLVM; loaded after napari has opened its OpenGL canvas on Mesa (llvmpipe under Xvfb, and Mesa's
GPU drivers, which link LLVM too), it crashes the process with a segmentation fault (measured
here: napari 0.9.2, torch 2.14.1, Mesa 22). In napari the canvas always comes first, so the
widgets make ``import triton`` fail instead (torch then reports no Triton, which hybridtmd never
uses: it does not compile models).
"""

from __future__ import annotations

import sys


def keep_triton_out() -> bool:
    """Make ``import triton`` raise ImportError in this process unless it is already imported;
    whether it is now kept out."""
    if sys.modules.get("triton") is not None:
        return False
    sys.modules["triton"] = None  # the import system raises ImportError for a None entry
    return True
