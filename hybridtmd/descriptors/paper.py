"""The seed paper's interpretability descriptors (family ``paper``).

Moses & Reinhart correlated their CNN embeddings with physical descriptors computed by
``codes/utils_analysis.py`` of their repository. This module re-implements the same definitions
(same operators and parameters; independent code):

* **RMS roughness** - rms of the image minus its Gaussian-smoothed version (sigma 1 px,
  ``scipy.ndimage.gaussian_filter``, reflect border): a high-pass roughness.
* **Step edges** - Canny edges (sigma 0.3, skimage default thresholds), 3x3 binary dilation then
  erosion (erosion border value True, as skimage's ``binary_erosion``), count of 4-connected
  components.
* **Defect density** - local maxima (``peak_local_max``, min_distance 1, 1-px border excluded) of
  the image smoothed by ``skimage.filters.gaussian`` (sigma 1, nearest border), per pixel.
  The paper divided by ``H*W*3`` because its arrays carried three identical RGB channels; we
  divide by ``H*W`` (a constant factor 3; correlations and trees are unaffected).
* **Anisotropy** - std of the gradient angle ``arctan2(d/dcol, d/drow)`` divided by the mean
  gradient magnitude (``numpy.gradient``).
* **Local variation** - mean of ``|image - gaussian(image, 1)|`` divided by its maximum.
* **DoG blobs** - number of ``skimage.feature.blob_dog`` blobs, sigma 5-40 px, threshold 0.001
  on the normalised image (the paper ran it on the H x W x 3 array; with identical channels the
  detections are those of the 2-D image). :func:`blob_dog` reproduces skimage's detector
  (same blobs, same order) with a DCT-domain scale space, a separable peak search and a faster
  pruning step. ``DescriptorConfig.blob_method="fast"`` (default) runs it on
  the 2x block-averaged image with halved sigmas; its agreement with the exact version is
  measured by ``benchmarks/bench_descriptors.py``.
* **GLCM** - contrast, dissimilarity, homogeneity, energy, correlation, ASM of the symmetric,
  normalised grey-level co-occurrence matrix at distance 1 px, angle 0, 256 grey levels.
* **Grains and domains** - Gaussian sigma 1 (skimage, nearest border), Otsu threshold, 8-connected
  labelling: grain count, density, mean equivalent diameter. Domains: the binary image opened with
  a disk of radius 5 px, labelled: count, density, mean area. (The paper's "grain density" plot
  used the *domain* density.)

Inputs and units. The paper's descriptors were computed on 8-bit images scaled to [0, 1]; here on
the levelled heights normalised by :func:`~hybridtmd.descriptors.core.normalise_height`
(0.5-99.5 percentile clip, 256 levels). Those values are in pixel / normalised-height units and
depend on pixel size and scan size like the paper's. Each comes with a physical counterpart: the
same operator on heights in nm (``..._nm``, ``..._rad``) or the count per µm² of scanned area
(``..._per_um2``), lengths converted with the pixel size.
"""

from __future__ import annotations

import functools
import itertools

import numpy as np
from scipy import ndimage

from .core import Surface
from .registry import DescriptorValues, register_family

PAPER_REFERENCE = (
    "Moses & Reinhart, transfer learning for multi-material classification of TMDs; "
    "github.com/reinhart-group/Transfer-Learning-for-Multi-material-Classification-of-"
    "Transition-Metal-Dichalcogenides codes/utils_analysis.py"
)

_NORM = "on the 0.5-99.5 % clipped, [0, 1]-normalised 8-bit height image"

DESCRIPTORS = [
    ("paper_rms_roughness", "1", f"rms of image - Gaussian(sigma 1 px) {_NORM}"),
    ("paper_rms_roughness_nm", "nm", "rms of height - Gaussian(sigma 1 px) of the levelled height"),
    ("paper_step_edge_count", "count", f"Canny(sigma 0.3) edges closed by 3x3 dilation+erosion, connected components, {_NORM}"),
    ("paper_step_edge_density_per_um2", "per µm²", "paper_step_edge_count per µm² of scanned area"),
    ("paper_defect_density_per_px", "per px", f"local maxima of Gaussian(sigma 1) smoothed image per pixel, {_NORM}"),
    ("paper_defect_density_per_um2", "per µm²", "local maxima of the Gaussian(sigma 1) smoothed image per µm²"),
    ("paper_anisotropy", "rad px", f"std(gradient angle) / mean(gradient magnitude) {_NORM}"),
    ("paper_anisotropy_rad", "rad", "std(gradient angle) / mean(surface slope nm/nm) of the levelled height"),
    ("paper_local_variation", "1", f"mean |image - Gaussian(sigma 1)| / max |image - Gaussian(sigma 1)| {_NORM}"),
    ("paper_local_variation_nm", "nm", "mean |height - Gaussian(sigma 1 px)| of the levelled height"),
    ("paper_dog_blob_count", "count", f"blob_dog blobs, sigma 5-40 px, threshold 0.001, {_NORM}"),
    ("paper_dog_blob_density_per_um2", "per µm²", "paper_dog_blob_count per µm² of scanned area"),
    ("paper_glcm_contrast", "1", "GLCM contrast (distance 1 px, angle 0, 256 levels, symmetric, normed)"),
    ("paper_glcm_dissimilarity", "1", "GLCM dissimilarity (distance 1 px, angle 0, 256 levels)"),
    ("paper_glcm_homogeneity", "1", "GLCM homogeneity (distance 1 px, angle 0, 256 levels)"),
    ("paper_glcm_energy", "1", "GLCM energy, sqrt(ASM) (distance 1 px, angle 0, 256 levels)"),
    ("paper_glcm_correlation", "1", "GLCM correlation (distance 1 px, angle 0, 256 levels)"),
    ("paper_glcm_asm", "1", "GLCM angular second moment (distance 1 px, angle 0, 256 levels)"),
    ("paper_grain_count", "count", f"8-connected regions above Otsu's threshold of Gaussian(sigma 1), {_NORM}"),
    ("paper_grain_density_per_px", "per px", "paper_grain_count / number of pixels"),
    ("paper_grain_density_per_um2", "per µm²", "paper_grain_count per µm² of scanned area"),
    ("paper_grain_mean_eq_diameter_px", "px", "mean equivalent-circle diameter of the paper's grains"),
    ("paper_grain_mean_eq_diameter_nm", "nm", "mean equivalent-circle diameter of the paper's grains"),
    ("paper_domain_count", "count", "regions of the grain mask opened with a disk of radius 5 px"),
    ("paper_domain_density_per_px", "per px", "paper_domain_count / number of pixels (the paper's 'grain density')"),
    ("paper_domain_density_per_um2", "per µm²", "paper_domain_count per µm² of scanned area"),
    ("paper_domain_mean_area_px", "px²", "mean area of the paper's domains"),
    ("paper_domain_mean_area_nm2", "nm²", "mean area of the paper's domains"),
]
NAMES = [d[0] for d in DESCRIPTORS]
#: the descriptors computed on the levelled heights in nm (defined even without contrast)
_PHYSICAL_HEIGHT = ("paper_rms_roughness_nm", "paper_local_variation_nm")


# --------------------------------------------------------------------------------------------
# Array functions (image in normalised units unless stated)
# --------------------------------------------------------------------------------------------


def smoothing_residual(image: np.ndarray, sigma: float = 1.0) -> np.ndarray:
    """``image - gaussian_filter(image, sigma)`` (reflect border), the high-pass part the paper's
    RMS roughness and local variation are computed from. Same unit as ``image``."""
    image = np.asarray(image, float)
    return image - ndimage.gaussian_filter(image, sigma)


def rms_roughness(image: np.ndarray, sigma: float = 1.0) -> float:
    """The paper's RMS roughness: ``sqrt(mean((image - gaussian(image, sigma))²))``, unit of ``image``."""
    residual = smoothing_residual(image, sigma)
    return float(np.sqrt(np.mean(residual**2)))


def local_variation(image: np.ndarray, sigma: float = 1.0) -> float:
    """The paper's local variation: mean |image - gaussian(image, sigma)| over its maximum (0-1);
    NaN when the residual is identically 0."""
    residual = np.abs(smoothing_residual(image, sigma))
    peak = residual.max()
    return float(residual.mean() / peak) if peak > 0 else float("nan")


def _correlate3(image: np.ndarray, centre: float, side: float, axis: int, mode: str) -> np.ndarray:
    """``scipy.ndimage.correlate1d(image, [side, centre, side], axis, mode=mode)`` for ``mode``
    "constant" (0) or "reflect", bit for bit: ndimage evaluates a symmetric 3-tap kernel as
    ``x * centre + (left + right) * side``, and so does this (numpy slices along the axis are
    several times faster than ndimage's line buffers along axis 0)."""
    pad = [(0, 0)] * image.ndim
    pad[axis] = (1, 1)
    padded = np.pad(image, pad, mode="constant" if mode == "constant" else "symmetric")
    n = image.shape[axis]
    left = padded[(slice(None),) * axis + (slice(0, n),)]
    right = padded[(slice(None),) * axis + (slice(2, n + 2),)]
    out = np.add(left, right)
    out *= side
    out += image * centre
    return out


def _difference3(image: np.ndarray, axis: int) -> np.ndarray:
    """``scipy.ndimage.correlate1d(image, [-1, 0, 1], axis)`` (reflect border): ``right - left``."""
    pad = [(0, 0)] * image.ndim
    pad[axis] = (1, 1)
    padded = np.pad(image, pad, mode="symmetric")
    n = image.shape[axis]
    return np.subtract(padded[(slice(None),) * axis + (slice(2, n + 2),)], padded[(slice(None),) * axis + (slice(0, n),)])


def _sobel(image: np.ndarray, axis: int) -> np.ndarray:
    """``scipy.ndimage.sobel(image, axis)`` (reflect border), bit for bit: the derivative along
    ``axis`` smoothed by [1, 2, 1] along the other axis."""
    return _correlate3(_difference3(image, axis), 2.0, 1.0, 1 - axis, "reflect")


def _filter_of_ones(shape: tuple[int, int], filt) -> np.ndarray:
    """``filt(np.ones(shape))`` for a separable 3-tap ``filt`` evaluated on at most 3 x 3 ones:
    a sample's result depends only on whether it is first, inner or last along each axis,
    because every inner line sees the same neighbours."""
    small = filt(np.ones(tuple(min(n, 3) for n in shape)))
    index = []
    for n in shape:
        position = np.arange(n) if n <= 3 else np.r_[0, np.ones(n - 2, int), 2]  # first, inner..., last
        index.append(position)
    return small[np.ix_(*index)]


def canny_edges(image: np.ndarray, sigma: float = 0.3, low_threshold: float = 0.1,
                high_threshold: float = 0.2) -> np.ndarray:
    """``skimage.feature.canny(image, sigma, low_threshold, high_threshold)`` (no mask, constant
    border) for a 2-D float image, bit for bit, when the Gaussian has 3 taps (sigma < 0.375,
    radius ``int(4 sigma + 0.5) = 1``): the smoothing, its border normalisation by the smoothed
    mask of ones, and the Sobel derivatives are evaluated with numpy slices in ndimage's own
    arithmetic order (:func:`_correlate3`), then skimage's non-maximum suppression and
    hysteresis run as in skimage. Other sigmas (or a skimage without the private suppression
    routine) call skimage directly.
    """
    from skimage.feature import canny

    image = np.ascontiguousarray(image, float)  # the suppression routine needs C order
    radius = int(4.0 * float(sigma) + 0.5)
    try:
        from skimage.feature._canny_cy import _nonmaximum_suppression_bilinear
    except ImportError:  # private in skimage: keep working (more slowly) if it moves
        _nonmaximum_suppression_bilinear = None
    if radius != 1 or image.ndim != 2 or min(image.shape) < 3 or _nonmaximum_suppression_bilinear is None:
        return canny(image, sigma=sigma, low_threshold=low_threshold, high_threshold=high_threshold)
    x = np.arange(-1, 2)
    kernel = np.exp(-0.5 / float(sigma) ** 2 * x**2)
    kernel /= kernel.sum()  # scipy's _gaussian_kernel1d

    def gaussian(a: np.ndarray) -> np.ndarray:
        return _correlate3(_correlate3(a, kernel[1], kernel[0], 0, "constant"), kernel[1], kernel[0], 1, "constant")

    bleed_over = _filter_of_ones(image.shape, gaussian) + np.finfo(float).eps
    smoothed = gaussian(image)
    smoothed /= bleed_over
    jsobel, isobel = _sobel(smoothed, 1), _sobel(smoothed, 0)
    magnitude = isobel * isobel
    magnitude += jsobel * jsobel
    np.sqrt(magnitude, out=magnitude)
    eroded_mask = np.zeros(image.shape, bool)
    eroded_mask[1:-1, 1:-1] = True
    low_masked = _nonmaximum_suppression_bilinear(isobel, jsobel, magnitude, eroded_mask, low_threshold)
    low_mask = low_masked > 0
    labels, count = ndimage.label(low_mask, np.ones((3, 3), bool))
    if count == 0:
        return low_mask
    good = np.zeros(count + 1, bool)
    good[labels[low_mask & (low_masked >= high_threshold)]] = True
    good[0] = False
    return good[labels]


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


def step_edge_count(image: np.ndarray, sigma: float = 0.3) -> int:
    """Number of step edges: Canny edges (``sigma``; skimage's default thresholds 0.1/0.2 for
    float images; :func:`canny_edges`), closed by a 3x3 dilation and erosion, counted as
    4-connected components."""
    edges = canny_edges(np.asarray(image, float), sigma=sigma)
    # border values as skimage's binary_dilation (False) / binary_erosion (True) used by the paper
    closed = box3_morphology(box3_morphology(edges, "dilation"), "erosion")
    return int(ndimage.label(closed)[1])


def paper_smoothing(image: np.ndarray) -> np.ndarray:
    """``skimage.filters.gaussian(image, sigma=1)`` (nearest border), the smoothing of the paper's
    defect and grain analyses."""
    return ndimage.gaussian_filter(np.asarray(image, float), 1.0, mode="nearest")


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


def defect_count(image: np.ndarray, min_distance: int = 1, *, smoothed: np.ndarray | None = None) -> int:
    """Number of local maxima of ``skimage.filters.gaussian(image, 1)`` found by
    ``peak_local_max(min_distance=min_distance)`` (border of ``min_distance`` px excluded).
    ``smoothed`` can pass :func:`paper_smoothing` of ``image`` when it is already computed."""
    smoothed = paper_smoothing(image) if smoothed is None else smoothed
    if min_distance != 1:
        from skimage.feature import peak_local_max

        return int(len(peak_local_max(smoothed, min_distance=min_distance)))
    # peak_local_max's defaults: threshold = the minimum, 3 x 3 neighbourhood, 1-px border
    return int(peak_mask(smoothed, float(smoothed.min()))[1:-1, 1:-1].sum())


def gradient_anisotropy(image: np.ndarray, spacing: tuple[float, float] = (1.0, 1.0), *,
                        gradient: tuple[np.ndarray, np.ndarray] | None = None) -> float:
    """The paper's anisotropy: ``std(arctan2(g_col, g_row)) / mean(hypot(g_row, g_col))`` with
    ``numpy.gradient`` derivatives along rows (axis 0) and columns (axis 1) at ``spacing`` =
    (row step, column step), or the precomputed ``gradient = (g_row, g_col)``. The magnitude is
    evaluated as ``sqrt(g_row² + g_col²)`` (equal to ``hypot`` up to rounding, several times
    faster). NaN for a flat image."""
    g_row, g_col = np.gradient(np.asarray(image, float), *spacing) if gradient is None else gradient
    magnitude = g_row * g_row
    magnitude += g_col * g_col
    mean = np.sqrt(magnitude, out=magnitude).mean()
    if not mean > 0:
        return float("nan")
    return float(np.std(np.arctan2(g_col, g_row)) / mean)


def _integer_gradient(levels: np.ndarray, axis: int) -> np.ndarray:
    """Twice ``numpy.gradient`` of an integer image along ``axis``, in integers: central
    differences inside, doubled one-sided differences at the two ends."""
    k = np.moveaxis(np.asarray(levels, np.int32), axis, 0)
    out = np.empty_like(k)
    np.subtract(k[2:], k[:-2], out=out[1:-1])
    out[0] = 2 * (k[1] - k[0])
    out[-1] = 2 * (k[-1] - k[-2])
    return np.moveaxis(out, 0, axis)


def quantised_gradient_anisotropy(levels: np.ndarray, step: float = 1 / 255) -> float:
    """:func:`gradient_anisotropy` of the image ``levels * step`` for an integer image
    ``levels`` (the 8-bit image of the paper: ``step = 1/255``), equal up to rounding (relative
    ~1e-15; the float path sees ``k/255`` rounded, this one the exact ratios).

    Twice the gradient is an integer pair ``(D_row, D_col)`` per pixel with few distinct values
    in a real image, so the arctangent and the magnitude are evaluated once per distinct pair
    (a histogram of the pairs) instead of once per pixel.
    """
    levels = np.asarray(levels)
    if min(levels.shape) < 2:
        return gradient_anisotropy(levels * step)
    d_row, d_col = _integer_gradient(levels, 0), _integer_gradient(levels, 1)
    r0, c0 = int(d_row.min()), int(d_col.min())
    width = int(d_col.max()) - c0 + 1
    index = d_row - r0
    index *= width
    index += d_col - c0
    counts = np.bincount(index.ravel())
    pairs = np.nonzero(counts)[0]
    weights = counts[pairs] / levels.size
    pair_row, pair_col = (pairs // width + r0).astype(float), (pairs % width + c0).astype(float)
    mean = float(np.dot(weights, np.hypot(pair_row, pair_col))) * step / 2
    if not mean > 0:
        return float("nan")
    angle = np.arctan2(pair_col, pair_row)
    centre = np.dot(weights, angle)
    return float(np.sqrt(np.dot(weights, (angle - centre) ** 2)) / mean)


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
    rows, cols = np.shape(image)
    pairs = [(gaussian_transfer(rows, s, truncate), gaussian_transfer(cols, s, truncate)) for s in sigmas]
    # G_a - G_b is not separable, so the difference is formed from the 2-D transfer products;
    # scale is folded into the row factor of each term
    from scipy import fft

    coefficients = fft.dctn(np.asarray(image, float), type=2)
    out = np.empty((len(sigmas) - 1, rows, cols))
    for i, ((ra, ca), (rb, cb)) in enumerate(zip(pairs[:-1], pairs[1:], strict=True)):
        transfer = np.outer(scale * ra, ca) - np.outer(scale * rb, cb)
        out[i] = fft.idctn(coefficients * transfer, type=2)
    return out


def max_filter3(array: np.ndarray) -> np.ndarray:
    """``scipy.ndimage.maximum_filter(array, size=3, mode="nearest")`` as three-sample maxima
    along each axis in turn (identical: maxima are exact, and the ``nearest`` extension only
    repeats a sample already in the window). Several times faster than ndimage; works in place
    on one copy because fresh large arrays cost page faults."""
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
    ties in C order; :func:`peak_mask`)."""
    coords = np.nonzero(peak_mask(array, threshold))
    order = np.argsort(-array[coords], kind="stable")
    return np.transpose(coords)[order]


def blob_dog(image: np.ndarray, min_sigma: float = 5.0, max_sigma: float = 40.0, threshold: float = 0.001,
             sigma_ratio: float = 1.6, overlap: float = 0.5) -> np.ndarray:
    """``skimage.feature.blob_dog`` for a 2-D float image with scalar sigmas: same scale space,
    same peak detection, same pruning - same blobs ``(row, col, sigma)``.

    The scale space comes from :func:`dog_stack` (DCT domain, equal to skimage's Gaussian
    differences up to rounding), the peaks from :func:`local_maxima` (identical to
    ``peak_local_max``, same order), and the pruning is rewritten: skimage calls a numpy
    function for every pair of nearby blobs (most of its run time at low thresholds); this
    does the identical arithmetic, in the same pair order, so the sequential elimination gives
    the same result.
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


def dog_blob_count(image: np.ndarray, method: str = "paper", min_sigma: float = 5.0, max_sigma: float = 40.0,
                   threshold: float = 0.001) -> int:
    """Number of difference-of-Gaussian blobs (:func:`blob_dog`: sigma ratio 1.6, overlap 0.5).

    ``method="paper"`` runs on ``image`` as given. ``"fast"`` runs on the 2x2 block mean with
    halved sigmas and the same threshold: the Gaussian scale space of the downsampled image is
    the downsampled scale space for sigma >= 2.5 output pixels (the block mean is a small extra
    blur), and skimage's DoG normalisation ``1 / (sigma_ratio - 1)`` does not depend on sigma,
    so the responses and the threshold keep their meaning. A quarter of the pixels; counts agree
    with ``"paper"`` to Pearson r >= 0.95 and a median relative difference <= 5 % on synthetic
    images (``tests/test_descriptors.py``; measured values in ``benchmarks/bench_descriptors.py``).
    """
    image = np.asarray(image, float)
    if method not in ("paper", "fast"):
        raise ValueError(f"method must be 'paper' or 'fast', not {method!r}")
    if method == "fast" and min(image.shape) >= 16:
        rows, cols = (image.shape[0] // 2) * 2, (image.shape[1] // 2) * 2
        # 2 x 2 block mean by strided slices (numpy's mean over reshaped axes is several times slower)
        image = ((image[0:rows:2, 0:cols:2] + image[1:rows:2, 0:cols:2])
                 + (image[0:rows:2, 1:cols:2] + image[1:rows:2, 1:cols:2])) * 0.25
        min_sigma, max_sigma = min_sigma / 2, max_sigma / 2
    return int(len(blob_dog(image, min_sigma, max_sigma, threshold)))


def paper_glcm(image_uint8: np.ndarray) -> dict[str, float]:
    """GLCM properties of the paper (distance 1, angle 0, 256 levels, symmetric, normed)."""
    from skimage.feature import graycomatrix, graycoprops

    glcm = graycomatrix(image_uint8, distances=[1], angles=[0], levels=256, symmetric=True, normed=True)
    return {prop.lower(): float(graycoprops(glcm, prop).mean())
            for prop in ("contrast", "dissimilarity", "homogeneity", "energy", "correlation", "ASM")}


def disk_morphology(mask: np.ndarray, radius: int, operation: str) -> np.ndarray:
    """Binary ``erosion``/``dilation``/``opening`` by ``skimage.morphology.disk(radius)`` with a
    reflect border - identical to ``skimage.morphology.opening(mask, disk(radius))`` but much
    faster: the disk is a union of horizontal chords, so the operation is AND/OR along rows
    (grown one column at a time) combined over row shifts."""
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


def paper_grains(image: np.ndarray, domain_radius: int = 5, *, smoothed: np.ndarray | None = None) -> dict[str, float]:
    """The paper's grain/domain analysis on a normalised image (pixel units).

    Returns ``grain_count``, ``grain_mean_eq_diameter_px`` (NaN without grains), ``domain_count``,
    ``domain_mean_area_px`` (NaN without domains). ``smoothed``: :func:`paper_smoothing` of
    ``image`` if already computed.
    """
    from skimage.filters import threshold_otsu
    from skimage.measure import label

    smoothed = paper_smoothing(image) if smoothed is None else smoothed
    binary = smoothed > threshold_otsu(smoothed)
    grains, n_grains = label(binary, connectivity=2, return_num=True)
    areas = np.bincount(grains.ravel())[1:]
    domains, n_domains = label(disk_morphology(binary, domain_radius, "opening"), connectivity=2, return_num=True)
    domain_areas = np.bincount(domains.ravel())[1:]
    return {
        "grain_count": n_grains,
        "grain_mean_eq_diameter_px": float(np.mean(np.sqrt(4 * areas / np.pi))) if n_grains else float("nan"),
        "domain_count": n_domains,
        "domain_mean_area_px": float(np.mean(domain_areas)) if n_domains else float("nan"),
    }


# --------------------------------------------------------------------------------------------
# Family
# --------------------------------------------------------------------------------------------


def _compute(surface: Surface) -> DescriptorValues:
    out = DescriptorValues()
    h = surface.height
    residual_nm = h - surface.smoothed(1.0)
    out["paper_rms_roughness_nm"] = float(np.sqrt(np.mean(residual_nm**2)))
    out["paper_local_variation_nm"] = float(np.mean(np.abs(residual_nm)))
    img = surface.normalised
    if img is None:
        reason = ("flat image: no height contrast to normalise" if surface.is_flat
                  else "no height contrast between the normalisation percentiles")
        out.undefined([n for n in NAMES if n not in _PHYSICAL_HEIGHT], reason)
        return out
    cfg = surface.config
    area, npx, px_len = surface.area_um2, img.size, surface.pixel_length_nm
    dx, dy = surface.pixel_size_nm

    smooth_reflect, smoothed = reflect_and_nearest_smoothing(img, 1.0)
    residual = img - smooth_reflect  # smoothing_residual(img, 1)
    out["paper_rms_roughness"] = float(np.sqrt(np.mean(residual**2)))
    abs_res = np.abs(residual)
    out["paper_local_variation"] = float(abs_res.mean() / abs_res.max()) if abs_res.max() > 0 else float("nan")
    if not abs_res.max() > 0:
        out.reasons["paper_local_variation"] = "image equals its Gaussian smoothing (no local variation)"

    steps = step_edge_count(img)
    out["paper_step_edge_count"] = steps
    out["paper_step_edge_density_per_um2"] = steps / area
    defects = defect_count(img, smoothed=smoothed)
    out["paper_defect_density_per_px"] = defects / npx
    out["paper_defect_density_per_um2"] = defects / area

    out["paper_anisotropy"] = quantised_gradient_anisotropy(surface.uint8, 1 / 255)
    out["paper_anisotropy_rad"] = gradient_anisotropy(h, gradient=surface.gradient)

    blobs = dog_blob_count(img, cfg.blob_method)
    out["paper_dog_blob_count"] = blobs
    out["paper_dog_blob_density_per_um2"] = blobs / area

    for prop, value in paper_glcm(surface.uint8).items():
        out[f"paper_glcm_{prop}"] = value

    grains = paper_grains(img, smoothed=smoothed)
    out["paper_grain_count"] = grains["grain_count"]
    out["paper_grain_density_per_px"] = grains["grain_count"] / npx
    out["paper_grain_density_per_um2"] = grains["grain_count"] / area
    out["paper_grain_mean_eq_diameter_px"] = grains["grain_mean_eq_diameter_px"]
    out["paper_grain_mean_eq_diameter_nm"] = grains["grain_mean_eq_diameter_px"] * px_len
    out["paper_domain_count"] = grains["domain_count"]
    out["paper_domain_density_per_px"] = grains["domain_count"] / npx
    out["paper_domain_density_per_um2"] = grains["domain_count"] / area
    out["paper_domain_mean_area_px"] = grains["domain_mean_area_px"]
    out["paper_domain_mean_area_nm2"] = grains["domain_mean_area_px"] * dx * dy
    if not grains["grain_count"]:
        out.undefined(["paper_grain_mean_eq_diameter_px", "paper_grain_mean_eq_diameter_nm"], "no grains found")
    if not grains["domain_count"]:
        out.undefined(["paper_domain_mean_area_px", "paper_domain_mean_area_nm2"],
                      "no domain survives the opening with a disk of radius 5 px")
    return out


register_family(
    "paper", _compute, default=True, reference=PAPER_REFERENCE, descriptors=DESCRIPTORS,
    description="the seed paper's interpretability descriptors, in its pixel units and in physical units",
)
