"""The seed paper's interpretability descriptors (family ``paper``).

Moses & Reinhart correlated their CNN embeddings with physical descriptors computed by
``codes/utils_analysis.py`` of their repository. This module re-implements the same definitions
(same operators and parameters; independent code; the speed paths that reproduce scikit-image
and scipy routines exactly live in :mod:`~hybridtmd.descriptors.fast`):

* **RMS roughness** - rms of the image minus its Gaussian-smoothed version (sigma 1 px,
  ``scipy.ndimage.gaussian_filter``, reflect border): a high-pass roughness.
* **Step edges** - ``skimage.feature.canny`` edges (sigma 0.3, default thresholds), 3x3 binary dilation then
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
  on the normalised image. The paper called ``blob_dog`` on the H x W x 3 grey-to-RGB array
  (its images carried three identical channels), which is a *3-D* detection: the Gaussians and
  the peak search extend over the channel axis, and it finds fewer blobs than the 2-D call.
  ``DescriptorConfig.blob_method`` chooses: ``"paper"`` - that exact 3-D call (skimage; slow);
  ``"2d"`` - the 2-D detection (:func:`~hybridtmd.descriptors.fast.blob_dog`, skimage's blobs
  in skimage's order); ``"fast"`` (default) - the 2-D detection on the 2x block-averaged image
  with halved sigmas (:func:`dog_blob_count`), which approximates the 2-D detection (and through
  it the paper's 3-D one; agreement measured in ``tests/test_descriptors.py``).
* **GLCM** - contrast, dissimilarity, homogeneity, energy, correlation, ASM of the symmetric,
  normalised grey-level co-occurrence matrix at distance 1 px, angle 0, 256 grey levels.
* **Grains and domains** - Gaussian sigma 1 (skimage, nearest border), Otsu threshold, 8-connected
  labelling: grain count, density, mean equivalent diameter. Domains: the binary image opened with
  a disk of radius 5 px, labelled: count, density, mean area. (The paper's "grain density" plot
  used the *domain* density.)

Inputs and units. The paper's descriptors were computed on 8-bit images scaled to [0, 1]; here on
the levelled heights normalised by :func:`~hybridtmd.descriptors.core.normalise_height`
(0.5-99.5 percentile clip, 256 levels). Those values are in pixel / normalised-height units and
depend on pixel size and scan size like the paper's: this family is **pixel-dependent** by
definition, kept for reproducing the paper. Each comes with a counterpart in physical units (the
same operator on heights in nm, ``..._nm``, ``..._rad``, or the count per µm², ``..._per_um2``)
which is still a pixel-scale operator on the native image and so still depends on the pixel
size; those counterparts are out of the default set (by name they remain). The
resolution-invariant versions - the same operators at one physical scale - are the
``morphology`` family (:mod:`.morphology`). Out of the default set too, as exact duplicates:
``paper_grain_density_per_px`` and ``paper_domain_count`` (counts over the fixed pixel count
of an image; ``paper_grain_count`` and the paper's ``paper_domain_density_per_px`` stay) and
``paper_glcm_asm`` (``paper_glcm_energy`` squared).
"""

from __future__ import annotations

from collections.abc import Collection

import numpy as np
from scipy import ndimage

from .core import Surface
from .fast import (
    blob_dog,
    box3_morphology,
    disk_morphology,
    dog_stack,
    gaussian_stack,
    gaussian_transfer,
    local_maxima,
    max_filter3,
    peak_mask,
    reflect_and_nearest_smoothing,
)
from .fast_filters import canny
from .fast_glcm import glcm_properties
from .registry import DescriptorValues, annotate_descriptors, register_family

__all__ = [
    "DESCRIPTORS",
    "NAMES",
    "PAPER_REFERENCE",
    "defect_count",
    "dog_blob_count",
    "dog_blobs",
    "gradient_anisotropy",
    "paper_descriptors",
    "paper_glcm",
    "paper_grains",
    "paper_smoothing",
    "quantised_gradient_anisotropy",
    "step_edge_count",
    "surface_blobs",
    # fast equivalents of library routines, defined in .fast (importable from here too)
    "blob_dog",
    "box3_morphology",
    "disk_morphology",
    "dog_stack",
    "gaussian_stack",
    "gaussian_transfer",
    "local_maxima",
    "max_filter3",
    "peak_mask",
    "reflect_and_nearest_smoothing",
]

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


def step_edge_count(image: np.ndarray, sigma: float = 0.3) -> int:
    """Number of step edges: ``skimage.feature.canny`` edges (``sigma``; skimage's default
    thresholds 0.1/0.2 for float images; computed by the identical
    :func:`~hybridtmd.descriptors.fast_filters.canny`), closed by a 3x3 dilation and erosion,
    counted as 4-connected components."""
    edges = canny(np.asarray(image, float), sigma=sigma)
    # border values as skimage's binary_dilation (False) / binary_erosion (True) used by the paper
    closed = box3_morphology(box3_morphology(edges, "dilation"), "erosion")
    return int(ndimage.label(closed)[1])


def paper_smoothing(image: np.ndarray) -> np.ndarray:
    """``skimage.filters.gaussian(image, sigma=1)`` (nearest border), the smoothing of the paper's
    defect and grain analyses."""
    return ndimage.gaussian_filter(np.asarray(image, float), 1.0, mode="nearest")


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
    evaluated as ``sqrt(g_row² + g_col²)``, equal to ``hypot`` up to rounding. NaN for a flat
    image."""
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


def dog_blob_count(image: np.ndarray, method: str = "paper", min_sigma: float = 5.0, max_sigma: float = 40.0,
                   threshold: float = 0.001) -> int:
    """Number of difference-of-Gaussian blobs (sigma ratio 1.6, overlap 0.5): the length of
    :func:`dog_blobs` (see there for the methods)."""
    return int(len(dog_blobs(image, method, min_sigma, max_sigma, threshold)))


def dog_blobs(image: np.ndarray, method: str = "paper", min_sigma: float = 5.0, max_sigma: float = 40.0,
              threshold: float = 0.001) -> np.ndarray:
    """Difference-of-Gaussian blobs (sigma ratio 1.6, overlap 0.5) as ``(n, 3)`` rows
    ``(row, col, sigma)`` in pixels of ``image`` (a blob's radius is ``sqrt(2) sigma``,
    skimage's convention).

    ``method="paper"`` is the paper's call, ``skimage.feature.blob_dog`` on the grey image
    repeated into three channels (``H x W x 3``): a 3-D detection (the channel coordinate is
    dropped). ``"2d"`` is the 2-D detection on ``image`` (:func:`blob_dog`). ``"fast"`` runs the
    2-D detection on the 2x2 block mean with halved sigmas and the same threshold, and maps the
    blobs back to ``image``'s pixels (block ``i`` is centred on pixel ``2i + 0.5``, sigmas
    doubled): the Gaussian scale space of the downsampled image is the downsampled scale space
    for sigma >= 2.5 output pixels (the block mean is a small extra blur), and skimage's DoG
    normalisation ``1 / (sigma_ratio - 1)`` does not depend on sigma, so the responses and the
    threshold keep their meaning. A quarter of the pixels; counts agree with ``"2d"`` to Pearson
    r >= 0.95 and a median relative difference <= 5 %, and with the paper's 3-D call to r >= 0.9,
    on synthetic images (``tests/test_descriptors.py``; measured values in
    ``benchmarks/bench_descriptors.py``).
    """
    image = np.asarray(image, float)
    if method not in ("paper", "2d", "fast"):
        raise ValueError(f"method must be 'paper', '2d' or 'fast', not {method!r}")
    if method == "paper":
        from skimage.feature import blob_dog as skimage_blob_dog

        rgb = np.repeat(image[:, :, None], 3, axis=2)
        found = skimage_blob_dog(rgb, min_sigma=min_sigma, max_sigma=max_sigma, threshold=threshold)
        return np.asarray(found, float).reshape(-1, 4)[:, [0, 1, 3]]
    if method == "fast" and min(image.shape) >= 16:
        rows, cols = (image.shape[0] // 2) * 2, (image.shape[1] // 2) * 2
        # 2 x 2 block mean by strided slices, which avoid numpy's slower mean over reshaped axes
        image = ((image[0:rows:2, 0:cols:2] + image[1:rows:2, 0:cols:2])
                 + (image[0:rows:2, 1:cols:2] + image[1:rows:2, 1:cols:2])) * 0.25
        blobs = blob_dog(image, min_sigma / 2, max_sigma / 2, threshold)
        return blobs * 2 + np.array([0.5, 0.5, 0.0])
    return blob_dog(image, min_sigma, max_sigma, threshold)


def surface_blobs(surface: Surface) -> np.ndarray:
    """The blobs the ``paper`` family counts on ``surface`` (``paper_dog_blob_count``; on
    ``surface.reference`` they are the ``morphology`` family's): :func:`dog_blobs` of the
    normalised image with ``config.blob_method``, ``(n, 3)`` rows ``(row, col, sigma)`` in the
    surface's pixels; none for an image without height contrast."""
    img = surface.normalised
    if img is None:
        return np.empty((0, 3))
    return dog_blobs(img, surface.config.blob_method)


def paper_glcm(image_uint8: np.ndarray) -> dict[str, float]:
    """GLCM properties of the paper (distance 1, angle 0, 256 levels, symmetric, normed):
    ``skimage.feature.graycoprops`` of each (:func:`~hybridtmd.descriptors.fast_glcm.glcm_properties`)."""
    from skimage.feature import graycomatrix

    glcm = graycomatrix(image_uint8, distances=[1], angles=[0], levels=256, symmetric=True, normed=True)
    props = ("contrast", "dissimilarity", "homogeneity", "energy", "correlation", "ASM")
    return {prop.lower(): float(values.mean()) for prop, values in glcm_properties(glcm, props).items()}


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


def paper_descriptors(surface: Surface, wanted: Collection[str] | None = None) -> DescriptorValues:
    """The ``paper`` descriptors of a :class:`Surface` (see the module docstring): all of them,
    or at least those in ``wanted`` (the operators that only other columns need are skipped)."""

    def wants(*names: str) -> bool:
        return wanted is None or any(n in wanted for n in names)

    out = DescriptorValues()
    h = surface.height
    if wants(*_PHYSICAL_HEIGHT):
        residual_nm = h - surface.smoothed(1.0)
        out["paper_rms_roughness_nm"] = float(np.sqrt(np.mean(residual_nm**2)))
        out["paper_local_variation_nm"] = float(np.mean(np.abs(residual_nm)))
    img = surface.normalised
    if img is None:
        out.undefined([n for n in NAMES if n not in _PHYSICAL_HEIGHT], surface.no_contrast_reason)
        return out
    area, npx = surface.area_um2, img.size
    smooth_reflect, smoothed = reflect_and_nearest_smoothing(img, 1.0)
    residual = img - smooth_reflect
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
    if wants("paper_anisotropy"):
        out["paper_anisotropy"] = quantised_gradient_anisotropy(surface.uint8, 1 / 255)
    if wants("paper_anisotropy_rad"):
        out["paper_anisotropy_rad"] = gradient_anisotropy(h, gradient=surface.gradient)
    blobs = len(surface_blobs(surface))
    out["paper_dog_blob_count"] = blobs
    out["paper_dog_blob_density_per_um2"] = blobs / area
    if wants(*(n for n in NAMES if n.startswith("paper_glcm_"))):
        out.update({f"paper_glcm_{prop}": value for prop, value in paper_glcm(surface.uint8).items()})
    _grain_descriptors(out, surface, img, smoothed)
    return out


def _grain_descriptors(out: DescriptorValues, surface: Surface, img: np.ndarray, smoothed: np.ndarray) -> None:
    """The paper's grain and domain columns of ``img`` (its nearest-border smoothing given)."""
    area, npx, px_len = surface.area_um2, img.size, surface.pixel_length_nm
    dx, dy = surface.pixel_size_nm
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


def _paper_family(surface: Surface) -> DescriptorValues:
    return paper_descriptors(surface, surface.requested)


register_family(
    "paper", _paper_family, default=True, reference=PAPER_REFERENCE, descriptors=DESCRIPTORS,
    description=("the seed paper's interpretability descriptors with its pixel definitions on the native image: "
                 "PIXEL-DEPENDENT (for reproducing the paper; the morphology family has them at a physical scale)"),
)
#: physical-unit counterparts that are still pixel-scale operators, and exact duplicates
NOT_DEFAULT = [n for n in NAMES if n.endswith(("_per_um2", "_nm", "_nm2", "_rad"))] + [
    "paper_grain_density_per_px", "paper_domain_count", "paper_glcm_asm"]
annotate_descriptors(NAMES, resolution_invariant=False,
                     scale_note="the paper's pixel definition on the native image: depends on the pixel size")
annotate_descriptors(NOT_DEFAULT, default=False)
