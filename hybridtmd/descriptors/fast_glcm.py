"""Several ``skimage.feature.graycoprops`` properties of one grey-level co-occurrence matrix at once
(see :mod:`.fast`).

``graycoprops`` normalises the matrix and builds its weight grid anew for each property; the
paper's GLCM asks for six properties of one matrix and the texture family's for six more. Here
the matrix is normalised once and the grids are built once per call, and each property is then
evaluated with ``graycoprops``' own expressions on the same arrays, so every value is identical
bit for bit (``tests/test_descriptors_speed.py``; timed by ``benchmarks/bench_descriptor_speed.py
--routines``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["glcm_properties"]

_PROPS = ("contrast", "dissimilarity", "homogeneity", "energy", "ASM", "correlation", "entropy")


def glcm_properties(glcm: np.ndarray, props: Sequence[str]) -> dict[str, np.ndarray]:
    """``{prop: skimage.feature.graycoprops(glcm, prop)}`` for ``props`` among contrast,
    dissimilarity, homogeneity, energy, ASM, correlation and entropy: ``(distances, angles)``
    arrays of a ``(levels, levels, distances, angles)`` matrix, bit for bit."""
    unknown = set(props) - set(_PROPS)
    if glcm.ndim != 4 or glcm.shape[0] != glcm.shape[1] or unknown:
        raise ValueError(f"glcm_properties needs a (levels, levels, distances, angles) matrix and properties "
                         f"among {_PROPS}; got shape {glcm.shape} and {sorted(unknown)}")
    levels = glcm.shape[0]
    p = glcm.astype(np.float64)
    sums = np.sum(p, axis=(0, 1), keepdims=True)
    sums[sums == 0] = 1
    p /= sums
    i, j = np.ogrid[0:levels, 0:levels]
    out: dict[str, np.ndarray] = {}
    squares = None
    for prop in props:
        if prop in ("contrast", "dissimilarity", "homogeneity"):
            weights = {"contrast": lambda: (i - j) ** 2, "dissimilarity": lambda: np.abs(i - j),
                       "homogeneity": lambda: 1.0 / (1.0 + (i - j) ** 2)}[prop]()
            out[prop] = np.sum(p * weights.reshape((levels, levels, 1, 1)), axis=(0, 1))
        elif prop in ("energy", "ASM"):
            squares = np.sum(p**2, axis=(0, 1)) if squares is None else squares
            out[prop] = np.sqrt(squares) if prop == "energy" else squares
        elif prop == "entropy":
            ln = -np.log(p, where=(p != 0), out=np.zeros_like(p))
            out[prop] = np.sum(p * ln, axis=(0, 1))
        else:
            out[prop] = _correlation(p, levels)
    return out


def _correlation(p: np.ndarray, levels: int) -> np.ndarray:
    """graycoprops' correlation of the normalised matrix ``p`` (1 where a deviation is ~0)."""
    results = np.zeros(p.shape[2:], dtype=np.float64)
    row = np.arange(levels).reshape((levels, 1, 1, 1))
    col = np.arange(levels).reshape((1, levels, 1, 1))
    diff_i = row - np.sum(row * p, axis=(0, 1))
    diff_j = col - np.sum(col * p, axis=(0, 1))
    std_i = np.sqrt(np.sum(p * diff_i**2, axis=(0, 1)))
    std_j = np.sqrt(np.sum(p * diff_j**2, axis=(0, 1)))
    cov = np.sum(p * (diff_i * diff_j), axis=(0, 1))
    degenerate = (std_i < 1e-15) | (std_j < 1e-15)
    results[degenerate] = 1
    results[~degenerate] = cov[~degenerate] / (std_i[~degenerate] * std_j[~degenerate])
    return results
