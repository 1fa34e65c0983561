"""Content keys: SHA-256 of an array's dtype, shape and bytes, and of a file's bytes."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np


def array_digest(array: np.ndarray) -> str:
    """SHA-256 of an array's dtype, shape and bytes: a content key that ignores file names."""
    array = np.ascontiguousarray(array)
    h = hashlib.sha256()
    h.update(str(array.dtype).encode())
    h.update(str(array.shape).encode())
    h.update(array.tobytes())
    return h.hexdigest()


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a file's bytes (read in 1 MiB blocks)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
