"""Fast equivalents of the scikit-image and scipy.ndimage routines the descriptor families use.

Each function here computes the same result as a library routine - bit for bit, or up to
floating-point rounding where that is stated - for the inputs the families pass; the families
call these instead of the library on every image. ``tests/test_descriptors.py`` compares each
one with the routine it replaces (``test_reimplementations_match_skimage``,
``test_fast_filters_equal_ndimage_and_skimage_bit_for_bit``,
``test_fast_paths_equal_their_definitions_up_to_rounding``).

* :func:`gaussian_stack`, :func:`dog_stack` - ``scipy.ndimage.gaussian_filter`` (reflect
  border) and differences of it, computed in the DCT domain; equal up to rounding;
* :func:`max_filter3` - ``scipy.ndimage.maximum_filter(size=3, mode="nearest")``;
* :func:`peak_mask`, :func:`local_maxima` - ``skimage.feature.peak_local_max`` with a 3^ndim
  footprint (same peaks, same order);
* :func:`blob_dog` - ``skimage.feature.blob_dog`` (same blobs, same order);
* :func:`reflect_and_nearest_smoothing` - ``gaussian_filter`` with reflect and nearest borders;
* :func:`box3_morphology` - ``scipy.ndimage.binary_dilation`` / ``binary_erosion`` by 3 x 3;
* :func:`disk_morphology` - ``skimage.morphology`` erosion / dilation / opening by ``disk(r)``;
* :func:`uniform_lbp` - ``skimage.feature.local_binary_pattern(method="uniform")``;
* :func:`label_perimeters` - ``skimage.measure.regionprops(labels)[i].perimeter``;
* :func:`label_maxima` - ``scipy.ndimage.maximum(values, labels, index)``;
* :func:`hull_areas` - the area of ``scipy.spatial.ConvexHull`` of all pixel squares of a label.

Two more modules hold speed paths of the same kind: :mod:`.fast_filters` (``skimage.feature.canny``
and its short ndimage correlations) and :mod:`.fast_glcm` (``skimage.feature.graycoprops`` of
several properties at once); ``tests/test_descriptors_speed.py`` checks them.
"""

from __future__ import annotations

import functools
import itertools

import numpy as np
from scipy import ndimage

# --------------------------------------------------------------------------------------------
# Gaussian and difference-of-Gaussian scale spaces in the DCT domain; peak search; DoG blobs
# --------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=64)
def gaussian_transfer(n: int, sigma: float, truncate: float = 4.0) -> np.ndarray:
    """Eigenvalues of ``scipy.ndimage.gaussian_filter1d(., sigma, mode="reflect", truncate=truncate)``
    on a line of ``n`` samples, one per DCT-II coefficient ``k = 0..n-1`` (read-only array).

    scipy's ``reflect`` extension (``d c b a | a b c d | d c b a``, repeated) is the even,
    2n-periodic extension of the line, and convolving that with a symmetric kernel ``h`` is
    diagonal in the DCT-II basis with eigenvalues ``h_0 + 2 sum_m h_m cos(pi k m / n)``. This is
    exact for any kernel radius, also one longer than the line (the cosine wraps like the
    repeated reflections).
    """
    radius = int(truncate * float(sigma) + 0.5)
    x = np.arange(-radius, radius + 1)
    kernel = np.exp(-0.5 / float(sigma) ** 2 * x**2)
    kernel /= kernel.sum()
    cosines = np.cos(np.pi * np.outer(np.arange(n), np.arange(1, radius + 1)) / n)
    out = kernel[radius] + 2.0 * cosines @ kernel[radius + 1 :]
    out.flags.writeable = False
    return out


def _filtered_dct(image: np.ndarray, transfers: list[tuple[np.ndarray, np.ndarray]]) -> list[np.ndarray]:
    """``image`` filtered by each separable (row, column) DCT-domain transfer pair: one forward
    and one inverse 2-D DCT-II per filter."""
    from scipy import fft

    coefficients = fft.dctn(np.asarray(image, float), type=2)
    return [fft.idctn(coefficients * t_rows[:, None] * t_cols[None, :], type=2) for t_rows, t_cols in transfers]


def gaussian_stack(image: np.ndarray, sigmas: list[float], truncate: float = 4.0) -> list[np.ndarray]:
    """``[scipy.ndimage.gaussian_filter(image, s, mode="reflect", truncate=truncate) for s in sigmas]``
    computed in the DCT-II domain (:func:`gaussian_transfer`): equal to ndimage's direct
    convolution up to rounding (~1e-15), at the cost of two n log n transforms per sigma
    whatever its size - the large sigmas of a DoG scale space have kernels of 4 sigma = 210 px.
    """
    rows, cols = np.shape(image)
    return _filtered_dct(image, [(gaussian_transfer(rows, s, truncate), gaussian_transfer(cols, s, truncate))
                                 for s in sigmas])


def dog_stack(image: np.ndarray, sigmas: list[float], scale: float = 1.0, truncate: float = 4.0) -> np.ndarray:
    """Difference-of-Gaussian scale space ``scale * (G(sigmas[i]) - G(sigmas[i + 1]))``, shape
    ``(len(sigmas) - 1, rows, cols)``, with ``G`` as :func:`gaussian_stack`. The differences are
    taken on the separable transfer functions (the filters are linear), which saves one
    transform and equals differencing the blurred images up to rounding."""
    from scipy import fft

    rows, cols = np.shape(image)
    transfers = _dog_transfers(rows, cols, tuple(float(s) for s in sigmas), float(scale), float(truncate))
    coefficients = fft.dctn(np.asarray(image, float), type=2)
    out = np.empty((len(sigmas) - 1, rows, cols))
    for i, transfer in enumerate(transfers):
        out[i] = fft.idctn(coefficients * transfer, type=2)
    return out


@functools.lru_cache(maxsize=8)
def _dog_transfers(rows: int, cols: int, sigmas: tuple[float, ...], scale: float, truncate: float) -> list[np.ndarray]:
    """The 2-D DCT-domain transfer functions of :func:`dog_stack` (read-only), which depend only
    on the shape and the sigmas: computed once per image shape."""
    pairs = [(gaussian_transfer(rows, s, truncate), gaussian_transfer(cols, s, truncate)) for s in sigmas]
    transfers = []
    # G_a - G_b is not separable, so the difference is formed from the 2-D transfer products;
    # scale is folded into the row factor of each term
    for (ra, ca), (rb, cb) in zip(pairs[:-1], pairs[1:], strict=True):
        transfer = np.outer(scale * ra, ca) - np.outer(scale * rb, cb)
        transfer.flags.writeable = False
        transfers.append(transfer)
    return transfers


def max_filter3(array: np.ndarray) -> np.ndarray:
    """``scipy.ndimage.maximum_filter(array, size=3, mode="nearest")`` as three-sample maxima
    along each axis in turn (identical: maxima are exact, and the ``nearest`` extension only
    repeats a sample already in the window). Works in place on one copy because fresh large
    arrays cost page faults."""
    out = np.array(array, copy=True)
    for axis in range(out.ndim):
        a = np.moveaxis(out, axis, 0)
        if a.shape[0] < 2:
            continue
        pair = np.maximum(a[:-1], a[1:])  # pair[i] = max(a[i], a[i + 1])
        a[0], a[-1] = pair[0], pair[-1]
        np.maximum(pair[:-1], pair[1:], out=a[1:-1])
    return out


def peak_mask(array: np.ndarray, threshold: float) -> np.ndarray:
    """skimage's peak candidates (``peak_local_max`` with a 3^ndim footprint, before border
    exclusion): samples equal to the maximum of their neighbourhood and above ``threshold``;
    none if every sample is such a maximum (a constant array)."""
    peak = array == max_filter3(array)
    if peak.all():
        peak[...] = False
    peak &= array > threshold
    return peak


def local_maxima(array: np.ndarray, threshold: float) -> np.ndarray:
    """Coordinates of ``skimage.feature.peak_local_max(array, threshold_abs=threshold,
    footprint=np.ones((3,) * ndim), exclude_border=0)``, in the same order (highest first,
    ties in C order; :func:`peak_mask`).

    The mask is computed in the array's memory order (a transposed view, such as the
    ``(row, col, level)`` view of a DoG stack, is not copied) and the peaks are then sorted by
    value and by their C-order index in ``array``'s own axes."""
    order = np.argsort([-abs(stride) for stride in array.strides], kind="stable")
    base = array.transpose(order)  # the same array with its axes in memory order
    coords_base = np.nonzero(peak_mask(base, threshold))
    values = base[coords_base]
    coords = [None] * array.ndim
    for i, axis in enumerate(order.tolist()):
        coords[axis] = coords_base[i]
    flat = np.ravel_multi_index(coords, array.shape) if values.size else np.empty(0, np.intp)
    return np.transpose(coords)[np.lexsort((flat, -values))]


def blob_dog(image: np.ndarray, min_sigma: float = 5.0, max_sigma: float = 40.0, threshold: float = 0.001,
             sigma_ratio: float = 1.6, overlap: float = 0.5) -> np.ndarray:
    """``skimage.feature.blob_dog`` for a 2-D float image with scalar sigmas: same scale space,
    same peak detection, same pruning - same blobs ``(row, col, sigma)``.

    The scale space comes from :func:`dog_stack` (DCT domain, equal to skimage's Gaussian
    differences up to rounding), the peaks from :func:`local_maxima` (identical to
    ``peak_local_max``, same order), and the pruning (``_prune_blobs``) evaluates every
    pair of nearby blobs in one vectorised step, with skimage's arithmetic and in its pair
    order, so the sequential elimination gives the same result.
    """
    image = np.asarray(image, float)
    k = int(np.log(max_sigma / min_sigma) / np.log(sigma_ratio) + 1)
    sigmas = [min_sigma * sigma_ratio**i for i in range(k + 1)]
    cube = dog_stack(image, sigmas, scale=1 / (sigma_ratio - 1))  # (level, row, col)
    peaks = local_maxima(cube.transpose(1, 2, 0), threshold)  # skimage's (row, col, level) order
    if peaks.size == 0:
        return np.empty((0, 3))
    blobs = np.column_stack([peaks[:, :2].astype(float), np.asarray(sigmas)[peaks[:, 2]]])
    return _prune_blobs(blobs, overlap)


def _prune_blobs(blobs: np.ndarray, overlap: float) -> np.ndarray:
    """skimage's ``_prune_blobs`` for 2-D blobs with one sigma, vectorised.

    skimage walks the nearby pairs in ``cKDTree.query_pairs`` order and, when two blobs overlap
    by more than ``overlap``, sets the smaller one's sigma to 0. A blob with sigma 0 can never
    eliminate a live one (it is always the smaller), so a pair changes anything only if both
    blobs are still alive, and then their sigmas are the original ones. Hence: evaluate every
    pair's overlap once with the original sigmas (numpy, same formulas), then replay only the
    eliminating pairs in order.
    """
    from scipy.spatial import cKDTree

    sigma = blobs[:, 2]
    found = cKDTree(blobs[:, :2]).query_pairs(2 * sigma.max() * np.sqrt(2))  # a set: skimage's order
    if not found:
        return blobs
    pairs = np.fromiter(itertools.chain.from_iterable(found), dtype=np.intp, count=2 * len(found)).reshape(-1, 2)
    i, j = pairs[:, 0], pairs[:, 1]
    s1, s2 = sigma[i], sigma[j]
    first_bigger = s1 > s2
    big = np.where(first_bigger, s1, s2)
    r1 = np.where(first_bigger, 1.0, s1 / s2)
    r2 = np.where(first_bigger, s2 / s1, 1.0)
    scale = big * np.sqrt(2)
    d = np.sqrt((blobs[j, 0] / scale - blobs[i, 0] / scale) ** 2 + (blobs[j, 1] / scale - blobs[i, 1] / scale) ** 2)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio1 = np.clip((d**2 + r1**2 - r2**2) / (2 * d * r1), -1, 1)
        ratio2 = np.clip((d**2 + r2**2 - r1**2) / (2 * d * r2), -1, 1)
        lens = np.sqrt(np.abs((-d + r2 + r1) * (d - r2 + r1) * (d + r2 - r1) * (d + r2 + r1)))
        area = r1**2 * np.arccos(ratio1) + r2**2 * np.arccos(ratio2) - 0.5 * lens
        fraction = area / (np.pi * np.minimum(r1, r2) ** 2)
    fraction = np.where(d > r1 + r2, 0.0, np.where(d <= np.abs(r1 - r2), 1.0, fraction))
    loser = np.where(first_bigger, j, i)
    other = np.where(first_bigger, i, j)
    alive = np.ones(len(blobs), bool)
    for k in np.nonzero(fraction > overlap)[0].tolist():
        if alive[loser[k]] and alive[other[k]]:
            alive[loser[k]] = False
    return blobs[alive]


# --------------------------------------------------------------------------------------------
# Smoothing and binary morphology
# --------------------------------------------------------------------------------------------


def reflect_and_nearest_smoothing(image: np.ndarray, sigma: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """``(gaussian_filter(image, sigma, mode="reflect"), gaussian_filter(image, sigma,
    mode="nearest"))`` - the smoothing of the paper's roughness and of its defect/grain analyses
    (:func:`paper_smoothing`) - for the cost of one filter plus its border frame.

    The two borders differ only within the kernel radius ``r = int(4 sigma + 0.5)`` of the
    image edge: elsewhere every 1-D pass reads inside the image. The frame is recomputed on
    strips ``2r`` wide, whose first ``r`` lines see exactly the inputs they see in the whole
    image, so both results equal ndimage's bit for bit.
    """
    image = np.asarray(image, float)
    reflect = ndimage.gaussian_filter(image, sigma)
    nearest = reflect.copy()
    r = int(4.0 * float(sigma) + 0.5)
    if r == 0:
        return reflect, nearest
    w = 2 * r

    def near(part: np.ndarray) -> np.ndarray:
        return ndimage.gaussian_filter(part, sigma, mode="nearest")

    nearest[:r] = near(image[:w])[:r]
    nearest[-r:] = near(image[-w:])[-r:]
    nearest[:, :r] = near(image[:, :w])[:, :r]
    nearest[:, -r:] = near(image[:, -w:])[:, -r:]
    return reflect, nearest



def box3_morphology(mask: np.ndarray, operation: str) -> np.ndarray:
    """Binary dilation (outside False) or erosion (outside True) by a 3 x 3 square, identical
    to ``ndimage.binary_dilation(mask, ones((3, 3)))`` / ``binary_erosion(..., border_value=1)``:
    OR / AND of the three shifted rows, then of the three shifted columns."""
    if operation not in ("erosion", "dilation"):
        raise ValueError(f"operation must be erosion or dilation, not {operation!r}")
    erode = operation == "erosion"
    combine = np.logical_and if erode else np.logical_or
    out = np.array(mask, bool)
    for axis in (0, 1):
        a = np.moveaxis(out, axis, 0)
        if a.shape[0] < 2:
            continue
        pair = combine(a[:-1], a[1:])  # pair[i] = a[i] op a[i + 1]; the outside is neutral
        a[0], a[-1] = pair[0], pair[-1]
        combine(pair[:-1], pair[1:], out=a[1:-1])
    return out


def disk_morphology(mask: np.ndarray, radius: int, operation: str) -> np.ndarray:
    """Binary ``erosion``/``dilation``/``opening`` by ``skimage.morphology.disk(radius)`` with a
    reflect border, identical to ``skimage.morphology.opening(mask, disk(radius))`` (and
    ``erosion``, ``dilation``): the disk is a union of horizontal chords, so the operation is
    AND/OR along rows (grown one column at a time) combined over row shifts."""
    from skimage.morphology import disk

    if operation == "opening":
        return disk_morphology(disk_morphology(mask, radius, "erosion"), radius, "dilation")
    if operation not in ("erosion", "dilation"):
        raise ValueError(f"operation must be erosion, dilation or opening, not {operation!r}")
    combine = np.logical_and if operation == "erosion" else np.logical_or
    half_widths = ((disk(radius).sum(axis=1) - 1) // 2).tolist()
    padded = np.pad(np.asarray(mask, bool), radius, mode="symmetric")
    rows, cols = mask.shape
    # lines[w][:, j]: AND/OR of padded columns j - w .. j + w (for the output columns, grown
    # one column each side at a time; the padding covers every reach)
    lines = [padded[:, radius : radius + cols].copy()]
    for w in range(1, max(half_widths) + 1):
        grown = combine(lines[-1], padded[:, radius - w : radius - w + cols])
        lines.append(combine(grown, padded[:, radius + w : radius + w + cols], out=grown))
    out = lines[half_widths[0]][:rows].copy()
    for dy, w in enumerate(half_widths[1:], start=1):
        combine(out, lines[w][dy : dy + rows], out=out)
    return out

# --------------------------------------------------------------------------------------------
# Local binary patterns
# --------------------------------------------------------------------------------------------


_LBP_BLOCK_ROWS = 64  # rows per slab, so that a slab's temporaries stay in cache


def uniform_lbp(image: np.ndarray, n_points: int = 8, radius: float = 1.0) -> np.ndarray:
    """Rotation-invariant uniform LBP codes, identical to
    ``skimage.feature.local_binary_pattern(image, n_points, radius, method="uniform")``.

    Code ``k`` in ``0..P`` is a uniform pattern with ``k`` neighbours >= the centre; ``P + 1`` is
    any non-uniform pattern (integer array; skimage returns the same values as floats).
    Neighbours are bilinearly interpolated, zero outside the image (as skimage). Vectorised over
    slabs of rows: one pass per neighbour, accumulating the count of set bits and of bit changes
    in small integers, in buffers reused across passes.
    """
    img = np.ascontiguousarray(image, dtype=np.float64)
    rows, cols = img.shape
    pad = int(np.ceil(radius)) + 1
    padded = np.pad(img, pad)  # zeros outside, skimage's constant-0 interpolation mode
    angles = 2 * np.pi * np.arange(n_points) / n_points
    rp = np.round(-radius * np.sin(angles), 5)
    cp = np.round(radius * np.cos(angles), 5)
    # skimage interpolates at the absolute position r + rp, so the fractional weights carry a
    # position-dependent rounding; reproducing it (per row / per column) and its arithmetic
    # order, value = (1 - dr) * top + dr * bottom with top = (1 - dc) * a + dc * b, makes ties
    # resolve identically
    col_weight = {c: (np.arange(cols) + c - np.floor(np.arange(cols) + c))[None, :] for c in set(cp.tolist())}
    row_weight = [(np.arange(rows) + r - np.floor(np.arange(rows) + r))[:, None] for r in rp]
    count_type = np.uint8 if n_points < 255 else np.int32
    codes = np.empty(img.shape, count_type)
    for top in range(0, rows, _LBP_BLOCK_ROWS):
        n = min(_LBP_BLOCK_ROWS, rows - top)
        centre = img[top : top + n]
        slab = padded[top : top + n + 2 * pad]  # the slab's rows and `pad` more on each side
        # along-row interpolation over the slab, shared by the neighbours with the same column
        # offset (the pair at +-angle): the vertical step then only picks shifted rows of it
        along_rows: dict[float, np.ndarray] = {}
        interpolated, scratch = np.empty_like(centre), np.empty_like(centre)
        bit, previous = np.empty(centre.shape, bool), np.empty(centre.shape, bool)
        ones, changes = np.zeros(centre.shape, count_type), np.zeros(centre.shape, count_type)
        for i in range(n_points):
            r0, c0 = int(np.floor(rp[i])), int(np.floor(cp[i]))
            if rp[i] == r0 and cp[i] == c0:
                value = slab[pad + r0 : pad + r0 + n, pad + c0 : pad + c0 + cols]
            else:
                r1, c1 = int(np.ceil(rp[i])), int(np.ceil(cp[i]))
                if cp[i] not in along_rows:
                    dc = col_weight[cp[i]]
                    along_rows[cp[i]] = (1 - dc) * slab[:, pad + c0 : pad + c0 + cols] + dc * slab[:, pad + c1 : pad + c1 + cols]
                horizontal = along_rows[cp[i]]
                dr = row_weight[i][top : top + n]
                value = np.multiply(1 - dr, horizontal[pad + r0 : pad + r0 + n], out=interpolated)
                np.add(value, np.multiply(dr, horizontal[pad + r1 : pad + r1 + n], out=scratch), out=value)
            # (value - centre) >= 0 is value >= centre for finite floats (gradual underflow)
            np.greater_equal(value, centre, out=bit)
            ones += bit
            if i:  # skimage counts the P - 1 transitions between consecutive bits (no wrap)
                np.not_equal(bit, previous, out=previous)
                changes += previous
            bit, previous = previous, bit
        ones[changes > 2] = n_points + 1  # non-uniform patterns
        codes[top : top + n] = ones
    return codes


# --------------------------------------------------------------------------------------------
# Measurements of labelled regions
# --------------------------------------------------------------------------------------------


_PERIMETER_WEIGHTS = np.zeros(50)
_PERIMETER_WEIGHTS[[5, 7, 15, 17, 25, 27]] = 1.0
_PERIMETER_WEIGHTS[[21, 33]] = np.sqrt(2)
_PERIMETER_WEIGHTS[[13, 23]] = (1 + np.sqrt(2)) / 2
_NEIGHBOURS_4 = ((-1, 0), (1, 0), (0, -1), (0, 1))
_NEIGHBOURS_DIAG = ((-1, -1), (-1, 1), (1, -1), (1, 1))


def contour_pixels(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Contour of every label and its perimeter: ``(perimeters indexed by label - 1, contour
    mask, rows, columns and labels of the contour pixels)``, the pixels in row-major order;
    see :func:`label_perimeters`."""
    n = int(labels.max())
    rows, cols = labels.shape
    padded = np.pad(labels, 1)  # label 0 outside the image

    def neighbour(dr: int, dc: int) -> np.ndarray:
        return padded[1 + dr : 1 + dr + rows, 1 + dc : 1 + dc + cols]

    contour = np.zeros(labels.shape, bool)
    for dr, dc in _NEIGHBOURS_4:
        contour |= neighbour(dr, dc) != labels
    contour &= labels > 0
    r, c = np.nonzero(contour)
    owner = labels[r, c]
    on_contour = np.pad(contour, 1).ravel()
    flat_labels = padded.ravel()
    at = (r + 1) * (cols + 2) + (c + 1)
    code = np.ones(len(at), np.int64)
    for weight, offsets in ((2, _NEIGHBOURS_4), (10, _NEIGHBOURS_DIAG)):
        for dr, dc in offsets:
            other = at + dr * (cols + 2) + dc
            code += weight * (on_contour[other] & (flat_labels[other] == owner))
    perimeters = np.bincount(owner, weights=_PERIMETER_WEIGHTS[code], minlength=n + 1)[1:]
    return perimeters, contour, r, c, owner


def label_perimeters(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Perimeter (px) of every label, identical to ``regionprops(labels)[i].perimeter``
    (skimage's 4-connectivity contour estimate), for all labels at once.

    A pixel is on the contour when a 4-neighbour has another label (or is outside the image).
    Each contour pixel gets skimage's code ``1 + 2 (4-neighbours on the same contour) + 10
    (diagonal neighbours on the same contour)`` and the code's length weight (1, sqrt 2 or
    (1 + sqrt 2) / 2). The codes are evaluated on the contour pixels only, by flat offsets into
    the zero-padded label image. Returns ``(perimeters indexed by label - 1, contour mask)``.
    """
    perimeters, contour, *_ = contour_pixels(labels)
    return perimeters, contour


def _sort_labels(labels: np.ndarray) -> np.ndarray:
    """Stable argsort of label values (radix sort when they fit in 16 bits)."""
    small = labels.max(initial=0) < 2**16
    return np.argsort(labels.astype(np.uint16) if small else labels, kind="stable")


def _row_extreme_corners(rows: np.ndarray, cols: np.ndarray, owner: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Corners of the outermost pixel squares of every label row: ``(points (k, 2), label of
    each point)``, grouped by label. Pixels given in row-major order (as ``numpy.nonzero``)."""
    order = _sort_labels(owner)  # stable: row-major order kept within each label
    g, r, c = owner[order], rows[order], cols[order]
    first = np.r_[True, (g[1:] != g[:-1]) | (r[1:] != r[:-1])]
    starts = np.nonzero(first)[0]
    ends = np.r_[starts[1:], len(g)] - 1
    row, left, right = r[starts].astype(float), c[starts] - 0.5, c[ends] + 0.5
    points = np.stack([np.column_stack([row - 0.5, left]), np.column_stack([row + 0.5, left]),
                       np.column_stack([row - 0.5, right]), np.column_stack([row + 0.5, right])], axis=1)
    return points.reshape(-1, 2), np.repeat(g[starts], 4)



def label_maxima(labels: np.ndarray, values: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """``scipy.ndimage.maximum(values, labels, index=1..n)`` for labelled pixels only:
    ``labels`` (all > 0) and ``values`` are flat arrays of the same pixels, ``counts[i]`` (> 0)
    the number of pixels of label ``i + 1``. One stable sort by label, then one maximum per run."""
    starts = np.r_[0, np.cumsum(counts)[:-1].astype(int)]
    return np.maximum.reduceat(values[_sort_labels(labels)], starts)


def hull_areas(rows: np.ndarray, cols: np.ndarray, owner: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    """Area (px²) of the convex hull of all pixel squares of each label ``i + 1`` with
    ``wanted[i]`` (NaN for the others), from the label's contour pixels ``rows, cols, owner``
    (row-major, as returned by :func:`contour_pixels`).

    The hull of a label's pixel squares is the hull of its contour pixels' squares, and that is
    the hull of the outer corners of the leftmost and rightmost square of each row - the squares
    between them lie in the rectangle they span - so ``scipy.spatial.ConvexHull`` gets 4 points
    per row instead of 4 per pixel, with the same hull.
    """
    from scipy.spatial import ConvexHull

    areas = np.full(len(wanted), np.nan)
    points, owner_of_points = _row_extreme_corners(rows, cols, owner)
    bounds = np.searchsorted(owner_of_points, np.arange(1, len(wanted) + 2))
    for g in np.nonzero(wanted)[0]:
        areas[g] = ConvexHull(points[bounds[g] : bounds[g + 1]]).volume  # 2-D "volume" is the area
    return areas
