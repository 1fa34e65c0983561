"""Shared pieces of the descriptor families: settings, the :class:`Surface` a family computes on,
and the height normalisation used by the image-based (paper, texture) descriptors.

Normalisation
-------------
The seed paper computed its descriptors on 8-bit images scaled to [0, 1]. A height map in nm has
no such scale, so the image-based descriptors use :func:`normalise_height` with
:data:`~hybridtmd.preprocess.NORMALISE_PERCENTILES`: the levelled heights are clipped to their
0.5th-99.5th percentiles (so a few tall particles do not compress the film into a handful of grey
levels), mapped linearly to [0, 1] and quantised to 256 levels - the stand-in for the paper's
8-bit images. The CNN input starts from the same function and percentiles (without the
quantisation). Descriptors in physical units (nm, per µm²...) are computed on the levelled
heights themselves.

Reference resolution
--------------------
Operators defined in pixels (Gaussian smoothing, Canny, peak search, DoG sigmas, the opening
disk, GLCM / LBP distances, finite-difference slopes, minimum grain areas) measure different
structures at different pixel sizes. The scale-dependent families therefore compute on
:attr:`Surface.reference`: the image area-averaged to
``DescriptorConfig.reference_pixel_nm`` (10 nm by default), so that each of their pixel
operators has one physical scale (1 px = 10 nm) whatever the scan's pixel size. Images finer
than the reference lose only detail below it; images *coarser* than the reference are
interpolated up to it, which cannot restore the missing detail: their values are biased
(:attr:`Surface.coarser_than_reference`; the extractor warns). The ``paper`` family keeps the
paper's pixel definitions on the native image.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Collection
from dataclasses import asdict, dataclass
from functools import cached_property
from typing import Any, ClassVar, Literal

import numpy as np

from .._utils.params import NON_NEGATIVE, POSITIVE, Check, Interval, Options, validate_params
from ..io import AFMImage
from ..preprocess import NORMALISE_PERCENTILES, PERCENTILE_PAIR, normalise_height, resample
from .release import RELEASE_0_1_0_SETTINGS

#: the reference pixel size (nm) of the scale-dependent families (``DescriptorConfig``)
REFERENCE_PIXEL_NM = 10.0

#: height percentiles bounding the histogram of the layer analysis (``grains.height_levels``)
LEVEL_PERCENTILES = (0.1, 99.9)


@dataclass(frozen=True)
class DescriptorConfig:
    """Settings of the descriptor families (defaults are what the docs and tests describe).

    Attributes
    ----------
    normalise_percentiles : (float, float)
        Height percentiles mapped to 0 and 1 by :func:`normalise_height`
        (:data:`~hybridtmd.preprocess.NORMALISE_PERCENTILES`, shared with the CNN input).
    reference_pixel_nm : float or None
        Pixel size (nm) the scale-dependent families (``morphology``, ``grains``, ``texture``,
        ``spectral``, the slopes of ``areal``) compute at (:attr:`Surface.reference`). None:
        at each image's own pixel size, as release 0.1.0 (pixel-dependent values).
    slope_stencil : "central" | "forward"
        Finite differences of Sdq, Sdr: ``central`` (``numpy.gradient``; one-sided at the
        border) or ``forward`` (``z[i+1] - z[i]`` on the ``(rows-1, cols-1)`` grid, the ISO
        25178-6 / SurfaceTopography / Gwyddion convention; reads higher on rough surfaces
        because central differences average two neighbouring slopes).
    fractal_range_check : bool
        ``fractal_dimension`` outside the meaningful range [2, 3] of a surface is NaN with a
        reason (True) instead of the extrapolated number (release 0.1.0).
    flat_tol_nm : float
        An image whose rms height (Sq) is below this is *flat*: shape statistics (skewness,
        spectra, segmentation...) are undefined (NaN with a reason), roughness values stay ~0.
    blob_method : "fast" | "2d" | "paper"
        ``paper``: the paper's exact call, ``skimage.feature.blob_dog`` on the H x W x 3
        grey-to-RGB array (a 3-D detection; slow); ``2d``: the same detector on the 2-D image;
        ``fast``: the 2-D detector on a 2x block-averaged image with halved sigmas (a quarter of
        the pixels; see :func:`~hybridtmd.descriptors.paper.dog_blob_count` for the measured
        agreement).
    grain_threshold : "robust" | "otsu" | "monolayer" | float
        Grain segmentation threshold (see :func:`~hybridtmd.descriptors.grains.grain_threshold`):
        ``robust`` - Otsu's of the smoothed heights with particles masked (pixels more than
        ``particle_height_nm`` above the substrate level); ``otsu`` - Otsu's of all smoothed
        heights (release 0.1.0; picks tall particles when they dominate the histogram's
        variance); ``monolayer`` - half a ``monolayer_step_nm`` above the substrate level; or
        an absolute height in nm.
    particle_height_nm : float
        Height above the substrate level beyond which the ``robust`` threshold treats pixels as
        particles (2 monolayers and more; TMD films are 1-3 layers of 0.65-0.7 nm).
    grain_smoothing_px : float
        Gaussian sigma (pixels, of the reference grid) applied before thresholding
        (TopoStats' ``gaussian_size``).
    min_grain_area_px, min_grain_area_nm2 :
        Segments smaller than either are noise and dropped.
    monolayer_step_nm : float
        Expected step between layers (TMD monolayer ~0.65-0.7 nm) for the layer analysis.
    level_bin_nm : float
        Bin width of the height histogram of the layer analysis.
    min_level_fraction : float
        A height level counts as a layer when at least this fraction of pixels lies within half a
        monolayer step of its histogram peak.
    acf_threshold : float
        ISO 25178-2 threshold ``s`` of the autocorrelation for Sal and Str (default 0.2).
    """

    normalise_percentiles: tuple[float, float] = NORMALISE_PERCENTILES
    flat_tol_nm: float = 1e-6
    blob_method: Literal["fast", "2d", "paper"] = "fast"
    reference_pixel_nm: float | None = REFERENCE_PIXEL_NM
    slope_stencil: Literal["central", "forward"] = "central"
    fractal_range_check: bool = True
    grain_threshold: Literal["robust", "otsu", "monolayer"] | float = "robust"
    particle_height_nm: float = 1.5
    grain_smoothing_px: float = 1.0
    min_grain_area_px: int = 4
    min_grain_area_nm2: float = 0.0
    monolayer_step_nm: float = 0.7
    level_bin_nm: float = 0.02
    min_level_fraction: float = 0.02
    acf_threshold: float = 0.2

    #: what each field accepts, checked as the estimators check their parameters
    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {
        "normalise_percentiles": [PERCENTILE_PAIR],
        "flat_tol_nm": [NON_NEGATIVE],
        "blob_method": [Options(("fast", "2d", "paper"))],
        "reference_pixel_nm": [POSITIVE, None],
        "slope_stencil": [Options(("central", "forward"))],
        "fractal_range_check": [bool],
        "grain_threshold": [Options(("robust", "otsu", "monolayer")),
                            Check(lambda v: Interval(numbers.Real, None, None)(v) and math.isfinite(v),
                                  "a finite height in nm")],
        "particle_height_nm": [POSITIVE],
        "grain_smoothing_px": [NON_NEGATIVE],  # 0: no smoothing
        "min_grain_area_px": [Interval(numbers.Integral, 0, None)],
        "min_grain_area_nm2": [NON_NEGATIVE],
        "monolayer_step_nm": [POSITIVE],
        "level_bin_nm": [POSITIVE],
        "min_level_fraction": [Interval(numbers.Real, 0, 1)],
        "acf_threshold": [Interval(numbers.Real, 0, 1, closed="neither")],
    }

    def __post_init__(self) -> None:
        validate_params(self, self._parameter_constraints)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def release_0_1_0(cls) -> DescriptorConfig:
        """The settings of release 0.1.0 (its models saved them as ``config: None``): every image
        at its own pixel size, plain Otsu grain threshold, fractal dimension unchecked."""
        return cls(**RELEASE_0_1_0_SETTINGS)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> DescriptorConfig:
        unknown = set(values) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown descriptor option(s): {sorted(unknown)}")
        values = dict(values)
        if "normalise_percentiles" in values:
            values["normalise_percentiles"] = tuple(values["normalise_percentiles"])
        return cls(**values)


class Surface:
    """A levelled height map and derived arrays, computed once and shared by the families.

    Attributes
    ----------
    image : AFMImage
        The (levelled) image.
    config : DescriptorConfig
    height : ndarray
        Heights in nm (as levelled; not re-referenced).
    pixel_size_nm : (float, float)
        (x, y) pixel size.
    requested : set of str or None
        The columns the caller will read (None: all); a family may skip operators that only
        other columns need.
    """

    def __init__(self, image: AFMImage, config: DescriptorConfig | None = None,
                 requested: Collection[str] | None = None):
        self.image = image
        self.config = config or DescriptorConfig()
        self.requested = None if requested is None else frozenset(requested)
        self.height = image.height
        self.pixel_size_nm = image.pixel_size_nm

    @property
    def z_unit(self) -> str:
        """Unit of the image's values: nm for heights, the channel's unit otherwise (``z_unit``
        of the image, which the readers set for non-height channels)."""
        return str(getattr(self.image, "z_unit", "nm") or "nm")

    @cached_property
    def reference(self) -> Surface:
        """This surface at ``config.reference_pixel_nm`` (square pixels): the image area-averaged
        to it (:func:`hybridtmd.preprocess.resample` with ``method="area"``; bilinear interpolation for an image
        coarser than the reference), or itself when the reference is None or already its pixel
        size."""
        ref = self.config.reference_pixel_nm
        if ref is None or np.allclose(self.pixel_size_nm, ref, rtol=1e-6):
            return self
        return Surface(resample(self.image, ref, "area"), self.config)

    @property
    def coarser_than_reference(self) -> bool:
        """True when the image's pixels are larger than the reference pixel (by more than 1 %):
        resampling interpolates it, and its reference-scale values miss the finer detail."""
        ref = self.config.reference_pixel_nm
        return ref is not None and max(self.pixel_size_nm) > 1.01 * ref

    @property
    def area_um2(self) -> float:
        return self.image.area_um2

    @property
    def pixel_length_nm(self) -> float:
        """Geometric-mean pixel side, converting pixel lengths to nm for non-square pixels."""
        return float(np.sqrt(self.pixel_size_nm[0] * self.pixel_size_nm[1]))

    @cached_property
    def centred(self) -> np.ndarray:
        """Heights minus their mean (the ISO 25178 reference plane after form removal)."""
        return self.height - self.height.mean()

    @cached_property
    def sq_nm(self) -> float:
        return float(np.sqrt(np.mean(self.centred**2)))

    @property
    def is_flat(self) -> bool:
        return self.sq_nm < self.config.flat_tol_nm

    def smoothed(self, sigma_px: float) -> np.ndarray:
        """``scipy.ndimage.gaussian_filter(height, sigma_px)`` (reflect border), cached: the
        paper's roughness and the grain segmentation share it."""
        cache = self.__dict__.setdefault("_smoothed", {})
        if sigma_px not in cache:
            from scipy import ndimage

            cache[sigma_px] = ndimage.gaussian_filter(self.height, sigma_px)
        return cache[sigma_px]

    @cached_property
    def gradient(self) -> tuple[np.ndarray, np.ndarray]:
        """``numpy.gradient`` of the heights with the pixel sizes: ``(dz/dy, dz/dx)`` along rows
        and columns (nm/nm; central differences, one-sided at the border). Shared by the
        areal slopes (Sdq, Sdr, with ``slope_stencil="central"``) and the paper's physical
        anisotropy."""
        dx, dy = self.pixel_size_nm
        return tuple(np.gradient(np.asarray(self.height, float), dy, dx))

    @cached_property
    def forward_gradient(self) -> tuple[np.ndarray, np.ndarray]:
        """Forward differences ``(dz/dy, dz/dx)`` on the ``(rows-1, cols-1)`` grid of pixel
        corners: ``(z[i+1, j] - z[i, j]) / dy`` and ``(z[i, j+1] - z[i, j]) / dx`` - the stencil
        of ISO 25178-6's reference software, SurfaceTopography's ``rms_gradient`` and Gwyddion."""
        z = np.asarray(self.height, float)
        dx, dy = self.pixel_size_nm
        return np.diff(z, axis=0)[:, :-1] / dy, np.diff(z, axis=1)[:-1, :] / dx

    @property
    def slope_gradient(self) -> tuple[np.ndarray, np.ndarray]:
        """The gradient of ``config.slope_stencil``."""
        return self.forward_gradient if self.config.slope_stencil == "forward" else self.gradient

    @cached_property
    def height_percentiles(self) -> dict[float, float]:
        """Height percentiles (nm) that several families need - the normalisation's and the
        layer analysis's :data:`LEVEL_PERCENTILES` - from one partial sort of the heights."""
        wanted = sorted({*self.config.normalise_percentiles, *LEVEL_PERCENTILES})
        return dict(zip(wanted, np.percentile(self.height, wanted).tolist(), strict=True))

    @cached_property
    def normalised(self) -> np.ndarray | None:
        """8-bit-quantised [0, 1] image (see :func:`normalise_height`); None if flat."""
        if self.is_flat:
            return None
        q = self.config.normalise_percentiles
        return normalise_height(self.height, q, bounds=(self.height_percentiles[q[0]], self.height_percentiles[q[1]]),
                                levels=256)

    @property
    def no_contrast_reason(self) -> str:
        """Why :attr:`normalised` is None: the reason recorded for the descriptors of the
        normalised image (the paper's and the texture family's)."""
        if self.is_flat:
            return "flat image: no height contrast to normalise"
        return "no height contrast between the normalisation percentiles"

    @cached_property
    def uint8(self) -> np.ndarray | None:
        n = self.normalised
        return None if n is None else np.rint(n * 255).astype(np.uint8)

    @cached_property
    def power_spectrum(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Hann-windowed 2-D power spectral density of the centred heights.

        Returns ``(psd, fy, fx)``: ``psd`` in nm⁴ (nm² height x nm² area) on the full
        ``fftfreq`` grid, scaled so that ``psd.sum() * dfx * dfy`` equals the height variance;
        ``fy``, ``fx`` frequencies in 1/nm. The window suppresses the cross-shaped leakage of
        non-periodic image edges, which would otherwise read as anisotropy and flatten slopes.
        """
        from scipy import fft

        rows, cols = self.height.shape
        dx, dy = self.pixel_size_nm
        window = np.outer(np.hanning(rows), np.hanning(cols))
        spectrum = fft.fft2(self.centred * window)
        power = np.abs(spectrum) ** 2
        # normalise so the PSD integrates to the variance (window energy divided out)
        psd = power * dx * dy / np.sum(window**2)
        return psd, fft.fftfreq(rows, dy), fft.fftfreq(cols, dx)

