"""The on-disk embedding cache: one float32 ``.npy`` vector per (image content, settings) key."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from .._utils import array_digest, atomic_path, warn_at_user

#: Bumped whenever the meaning of a cached vector changes (invalidates every old entry).
CACHE_FORMAT_VERSION = 1


class CacheWarning(UserWarning):
    """A cache entry could not be used (corrupt, truncated, wrong shape) and was recomputed."""


def cache_key(config: str, height: np.ndarray) -> str:
    """SHA-256 key of one image's vector: the settings (``config``, a canonical JSON text of
    everything that changes a vector) and the height map's content (:func:`array_digest`)."""
    return hashlib.sha256(f"{config}|{array_digest(height)}".encode()).hexdigest()


class EmbeddingCache:
    """One ``.npy`` float32 vector per (image, configuration) key, under ``root/<backbone>/``."""

    def __init__(self, root: str | Path, backbone: str):
        self.root = Path(root) / backbone

    def path(self, key: str) -> Path:
        """Where the vector of ``key`` is stored."""
        return self.root / key[:2] / f"{key}.npy"  # 256 sub-folders keep directories small

    def get(self, key: str, dim: int) -> np.ndarray | None:
        """The cached vector, or None when absent or unusable (then warns; caller recomputes)."""
        path = self.path(key)
        try:
            vec = np.load(path, allow_pickle=False)
        except FileNotFoundError:
            return None
        except (OSError, ValueError, EOFError) as exc:
            warn_at_user(f"embedding cache entry {path} is unreadable ({exc}); recomputing", CacheWarning)
            return None
        if vec.shape != (dim,) or vec.dtype != np.float32 or not np.all(np.isfinite(vec)):
            warn_at_user(f"embedding cache entry {path} has shape {vec.shape}, dtype {vec.dtype} or non-finite "
                         f"values; recomputing", CacheWarning)
            return None
        return vec

    def put(self, key: str, vec: np.ndarray) -> None:
        """Store ``vec`` (as float32) under ``key``, atomically."""
        with atomic_path(self.path(key)) as tmp, open(tmp, "wb") as fh:
            np.save(fh, np.asarray(vec, dtype=np.float32), allow_pickle=False)
