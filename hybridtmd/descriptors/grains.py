"""Grains, domains and layers (family ``grains``), TopoStats-style.

Segmentation (:func:`segment_grains`): the levelled heights are smoothed by a Gaussian
(``grain_smoothing_px``), thresholded (:func:`grain_threshold`: by default Otsu's threshold with
particles masked, so that a few tall precursor particles do not pull the threshold above the
film), labelled with 8-connectivity, and segments smaller than the minimum area are dropped -
the sequence of TopoStats' ``Grains``. The family computes on the image at the reference pixel
size (``DescriptorConfig.reference_pixel_nm``): smoothing, minimum area and the pixelated
perimeter then have one physical scale, and the values do not depend on the scan's pixel size. Each grain is measured (:func:`grain_table`): area, equivalent-circle
diameter, maximum and mean height above the background (median of the non-grain pixels),
perimeter, solidity, triangularity and whether it touches the image border.

Per image: the count and density include every grain; shape and size statistics use only grains
that do not touch the border (their size is truncated otherwise; TopoStats drops them too).

Layers (:func:`height_levels`): peaks of the smoothed height histogram at least half a monolayer
step apart, each holding at least ``min_level_fraction`` of the pixels within half a step, are
the terraces/layers; with TMD monolayers ~0.7 nm thick their number and spacing count layers.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import ndimage, stats

from .core import LEVEL_PERCENTILES, Surface
from .fast import contour_pixels, hull_areas, label_maxima, label_perimeters
from .registry import DescriptorValues, annotate_descriptors, register_family

__all__ = [
    "DESCRIPTORS",
    "NAMES",
    "REFERENCE",
    "grain_descriptors",
    "grain_table",
    "grain_threshold",
    "height_levels",
    "label_perimeters",  # defined in .fast, importable from here too
    "segment_grains",
    "surface_grains",
    "surface_levels",
    "triangularity",
]

REFERENCE = ("TopoStats (Beton et al., Methods 2024, doi:10.1016/j.ymeth.2024.01.008); triangularity: "
             "Rosin, Mach. Vis. Appl. 14, 172 (2003)")

DESCRIPTORS = [
    ("grain_count", "count", "number of segmented grains (threshold of the Gaussian-smoothed height, 8-connected)"),
    ("grain_density_per_um2", "per µm²", "segmented grains per µm² of scanned area"),
    ("grain_coverage_fraction", "1", "fraction of the image covered by grains"),
    ("grain_threshold_nm", "nm", "segmentation threshold height (levelled scale, background ~0)"),
    ("grain_area_mean_nm2", "nm²", "mean projected area of grains not touching the border"),
    ("grain_eq_diameter_mean_nm", "nm", "mean equivalent-circle diameter of interior grains"),
    ("grain_eq_diameter_std_nm", "nm", "standard deviation of the equivalent-circle diameter of interior grains"),
    ("grain_eq_diameter_skew", "1", "skewness of the equivalent-circle diameter distribution of interior grains"),
    ("grain_height_mean_nm", "nm", "mean over interior grains of their maximum height above the background median"),
    ("grain_perimeter_mean_nm", "nm", "mean perimeter of interior grains"),
    ("grain_solidity_mean", "1", "mean solidity (area / convex hull area) of interior grains"),
    ("grain_triangularity_mean", "1", "mean moment triangularity of interior grains (1 triangle, 0.68 disc)"),
    ("layer_count", "count", "number of height levels (terraces/layers): peaks of the height histogram"),
    ("layer_spacing_nm", "nm", "median height difference between adjacent levels"),
    ("layer_span_monolayers", "1", "height between the lowest and highest level in monolayer steps (0.7 nm)"),
    ("adlayer_fraction", "1", "fraction of the area more than 1.5 monolayer steps above the lowest level"),
]
NAMES = [d[0] for d in DESCRIPTORS]
_SHAPE = [n for n in NAMES if n.startswith("grain_") and n not in
          ("grain_count", "grain_density_per_um2", "grain_coverage_fraction", "grain_threshold_nm")]
_LAYER = [n for n in NAMES if not n.startswith("grain_")]


# --------------------------------------------------------------------------------------------
# Array functions
# --------------------------------------------------------------------------------------------


def segment_grains(height: np.ndarray, threshold: str | float = "otsu", smoothing_px: float = 1.0,
                   min_area_px: int = 4, *, smoothed: np.ndarray | None = None,
                   **threshold_options: float) -> tuple[np.ndarray, float]:
    """Label grains of a levelled height map (nm).

    Parameters
    ----------
    threshold : "robust", "otsu", "monolayer" or float
        The :func:`grain_threshold` method (``threshold_options`` are its keywords).
    smoothing_px : float
        Gaussian sigma in pixels before thresholding (0 for none).
    min_area_px : int
        Segments with fewer pixels are removed.
    smoothed : array, optional
        The smoothed heights, when already computed.

    Returns
    -------
    labels : int array
        0 background, 1..n grains (consecutive).
    threshold_nm : float
    """
    from skimage.measure import label

    h = np.asarray(height, float)
    if smoothed is None:
        smoothed = ndimage.gaussian_filter(h, smoothing_px) if smoothing_px > 0 else h
    t = grain_threshold(smoothed, threshold, **threshold_options)
    labels = label(smoothed > t, connectivity=2)
    if min_area_px > 1 and labels.max():
        sizes = np.bincount(labels.ravel())
        small = sizes < min_area_px
        small[0] = False
        if small.any():
            labels[small[labels]] = 0
            labels = label(labels > 0, connectivity=2)
    return labels, t


def grain_threshold(smoothed: np.ndarray, method: str | float = "robust", *, substrate_nm: float = 0.0,
                    monolayer_step_nm: float = 0.7, particle_height_nm: float = 1.5) -> float:
    """Grain segmentation threshold (nm) of smoothed levelled heights.

    * ``"robust"``: Otsu's threshold of the heights at most ``particle_height_nm`` above
      ``substrate_nm`` (the lowest height level): particles and tall stacks are masked, so the
      threshold separates the substrate from the film. Plain Otsu if that leaves < 2 values.
    * ``"otsu"``: Otsu's threshold of all heights (Otsu, IEEE TSMC 9, 62 (1979)).
    * ``"monolayer"``: half a monolayer step above ``substrate_nm`` (a physical prior).
    * a number: that absolute height.
    """
    from skimage.filters import threshold_otsu

    if method == "otsu":
        return float(threshold_otsu(smoothed))
    if method == "monolayer":
        return float(substrate_nm + monolayer_step_nm / 2)
    if method == "robust":
        kept = smoothed[smoothed <= substrate_nm + particle_height_nm]
        if kept.size < 2 or not kept.max() > kept.min():
            return float(threshold_otsu(smoothed))
        return float(threshold_otsu(kept))
    return float(method)


def triangularity(mu20: np.ndarray, mu02: np.ndarray, mu11: np.ndarray, mu00: np.ndarray) -> np.ndarray:
    """Rosin's moment triangularity from central moments: ``I1 = (mu20 mu02 - mu11²) / mu00⁴``;
    ``108 I1`` if ``I1 <= 1/108`` else ``1 / (108 I1)``. 1 for any triangle (affine invariant),
    0.68 for a disc, ~0.75 for a regular hexagon."""
    i1 = (mu20 * mu02 - mu11**2) / mu00**4
    with np.errstate(divide="ignore"):  # I1 = 0 for 1-px-wide grains: the first branch applies
        return np.where(i1 <= 1 / 108, 108 * i1, 1 / (108 * i1))


def grain_table(labels: np.ndarray, height: np.ndarray, pixel_size_nm: tuple[float, float] = (1.0, 1.0),
                shape_of: str = "interior") -> pd.DataFrame:
    """One row per grain: ``label, area_nm2, eq_diameter_nm, max_height_nm, mean_height_nm,
    touches_border, perimeter_nm, solidity, triangularity``.

    * heights are above the median of the background (label 0) pixels;
    * ``perimeter_nm``: skimage's 4-connected contour length (:func:`label_perimeters`) times
      the geometric-mean pixel side;
    * ``solidity``: pixel area over the area of the convex hull of the grain's pixel squares
      (:func:`~hybridtmd.descriptors.fast.hull_areas`);
    * ``triangularity``: :func:`triangularity` of the grain's central moments.

    Solidity is computed for interior grains only when ``shape_of="interior"`` (NaN for grains
    touching the border, which are truncated), for every grain with ``"all"``.
    """
    n = int(labels.max())
    columns = ["label", "area_nm2", "eq_diameter_nm", "max_height_nm", "mean_height_nm", "touches_border",
               "perimeter_nm", "solidity", "triangularity"]
    if n == 0:
        return pd.DataFrame(columns=columns)
    dx, dy = pixel_size_nm
    h = np.asarray(height, float)
    background = h[labels == 0]
    base = float(np.median(background)) if background.size else 0.0
    index = np.arange(1, n + 1)
    border = np.zeros(n + 1, bool)
    for edge in (labels[0], labels[-1], labels[:, 0], labels[:, -1]):
        border[edge] = True
    border = border[1:]

    # everything from the labelled pixels only: sums by bincount, maxima by one sort
    at = np.flatnonzero(labels)
    lab = labels.ravel()[at]
    pr, pc = np.divmod(at, labels.shape[1])
    area_px = np.bincount(lab, minlength=n + 1)[1:].astype(float)
    hv = h.ravel()[at]
    max_height = label_maxima(lab, hv, area_px)
    mean_height = np.bincount(lab, weights=hv, minlength=n + 1)[1:] / area_px

    def total(values: np.ndarray) -> np.ndarray:
        return np.bincount(lab, weights=values, minlength=n + 1)[1:]

    r, c = pr.astype(float), pc.astype(float)
    mr, mc = total(r) / area_px, total(c) / area_px
    mu20 = total(r * r) - area_px * mr**2
    mu02 = total(c * c) - area_px * mc**2
    mu11 = total(r * c) - area_px * mr * mc
    perimeter_px, _, cr, cc, owner = contour_pixels(labels)
    solidity = area_px / hull_areas(cr, cc, owner, ~border if shape_of == "interior" else np.ones(n, bool))

    return pd.DataFrame({
        "label": index,
        "area_nm2": area_px * dx * dy,
        "eq_diameter_nm": np.sqrt(4 * area_px * dx * dy / np.pi),
        "max_height_nm": max_height - base,
        "mean_height_nm": mean_height - base,
        "touches_border": border,
        "perimeter_nm": perimeter_px * np.sqrt(dx * dy),
        "solidity": solidity,
        "triangularity": triangularity(mu20, mu02, mu11, area_px),
    })[columns]


def height_levels(height: np.ndarray, step_nm: float = 0.7, bin_nm: float = 0.02,
                  min_fraction: float = 0.02, *, bounds: tuple[float, float] | None = None
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Terrace/layer heights from the height histogram.

    The histogram of heights between the 0.1 and 99.9 percentiles (bins of ``bin_nm``, at most
    5000 bins) is smoothed by a Gaussian of ``step_nm / 16``; peaks at least ``step_nm / 2``
    apart, with a prominence of at least 20 % of their own height and at least ``min_fraction``
    of all pixels within ``±step_nm / 2``, are levels. Returns ``(levels_nm, fractions)`` sorted by
    height. A surface with one height gives one level. ``bounds``: the 0.1 and 99.9 percentiles
    when already computed.
    """
    from scipy.signal import find_peaks

    h = np.asarray(height, float).ravel()
    lo, hi = np.percentile(h, LEVEL_PERCENTILES) if bounds is None else bounds
    if not hi - lo > bin_nm:
        return np.array([float(np.median(h))]), np.array([1.0])
    bin_nm = max(bin_nm, (hi - lo) / 5000)
    pad = step_nm
    edges = np.arange(lo - pad, hi + pad + bin_nm, bin_nm)
    # equal-width bins given by count and range: numpy bins those arithmetically, where an edge
    # array would make it sort the heights
    counts, _ = np.histogram(h, bins=len(edges) - 1, range=(edges[0], edges[-1]))
    density = ndimage.gaussian_filter1d(counts.astype(float), step_nm / 16 / bin_nm, mode="constant")
    peaks, props = find_peaks(density, distance=max(1, int(step_nm / 2 / bin_nm)), prominence=0)
    # a level must stand out from the valleys beside it (prominence >= 20 % of its own height);
    # relative, because a substrate holding 90 % of the pixels dwarfs a monolayer's peak
    peaks = peaks[props["prominences"] >= 0.2 * density[peaks]]
    centres = (edges[:-1] + edges[1:]) / 2
    levels = centres[peaks]
    fractions = np.array([np.mean(np.abs(h - level) <= step_nm / 2) for level in levels])
    keep = fractions >= min_fraction
    if not keep.any():
        best = int(np.argmax(density))
        return np.array([centres[best]]), np.array([np.mean(np.abs(h - centres[best]) <= step_nm / 2)])
    return levels[keep], fractions[keep]


# --------------------------------------------------------------------------------------------
# Family
# --------------------------------------------------------------------------------------------


def surface_levels(surface: Surface) -> np.ndarray:
    """The height levels (nm, ascending) the layer descriptors count on ``surface``:
    :func:`height_levels` with the surface's settings."""
    cfg = surface.config
    bounds = tuple(surface.height_percentiles[q] for q in LEVEL_PERCENTILES)
    return height_levels(surface.height, cfg.monolayer_step_nm, cfg.level_bin_nm, cfg.min_level_fraction,
                         bounds=bounds)[0]


def surface_grains(surface: Surface, levels: np.ndarray | None = None) -> tuple[np.ndarray, float]:
    """The grain segmentation the ``grains`` family measures, of ``surface`` as given (the family
    passes ``surface.reference``): :func:`segment_grains` with the surface's settings, the lowest
    of ``levels`` (default :func:`surface_levels`) as the substrate. ``(labels, threshold_nm)``;
    the labels are on the surface's pixel grid, 0 background, 1..n grains."""
    cfg = surface.config
    h = surface.height
    if levels is None:
        levels = surface_levels(surface)
    dx, dy = surface.pixel_size_nm
    min_area = max(cfg.min_grain_area_px, int(np.ceil(cfg.min_grain_area_nm2 / (dx * dy))))
    smoothed = surface.smoothed(cfg.grain_smoothing_px) if cfg.grain_smoothing_px > 0 else h
    return segment_grains(h, cfg.grain_threshold, cfg.grain_smoothing_px, min_area, smoothed=smoothed,
                          substrate_nm=float(levels[0]), monolayer_step_nm=cfg.monolayer_step_nm,
                          particle_height_nm=cfg.particle_height_nm)


def grain_descriptors(surface: Surface) -> DescriptorValues:
    """All ``grains`` descriptors of a :class:`Surface` (see the module table), at the reference
    pixel size."""
    surface = surface.reference
    out = DescriptorValues()
    h = surface.height
    step = surface.config.monolayer_step_nm

    levels = surface_levels(surface)
    out["layer_count"] = len(levels)
    if len(levels) > 1:
        out["layer_spacing_nm"] = float(np.median(np.diff(levels)))
    else:
        out.undefined("layer_spacing_nm", "a single height level: no layer spacing")
    out["layer_span_monolayers"] = float((levels[-1] - levels[0]) / step)
    out["adlayer_fraction"] = float(np.mean(h > levels[0] + 1.5 * step))

    if surface.is_flat:
        out.undefined([n for n in NAMES if n not in _LAYER], "flat image: nothing to segment")
        return out
    labels, threshold = surface_grains(surface, levels)
    table = grain_table(labels, h, surface.pixel_size_nm)
    n = len(table)
    out["grain_count"] = n
    out["grain_density_per_um2"] = n / surface.area_um2
    out["grain_coverage_fraction"] = float(np.mean(labels > 0))
    out["grain_threshold_nm"] = threshold
    interior = table[~table["touches_border"].astype(bool)]
    if n == 0:
        out.undefined(_SHAPE, "no grains found above the threshold")
        return out
    if interior.empty:
        out.undefined(_SHAPE, "every grain touches the image border (sizes truncated)")
        return out
    out["grain_area_mean_nm2"] = float(interior["area_nm2"].mean())
    d = interior["eq_diameter_nm"].to_numpy(float)
    out["grain_eq_diameter_mean_nm"] = float(d.mean())
    out["grain_eq_diameter_std_nm"] = float(d.std())
    if len(d) < 3 or not d.std() > 0:
        out.undefined("grain_eq_diameter_skew", "fewer than 3 interior grains or all of one size")
    else:  # population skewness (bias=True): third central moment over the std cubed
        out["grain_eq_diameter_skew"] = float(stats.skew(d))
    out["grain_height_mean_nm"] = float(interior["max_height_nm"].mean())
    out["grain_perimeter_mean_nm"] = float(interior["perimeter_nm"].mean())
    out["grain_solidity_mean"] = float(interior["solidity"].mean())
    out["grain_triangularity_mean"] = float(interior["triangularity"].mean())
    return out


register_family(
    "grains", grain_descriptors, default=True, reference=REFERENCE, descriptors=DESCRIPTORS,
    description="TopoStats-like grain segmentation statistics and terrace/layer counts",
)
annotate_descriptors(NAMES, resolution_invariant=True,
                     scale_note="segmentation and measurements on the image at the reference pixel size")
annotate_descriptors(["grain_count"], resolution_invariant=False,
                     scale_note="a count over the scanned area: depends on the scan size (grain_density_per_um2 does not)")
