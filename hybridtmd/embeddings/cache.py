"""The on-disk embedding cache: one ``.npz`` entry per (image content, settings) key.

Each entry stores its vector (float32), its own key and the SHA-256 of the vector, and both are
checked on read: an entry moved or copied under another key (two swapped files), truncated, or
edited is recomputed with a :class:`CacheWarning`, never used.
"""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path

import numpy as np

from .._utils.digests import array_digest
from .._utils.files import atomic_path
from .._utils.user_warnings import warn_at_user

#: Bumped whenever the meaning of a cached vector changes (invalidates every old entry).
#: 2: entries are ``.npz`` files holding their key and the vector's digest.
CACHE_FORMAT_VERSION = 2


class CacheWarning(UserWarning):
    """A cache entry could not be used (corrupt, truncated, wrong shape) and was recomputed."""


def cache_key(config: str, height: np.ndarray) -> str:
    """SHA-256 key of one image's vector: the settings (``config``, a canonical JSON text of
    everything that changes a vector) and the height map's content (:func:`array_digest`)."""
    return hashlib.sha256(f"{config}|{array_digest(height)}".encode()).hexdigest()


class EmbeddingCache:
    """One ``.npz`` entry (vector, key, digest) per (image, configuration) key, under
    ``root/<backbone>/``; ``root`` is made absolute, so the cache is the same wherever the
    process runs."""

    def __init__(self, root: str | Path, backbone: str):
        self.root = Path(root).expanduser().resolve() / backbone

    def path(self, key: str) -> Path:
        """Where the vector of ``key`` is stored."""
        return self.root / key[:2] / f"{key}.npz"  # 256 sub-folders keep directories small

    def get(self, key: str, dim: int) -> np.ndarray | None:
        """The cached vector, or None when absent or unusable (then warns; caller recomputes)."""
        path = self.path(key)
        try:
            with np.load(path, allow_pickle=False) as entry:
                vec, stored_key, digest = entry["vector"], str(entry["key"]), str(entry["sha256"])
        except FileNotFoundError:
            return None
        except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as exc:
            warn_at_user(f"embedding cache entry {path} is unreadable ({exc}); recomputing", CacheWarning)
            return None
        if stored_key != key or digest != array_digest(vec):
            warn_at_user(f"embedding cache entry {path} belongs to another key or its vector was changed "
                         "(moved, copied or edited); recomputing", CacheWarning)
            return None
        if vec.shape != (dim,) or vec.dtype != np.float32 or not np.all(np.isfinite(vec)):
            warn_at_user(f"embedding cache entry {path} has shape {vec.shape}, dtype {vec.dtype} or non-finite "
                         f"values; recomputing", CacheWarning)
            return None
        return vec

    def put(self, key: str, vec: np.ndarray) -> None:
        """Store ``vec`` (as float32) under ``key`` with the key and its digest, atomically."""
        vec = np.asarray(vec, dtype=np.float32)
        with atomic_path(self.path(key)) as tmp, open(tmp, "wb") as fh:
            np.savez(fh, vector=vec, key=np.array(key), sha256=np.array(array_digest(vec)))
