"""Fast equivalent of ``skimage.feature.canny`` and of its short ndimage correlations (see :mod:`.fast`).

scikit-image's Canny spends most of its time in five ``scipy.ndimage.correlate1d`` passes of
3-tap kernels (the Gaussian of the image and of the all-ones mask, then two Sobel filters of two
passes each), and ndimage's passes along the rows' axis (axis 0) are slow: it copies every
strided column into a line buffer. :func:`correlate1d_taps` computes the same short correlations
with whole-array numpy operations on shifted slices, in ndimage's order of operations
(``x * w[r]``, then ``+= (x[i - j] + x[i + j]) * w[r - j]`` for ``j = r .. 1``; ``-`` for an
antisymmetric kernel), so every value is identical bit for bit; the Gaussian of the mask depends
only on the shape and is cached. Non-maximum suppression (:func:`non_maximum_suppression`)
reproduces scikit-image's compiled helper, vectorised over the candidate pixels; the hysteresis is
scikit-image's, with the labels of the strong segments marked without sorting them.
``tests/test_descriptors_speed.py`` checks the edges against ``skimage.feature.canny`` bit for
bit; ``benchmarks/bench_descriptor_speed.py --routines`` times both.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np
from scipy import ndimage

__all__ = ["canny", "correlate1d_taps", "gaussian_weights", "non_maximum_suppression", "sobel"]

_EPS = float(np.finfo(float).eps)
#: candidate pixels per chunk of the non-maximum suppression
_NMS_CHUNK = 8192


@functools.lru_cache(maxsize=32)
def gaussian_weights(sigma: float, truncate: float = 4.0) -> np.ndarray:
    """The kernel of ``scipy.ndimage.gaussian_filter1d(., sigma, truncate=truncate)``, exactly:
    its response to a unit impulse (the impulse makes every other term of the sum an exact zero)."""
    radius = int(truncate * float(sigma) + 0.5)
    impulse = np.zeros(2 * radius + 1)
    impulse[radius] = 1.0
    weights = ndimage.gaussian_filter1d(impulse, sigma, mode="constant", truncate=truncate)[::-1].copy()
    weights.flags.writeable = False
    return weights


def correlate1d_taps(array: np.ndarray, weights: np.ndarray | Sequence[float], axis: int, mode: str) -> np.ndarray:
    """``scipy.ndimage.correlate1d(array, weights, axis, mode=mode)`` for a symmetric or
    antisymmetric 3-tap kernel, ``mode`` "constant" (zero outside) or "reflect", bit for bit
    (ndimage's arithmetic: ``x * w[1] + (x[i - 1] +- x[i + 1]) * w[0]``). Shifted slices, no
    padded copy: only the two end lines read the extension."""
    x = np.ascontiguousarray(array, dtype=float)  # results keep the input's layout
    w = np.asarray(weights, float)
    if w.shape != (3,):
        raise ValueError(f"correlate1d_taps needs a 3-tap kernel, got {len(w)} taps")
    if abs(w[2] - w[0]) <= _EPS:
        combine = np.add
    elif abs(w[2] + w[0]) <= _EPS:
        combine = np.subtract
    else:
        raise ValueError("correlate1d_taps needs a symmetric or antisymmetric kernel")
    out = x * w[1]
    term = np.empty_like(out)
    a, t = np.moveaxis(x, axis, 0), np.moveaxis(term, axis, 0)
    before, after = (np.zeros_like(a[0]), np.zeros_like(a[0])) if mode == "constant" else (a[0], a[-1])
    if len(a) == 1:
        combine(before, after, out=t[0])
    else:
        combine(a[:-2], a[2:], out=t[1:-1])
        combine(before, a[1], out=t[0])
        combine(a[-2], after, out=t[-1])
    term *= w[0]
    out += term
    return out


def _gaussian_constant(array: np.ndarray, sigma: float) -> np.ndarray:
    """``scipy.ndimage.gaussian_filter(array, sigma, mode="constant")`` (2-D, truncate 4)."""
    w = gaussian_weights(float(sigma))
    return correlate1d_taps(correlate1d_taps(array, w, 0, "constant"), w, 1, "constant")


@functools.lru_cache(maxsize=16)
def _bleed_over(shape: tuple[int, int], sigma: float) -> np.ndarray:
    """skimage's ``gaussian(ones, sigma, mode="constant") + eps`` (the division that undoes the
    zero border of the smoothing), which depends only on the shape."""
    out = _gaussian_constant(np.ones(shape), sigma) + _EPS
    out.flags.writeable = False
    return out


def sobel(array: np.ndarray, axis: int) -> np.ndarray:
    """``scipy.ndimage.sobel(array, axis)`` of a 2-D array with at least 2 samples per axis
    (reflect border): the difference ``x[i + 1] - x[i - 1]`` along ``axis``, then
    ``2 x[i] + (x[i - 1] + x[i + 1])`` along the other - ndimage's ``x * 0 + (x[i - 1] -
    x[i + 1]) * -1`` and ``x * 2 + (x[i - 1] + x[i + 1]) * 1`` without the exact multiplications
    by 0, 1 and -1, so the same values, except that a zero may differ in sign (which neither
    the magnitude nor the non-maximum suppression can see)."""
    x = np.ascontiguousarray(array, dtype=float)
    derivative = np.empty_like(x)
    a, d = np.moveaxis(x, axis, 0), np.moveaxis(derivative, axis, 0)
    np.subtract(a[2:], a[:-2], out=d[1:-1])
    np.subtract(a[1], a[0], out=d[0])  # the reflected neighbour of the first line is itself
    np.subtract(a[-1], a[-2], out=d[-1])
    out = derivative * 2.0
    b, o = np.moveaxis(derivative, 1 - axis, 0), np.moveaxis(out, 1 - axis, 0)
    o[1:-1] += b[:-2] + b[2:]
    o[0] += b[0] + b[1]
    o[-1] += b[-2] + b[-1]
    return out


def non_maximum_suppression(isobel: np.ndarray, jsobel: np.ndarray, magnitude: np.ndarray,
                            low_threshold: float) -> np.ndarray:
    """scikit-image's bilinear non-maximum suppression of Canny (its compiled helper) for an
    unmasked image: ``magnitude`` where it is at least ``low_threshold`` (rounded to float32,
    the helper's parameter type; 1e-14 for 0), not on the image border, and not below the
    magnitude interpolated at one pixel along the gradient on either side; 0 elsewhere.

    The interpolation follows the helper exactly: the gradient ``(isobel, jsobel)`` picks one of
    four octant pairs - the two neighbours along the axis of the larger component and the
    diagonal one between them, weighted ``w`` = smaller / larger component - and the value is
    ``diagonal * w + axial * (1 - w)``. Evaluated for the candidate pixels only, by flat offsets.
    """
    rows, cols = magnitude.shape
    low = float(np.float32(low_threshold)) if low_threshold != 0 else float(np.float32(1e-14))
    flat = magnitude.ravel()
    candidate = np.zeros(magnitude.shape, bool)
    np.greater_equal(magnitude[1:-1, 1:-1], low, out=candidate[1:-1, 1:-1])
    out = np.zeros(magnitude.shape)
    found = np.flatnonzero(candidate)
    # in chunks whose temporaries stay in the CPU cache (the work is memory-bound)
    for start in range(0, len(found), _NMS_CHUNK):
        at = found[start : start + _NMS_CHUNK]
        m, gi, gj = flat.take(at), isobel.ravel().take(at), jsobel.ravel().take(at)
        ai, aj = np.abs(gi), np.abs(gj)
        # w = smaller / larger component, whichever branch the helper takes (on a tie both give
        # 1, and the axial neighbour's weight 1 - w is 0, so the tie's choice of axis is moot)
        w = np.minimum(ai, aj)
        w /= np.maximum(ai, aj)
        rest = 1.0 - w
        # flat offsets of the + side neighbours (the - side is the point reflection): the
        # diagonal one below-right for gradients of one sign, above-right otherwise; the axial
        # one along the rows' axis when |isobel| is the larger, else the right neighbour
        vertical = np.where((gi <= 0) == (gj <= 0), cols, -cols)
        axial = np.where(ai > aj, vertical, 1)
        diagonal = vertical + 1
        keep = np.ones(len(at), bool)
        for sign in (1, -1):
            value = flat.take(at + sign * diagonal)
            value *= w
            near = flat.take(at + sign * axial)
            near *= rest
            value += near  # diagonal * w + axial * (1 - w), the helper's order
            keep &= value <= m
        out.ravel()[at[keep]] = m[keep]
    return out


def canny(image: np.ndarray, sigma: float = 1.0, low_threshold: float = 0.1, high_threshold: float = 0.2) -> np.ndarray:
    """``skimage.feature.canny(image, sigma, low_threshold, high_threshold)`` of a 2-D float
    image (no mask, zero border, absolute thresholds): the same edge mask, bit for bit, with
    the filtering of :func:`correlate1d_taps` and :func:`non_maximum_suppression`, for
    ``0.125 <= sigma < 0.375`` (a 3-tap Gaussian; the paper's is 0.3): scikit-image's own function
    computes larger sigmas."""
    image = np.ascontiguousarray(image, dtype=float)
    if image.ndim != 2 or int(4.0 * float(sigma) + 0.5) != 1 or min(image.shape) < 2:
        from skimage.feature import canny as skimage_canny

        return skimage_canny(image, sigma, low_threshold, high_threshold)
    smoothed = _gaussian_constant(image, sigma)
    smoothed /= _bleed_over(image.shape, float(sigma))
    jsobel, isobel = sobel(smoothed, 1), sobel(smoothed, 0)
    magnitude = isobel * isobel
    magnitude += jsobel * jsobel
    np.sqrt(magnitude, out=magnitude)
    low_masked = non_maximum_suppression(isobel, jsobel, magnitude, low_threshold)
    low_mask = low_masked > 0
    labels, count = ndimage.label(low_mask, np.ones((3, 3), bool))
    if count == 0:
        return low_mask
    # segments of the low mask with a pixel above the high threshold (skimage's np.unique of
    # their labels, without the sort)
    good = np.zeros(count + 1, bool)
    good[labels[low_mask & (low_masked >= high_threshold)]] = True
    return good[labels]
