"""Where torch runs: the ``device`` parameter of the CNN stages."""

from __future__ import annotations

DEVICES = ("auto", "cpu", "cuda")


def select_device(device: str) -> str:
    """The torch device string for a ``device`` parameter: "auto" takes CUDA when present.

    Raises ValueError for an unknown name, or for "cuda" on a machine without CUDA.
    """
    if device not in DEVICES:
        raise ValueError(f"device must be one of {', '.join(map(repr, DEVICES))}, not {device!r}")
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device='cuda' but CUDA is not available; use device='cpu' or 'auto'")
    return device
