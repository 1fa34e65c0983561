"""Levelling AFM height maps: background removal, line alignment, scars, outliers, resampling, tiling.

The default pipeline follows TopoStats' ``Filters`` and Gwyddion's usual sequence:

1. row alignment by the median of differences between neighbouring fast-scan lines (Gwyddion's
   "median of differences") - removes line-to-line offsets and the slow-axis tilt without the
   bands that plain row medians leave where film coverage changes from line to line;
2. polynomial background of order 1 (plane) fitted by least squares - removes the remaining tilt;
3. a second pass that ignores *features* (pixels more than ``mask_sigma`` standard deviations
   from the median, as TopoStats masks them) and fits line offsets and the polynomial background
   jointly by least squares on the background pixels, so raised domains and particles bias
   neither;
4. optional scar removal and outlier clipping;
5. heights set to 0 at the median of the background pixels (the substrate / film reference).

All functions take and return arrays in nanometres; :func:`level` and :class:`Preprocessor`
work on :class:`~hybridtmd.io.AFMImage`.
"""

from __future__ import annotations

import dataclasses
import functools
import numbers
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, ClassVar, Literal

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin

from ._utils.params import COUNT, POSITIVE, Check, Interval, Options, validate_params
from .io import AFMImage
from .io.image import check_images

RowMethod = Literal["median_diff", "median", "mean", "polynomial"]


# --------------------------------------------------------------------------------------------
# Array functions
# --------------------------------------------------------------------------------------------


def _poly_design(shape: tuple[int, int], order: int) -> np.ndarray:
    """Design matrix of the 2-D monomials x^i y^j, i + j <= order, on coordinates in [-1, 1]."""
    rows, cols = shape
    y, x = np.meshgrid(np.linspace(-1, 1, rows), np.linspace(-1, 1, cols), indexing="ij")
    terms = [x**i * y**j for total in range(order + 1) for j in range(total + 1) for i in [total - j]]
    return np.stack([t.ravel() for t in terms], axis=1)


def fit_polynomial_background(height: np.ndarray, order: int = 1, mask: np.ndarray | None = None) -> np.ndarray:
    """Least-squares 2-D polynomial surface of total degree ``order`` (0-3) through ``height``.

    ``mask`` marks pixels to *ignore* (features); the surface is fitted to the others and
    evaluated everywhere. Order 1 is a plane; 2 and 3 remove scanner bow.
    """
    if order not in (0, 1, 2, 3):
        raise ValueError(f"polynomial order must be 0-3, got {order}")
    design = _poly_design(height.shape, order)
    use = np.ones(height.size, bool) if mask is None else ~np.asarray(mask, bool).ravel()
    if use.sum() < design.shape[1] * 4:  # too few background pixels: fit everything
        use[:] = True
    coef, *_ = np.linalg.lstsq(design[use], height.ravel()[use], rcond=None)
    return (design @ coef).reshape(height.shape)


def remove_polynomial_background(height: np.ndarray, order: int = 1, mask: np.ndarray | None = None) -> np.ndarray:
    """``height`` minus its least-squares polynomial background (see :func:`fit_polynomial_background`)."""
    return height - fit_polynomial_background(height, order, mask)


def align_rows(
    height: np.ndarray,
    method: RowMethod = "median",
    order: int = 1,
    mask: np.ndarray | None = None,
) -> np.ndarray:
    """Remove the per-line offsets of the slow-scan axis (rows = fast-scan lines).

    ``median_diff`` shifts each row so the median of its difference to the previous row is 0
    (robust to features that cover different fractions of different rows);
    ``median`` (TopoStats' default) or ``mean`` subtracts each row's statistic;
    ``polynomial`` subtracts a per-row polynomial of ``order`` in x (removes line bow too).
    ``mask`` marks pixels to ignore; a row that is entirely masked uses all its pixels.
    """
    h = np.asarray(height, dtype=float)
    m = np.zeros_like(h, bool) if mask is None else np.asarray(mask, bool)
    m = m & ~m.all(axis=1, keepdims=True)  # fully masked rows: use every pixel
    if method == "median_diff":
        diff = np.where(m[1:] | m[:-1], np.nan, np.diff(h, axis=0))
        all_nan = np.isnan(diff).all(axis=1)
        diff[all_nan] = np.diff(h, axis=0)[all_nan]
        # nanmedian of rows shorter than 600 goes through masked arrays and a full sort: only
        # pay for it when something is masked
        medians = np.nanmedian(diff, axis=1) if np.isnan(diff).any() else np.median(diff, axis=1)
        offsets = np.concatenate([[0.0], np.cumsum(medians)])
        return h - offsets[:, None] - np.median(h[0])
    if method in ("median", "mean"):
        valued = np.where(m, np.nan, h)
        stat = np.nanmedian(valued, axis=1) if method == "median" else np.nanmean(valued, axis=1)
        return h - stat[:, None]
    if method != "polynomial":
        raise ValueError(f"row alignment must be median_diff, median, mean or polynomial, got {method!r}")
    x = np.linspace(-1, 1, h.shape[1])
    vander = np.vander(x, order + 1)
    if not m.any():  # one least-squares solve for all rows
        coef, *_ = np.linalg.lstsq(vander, h.T, rcond=None)
        return h - (vander @ coef).T
    out = np.empty_like(h)
    for i, (row, mrow) in enumerate(zip(h, m, strict=True)):
        use = ~mrow if (~mrow).sum() > order + 1 else np.ones_like(mrow)
        coef, *_ = np.linalg.lstsq(vander[use], row[use], rcond=None)
        out[i] = row - vander @ coef
    return out


def fit_rows_and_background(height: np.ndarray, order: int = 1, mask: np.ndarray | None = None) -> np.ndarray:
    """Jointly fit per-line offsets and a 2-D polynomial background by least squares.

    Model: ``h[i, j] = o_i + sum c_ab x_j^a y_i^b`` over monomials with ``a >= 1`` (terms
    without x are absorbed by the line offsets ``o_i``), fitted to unmasked pixels only. The
    offsets are eliminated exactly by subtracting each line's mean, so the fit is one small
    least-squares solve. Returns the fitted surface (offsets + background). Lines with no
    unmasked pixel use all their pixels.
    """
    h = np.asarray(height, float)
    rows, cols = h.shape
    use = np.ones_like(h, bool) if mask is None else ~np.asarray(mask, bool)
    use[~use.any(axis=1)] = True
    y, x = np.meshgrid(np.linspace(-1, 1, rows), np.linspace(-1, 1, cols), indexing="ij")
    terms = [x**a * y**b for total in range(1, order + 1) for a in range(1, total + 1) for b in [total - a]]
    weights = use / use.sum(axis=1, keepdims=True)

    def demean(arr: np.ndarray) -> np.ndarray:  # subtract each line's mean over used pixels
        return arr - (arr * weights).sum(axis=1, keepdims=True)

    surface = np.zeros_like(h)
    if terms:
        design = np.stack([demean(t)[use] for t in terms], axis=1)
        coef, *_ = np.linalg.lstsq(design, demean(h)[use], rcond=None)
        surface = sum(c * t for c, t in zip(coef, terms, strict=True))
    offsets = ((h - surface) * weights).sum(axis=1, keepdims=True)
    return surface + offsets


def robust_sigma(values: np.ndarray) -> float:
    """Standard deviation estimated from the median absolute deviation (1.4826 x MAD)."""
    v = np.asarray(values, float).ravel()
    return float(1.4826 * np.median(np.abs(v - np.median(v))))


def feature_mask(height: np.ndarray, sigma: float = 1.0) -> np.ndarray:
    """Pixels more than ``sigma`` standard deviations above or below the median: the features
    (domains, particles, holes) that background fits should ignore, as TopoStats does."""
    h = np.asarray(height, float)
    return np.abs(h - np.median(h)) > sigma * h.std()


def remove_scars(
    height: np.ndarray,
    threshold: float = 3.0,
    min_length: int = 16,
    max_width: int = 2,
) -> np.ndarray:
    """Replace horizontal scars (streaks along the fast-scan axis) by interpolation across rows.

    A band of 1..``max_width`` rows is a scar where it differs from *both* the row above and
    the row below, with the same sign, by more than ``threshold`` robust standard deviations of
    the row-to-row differences, over at least ``min_length`` contiguous pixels (Gwyddion's
    "mark scars" criterion). Scar pixels become the linear interpolation between the rows that
    bound the band.
    """
    from scipy import ndimage

    h = np.asarray(height, float).copy()
    rows = h.shape[0]
    noise = robust_sigma(np.diff(h, axis=0)) or float(np.std(np.diff(h, axis=0))) or 1.0
    # floor at float64 rounding of the height range: on an already levelled, piecewise-flat map the
    # row differences are rounding residue, and whole rows of it must not be taken for scars
    limit = max(threshold * noise, 1e-9 * float(np.ptp(h)))
    structure = np.array([[0, 0, 0], [1, 1, 1], [0, 0, 0]], bool)  # runs along x only
    for width in range(1, max_width + 1):
        if rows < width + 2:
            break
        positions = rows - width - 1  # band starting at row p + 1, bounded by rows p and p + width + 1
        band = np.mean([h[1 + k : 1 + k + positions] for k in range(width)], axis=0)
        above, below = h[:positions], h[width + 1 :]
        up, down = band - above, band - below
        scar = ((up > limit) & (down > limit)) | ((up < -limit) & (down < -limit))
        scar = keep_long_runs(scar, min_length) if min_length > 1 else scar
        if not scar.any():
            continue
        labels, _ = ndimage.label(scar, structure=structure)
        r, c = np.nonzero(labels)
        for k in range(1, width + 1):
            t = k / (width + 1)
            h[r + k, c] = (1 - t) * above[r, c] + t * below[r, c]
    return h


def keep_long_runs(mask: np.ndarray, min_length: int) -> np.ndarray:
    """The runs of ``True`` along each row of at least ``min_length`` pixels: equal to
    ``ndimage.binary_opening(mask, structure=np.ones((1, min_length), bool))`` (an opening by a
    line keeps exactly the runs the line fits in), from run starts and ends instead of
    ``2 * min_length`` shifted erosion and dilation passes."""
    mask = np.asarray(mask, bool)
    rows, cols = mask.shape
    edges = np.diff(np.pad(mask, ((0, 0), (1, 1))).astype(np.int8), axis=1)
    start_r, start_c = np.nonzero(edges == 1)  # row-major: the k-th start and end share a run
    end_c = np.nonzero(edges == -1)[1]
    keep = end_c - start_c >= min_length
    # +1 column: a run ending at the edge marks its end past it; a start never shares a
    # position with an end (runs are maximal), so plain assignment marks them
    out = np.zeros((rows, cols + 1), np.int8)
    out[start_r[keep], start_c[keep]] = 1
    out[start_r[keep], end_c[keep]] = -1
    return np.cumsum(out, axis=1, dtype=np.int8)[:, :cols] > 0


def clip_outliers(height: np.ndarray, z: float = 8.0) -> np.ndarray:
    """Clip heights whose robust z-score ``|h - median| / (1.4826 MAD)`` exceeds ``z``."""
    h = np.asarray(height, float)
    med, sig = np.median(h), robust_sigma(h)
    if sig == 0:
        return h.copy()
    return np.clip(h, med - z * sig, med + z * sig)


# --------------------------------------------------------------------------------------------
# Image-level operations
# --------------------------------------------------------------------------------------------


def resample(image: AFMImage, pixel_size_nm: float | Sequence[float], method: str = "bilinear") -> AFMImage:
    """Resample ``image`` to a new pixel size: ``"bilinear"`` (anti-aliased when downsampling) or
    ``"area"``: a coarser pixel is the mean of the heights it covers, partial pixels weighted by
    the covered fraction (what a larger pixel integrates; OpenCV's ``INTER_AREA``)."""
    from skimage.transform import resize

    target = np.broadcast_to(np.asarray(pixel_size_nm, float), (2,))
    if np.any(target <= 0) or method not in ("bilinear", "area"):
        raise ValueError(f"pixel size must be positive and method 'bilinear' or 'area', got {pixel_size_nm}, {method}")
    w, h = image.size_nm
    shape = (max(1, round(h / target[1])), max(1, round(w / target[0])))
    if shape == image.shape:
        return image
    down = shape[0] < image.shape[0] or shape[1] < image.shape[1]
    if method == "area" and shape[0] <= image.shape[0] and shape[1] <= image.shape[1]:
        new = area_weights(image.shape[0], shape[0]) @ image.height @ area_weights(image.shape[1], shape[1]).T
    else:
        new = resize(image.height, shape, order=1, anti_aliasing=down, preserve_range=True, mode="reflect")
    actual = (w / shape[1], h / shape[0])
    metadata = {**image.metadata, "resampled_from_nm": list(image.pixel_size_nm)}
    return dataclasses.replace(image, height=new, pixel_size_nm=actual, metadata=metadata)  # keeps z_unit


@functools.lru_cache(maxsize=32)
def area_weights(n_in: int, n_out: int) -> np.ndarray:
    """``(n_out, n_in)`` matrix averaging ``n_in`` pixels into ``n_out`` over the same length: entry ``(i, j)``
    is the fraction of output pixel ``i`` that pixel ``j`` covers (read-only, cached per shape)."""
    edges_in, edges_out = np.arange(n_in + 1) / n_in, np.arange(n_out + 1) / n_out
    right, left = np.minimum(edges_out[1:, None], edges_in[1:]), np.maximum(edges_out[:-1, None], edges_in[:-1])
    (weights := np.clip(right - left, 0.0, None) * n_out).flags.writeable = False
    return weights


#: Height percentiles mapped to 0 and 1 by :func:`normalise_height`: the one normalisation of
#: the descriptors' grey image (the paper's 8-bit image) and of the CNN input.
NORMALISE_PERCENTILES = (0.5, 99.5)
#: Parameter constraint (:func:`hybridtmd._utils.params.validate_params`) of such a pair of percentiles.
PERCENTILE_PAIR = Check(lambda v: len(v) == 2 and 0.0 <= float(v[0]) < float(v[1]) <= 100.0,
                        "a pair (low, high) with 0 <= low < high <= 100")


def normalise_height(
    height: np.ndarray,
    percentiles: tuple[float, float] = NORMALISE_PERCENTILES,
    *,
    bounds: tuple[float, float] | None = None,
    levels: int | None = None,
    flat_value: float | None = None,
) -> np.ndarray | None:
    """Heights clipped to two percentiles and mapped to [0, 1] (float64): the one height
    normalisation that the image-based branches start from.

    The descriptor families that work on a grey image (the paper's 8-bit image, GLCM, LBP) pass
    ``levels=256`` to quantise to grey levels ``k / (levels - 1)`` as an 8-bit image would; the
    CNN input keeps the continuous values (``levels=None``); both use :data:`NORMALISE_PERCENTILES`.

    Parameters
    ----------
    height : ndarray
        Heights (any unit: the result is unitless).
    percentiles : (low, high)
        Height percentiles mapped to 0 and 1; values outside are clipped.
    bounds : (low, high), optional
        The heights mapped to 0 and 1 when already known (e.g. a whole image's limits for its
        tiles, or percentiles computed once); overrides ``percentiles``.
    levels : int, optional
        Quantise to this many grey levels.
    flat_value : float, optional
        Value of every pixel when the map has no contrast between the bounds. None (default):
        return None for such a map, so the caller decides.
    """
    h = np.asarray(height, dtype=np.float64)
    lo, hi = np.percentile(h, percentiles) if bounds is None else bounds
    if not hi > lo:
        return None if flat_value is None else np.full(h.shape, float(flat_value))
    unit = np.clip((h - lo) / (hi - lo), 0.0, 1.0)
    if levels is not None:
        unit = np.rint(unit * (levels - 1)) / (levels - 1)
    return unit


def tile(image: AFMImage, size_px: int, stride_px: int | None = None) -> list[AFMImage]:
    """Cut ``image`` into square ``size_px`` crops every ``stride_px`` pixels (default: no overlap).

    Only complete tiles are returned; each records its origin in ``metadata["tile_origin_px"]``.
    """
    stride = stride_px or size_px
    if size_px < 1 or stride < 1:
        raise ValueError("tile size and stride must be positive")
    rows, cols = image.shape
    tiles = []
    for r in range(0, rows - size_px + 1, stride):
        for c in range(0, cols - size_px + 1, stride):
            crop = image.height[r : r + size_px, c : c + size_px]
            tiles.append(AFMImage(crop.copy(), image.pixel_size_nm, image.channel, image.source,
                                  {**image.metadata, "tile_origin_px": [r, c]}))
    return tiles


@dataclass(frozen=True)
class LevelConfig:
    """Levelling settings (TopoStats-like defaults). Set a step to ``None``/``False`` to skip it.

    Attributes
    ----------
    row_alignment : "median_diff" | "median" | "mean" | "polynomial" | None
        Per-line offset removal along the slow-scan axis (first pass; with ``mask_features`` the
        second pass fits line offsets and background jointly, see
        :func:`fit_rows_and_background`, except for ``polynomial`` rows).
    row_order : int
        Polynomial order for ``row_alignment="polynomial"``.
    background_order : int | None
        Order (0-3) of the 2-D polynomial background; 1 = plane.
    mask_features : bool
        Repeat alignment and background fitting ignoring features (|h - median| > mask_sigma std).
    mask_sigma : float
        Feature threshold in standard deviations.
    remove_scars : bool
        Interpolate over horizontal scars (see :func:`remove_scars`).
    scar_threshold, scar_min_length, scar_max_width :
        Scar criterion parameters.
    clip_z : float | None
        Clip heights beyond this robust z-score. Off by default: bilayer islands and particles
        are real, tall features of TMD films and carry class information.
    zero : "background" | "min" | "median" | None
        Height reference after levelling: median of background pixels (default), minimum,
        median of all pixels, or unchanged.
    pixel_size_nm : float | None
        Resample every image to this pixel size (common scale for descriptors and CNNs).
    """

    row_alignment: RowMethod | None = "median_diff"
    row_order: int = 1
    background_order: int | None = 1
    mask_features: bool = True
    mask_sigma: float = 1.0
    remove_scars: bool = True
    scar_threshold: float = 3.0
    scar_min_length: int = 16
    scar_max_width: int = 2
    clip_z: float | None = None
    zero: Literal["background", "min", "median"] | None = "background"
    pixel_size_nm: float | None = None

    #: what each field accepts, checked as the estimators check their parameters
    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {
        "row_alignment": [Options(("median_diff", "median", "mean", "polynomial")), None],
        "row_order": [Interval(numbers.Integral, 0, None)],
        "background_order": [Interval(numbers.Integral, 0, 3), None],
        "mask_features": [bool], "mask_sigma": [POSITIVE], "remove_scars": [bool], "scar_threshold": [POSITIVE],
        "scar_min_length": [COUNT], "scar_max_width": [COUNT], "clip_z": [POSITIVE, None],
        "zero": [Options(("background", "min", "median")), None], "pixel_size_nm": [POSITIVE, None],
    }

    def __post_init__(self) -> None:
        validate_params(self, self._parameter_constraints)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> LevelConfig:
        unknown = set(values) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown levelling option(s): {sorted(unknown)}")
        return cls(**values)


def level_array(height: np.ndarray, config: LevelConfig | None = None) -> np.ndarray:
    """Apply the levelling pipeline of ``config`` to a height array (nm); see module docstring."""
    cfg = config or LevelConfig()
    h = np.asarray(height, dtype=float)

    def flatten(arr: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
        if mask is not None and cfg.row_alignment in ("median_diff", "median", "mean"):
            # second pass: line offsets and background fitted together on background pixels,
            # which is exact where sequential fits leave a tilt-dependent error in each line
            return arr - fit_rows_and_background(arr, cfg.background_order or 0, mask)
        if cfg.row_alignment:
            arr = align_rows(arr, cfg.row_alignment, cfg.row_order, mask)
        if cfg.background_order is not None:
            arr = remove_polynomial_background(arr, cfg.background_order, mask)
        return arr

    if cfg.remove_scars:  # before fitting, so scars do not bias line offsets
        h = remove_scars(h, cfg.scar_threshold, cfg.scar_min_length, cfg.scar_max_width)
    h = flatten(h, None)
    mask = feature_mask(h, cfg.mask_sigma) if cfg.mask_features else None
    if mask is not None:
        h = flatten(h, mask)
    if cfg.clip_z is not None:
        h = clip_outliers(h, cfg.clip_z)
    if cfg.zero == "background":
        background = h[~mask] if mask is not None and (~mask).any() else h
        h = h - np.median(background)
    elif cfg.zero == "min":
        h = h - h.min()
    elif cfg.zero == "median":
        h = h - np.median(h)
    return h


def level(image: AFMImage, config: LevelConfig | None = None) -> AFMImage:
    """Level an :class:`AFMImage` (see :func:`level_array`), resampling if the config asks."""
    cfg = config or LevelConfig()
    if cfg.pixel_size_nm is not None:
        image = resample(image, cfg.pixel_size_nm)
    out = image.with_height(level_array(image.height, cfg), levelled=True)
    out.metadata["levelling"] = cfg.to_dict()
    return out


class Preprocessor(TransformerMixin, BaseEstimator):
    """scikit-learn transformer levelling a sequence of :class:`AFMImage`; stateless: ``fit`` only checks the input.

    Parameters
    ----------
    config : LevelConfig, optional
        Levelling settings; ``None`` uses the defaults.
    tile_size_px : int, optional
        If set, each levelled image is cut into square tiles of this size (the output is then
        longer than the input; :meth:`transform_with_index` also says which input each tile
        comes from).
    """

    def __init__(self, config: LevelConfig | None = None, tile_size_px: int | None = None):
        self.config = config
        self.tile_size_px = tile_size_px

    def fit(self, X: Sequence[AFMImage], y=None):
        check_images(X)
        return self

    def transform(self, X: Sequence[AFMImage]) -> list[AFMImage]:
        return self.transform_with_index(X)[0]

    def transform_with_index(self, X: Sequence[AFMImage]) -> tuple[list[AFMImage], np.ndarray]:
        """The levelled images (or tiles) and, for each, the position in ``X`` of its input image."""
        images = check_images(X)
        out: list[AFMImage] = []
        index: list[int] = []
        for i, image in enumerate(images):
            levelled = level(image, self.config)
            parts = tile(levelled, self.tile_size_px) if self.tile_size_px else [levelled]
            out.extend(parts)
            index.extend([i] * len(parts))
        return out, np.asarray(index, dtype=int)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False
        tags.requires_fit = False
        return tags


__all__ = [
    "LevelConfig",
    "Preprocessor",
    "align_rows",
    "level",
    "level_array",
    "remove_polynomial_background",
    "remove_scars",
    "resample",
    "tile",
]
