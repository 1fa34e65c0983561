"""The :class:`AFMImage` container and the checks every height map passes at load time.

Heights are float64 nanometres; the pixel size is ``(x, y)`` in nanometres. A problem with the
data raises :class:`~hybridtmd.errors.AFMInputError` naming the source and the reason.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from .._utils.files import path_text
from .._utils.user_warnings import warn_at_user
from ..errors import AFMInputError, AFMInputWarning

#: Smallest image side accepted at load time (pixels); smaller maps carry no morphology.
MIN_SIDE_PX = 32
#: Largest fraction of non-finite pixels that is filled by interpolation instead of rejected.
MAX_NONFINITE_FRACTION = 0.05
#: Largest height magnitude accepted (nm): 1 km, far beyond any AFM's z range (an uncalibrated
#: Z sensor reads ~1 m). Larger values are a broken file or wrong unit, and their squares and
#: float32 casts overflow descriptors, embeddings and XGBoost (1e300 is finite in float64 only).
MAX_ABS_HEIGHT_NM = 1e12
#: Largest magnitude of another signal (phase, modulus in Pa...) in its own unit.
MAX_ABS_SIGNAL = 1e15

_UNIT_TO_NM = {
    "m": 1e9,
    "cm": 1e7,
    "mm": 1e6,
    "um": 1e3,
    "µm": 1e3,
    "μm": 1e3,  # Greek mu, as some exporters write it
    "micron": 1e3,
    "microns": 1e3,
    "nm": 1.0,
    "a": 0.1,
    "å": 0.1,
    "angstrom": 0.1,
    "pm": 1e-3,
}


#: Length units no AFM file stores heights in: SI prefixes on the metre beyond the table above
#: (``fm``, ``km``...) and non-SI lengths. A file declaring one is refused rather than read as
#: a signal in an unknown unit (``z_unit parsec`` would otherwise pass as a non-height channel).
_FOREIGN_LENGTHS = frozenset({
    "ym", "zm", "am", "fm", "dm", "dam", "hm", "km", "parsec", "parsecs", "pc", "kpc", "ly", "lightyear",
    "light-year", "au", "mile", "miles", "ft", "foot", "feet", "inch", "inches", "yd", "yard", "yards", "nmi",
    "furlong", "fathom", "mil", "thou",
})

#: Metres with an upper-case SI prefix (mega, giga, tera, peta...): case is all that tells ``Mm``
#: from ``mm`` or ``Pm`` from ``pm``, so these are matched before the case-blind table above
#: and refused (read case-blind, a height in Mm would be 10^12 times too small).
_LARGE_PREFIXED_METRES = frozenset({"Mm", "Gm", "Tm", "Pm", "Em", "Zm", "Ym"})


def is_foreign_length_unit(unit: object) -> bool:
    """Whether ``unit`` names a length outside the units AFM files use (pm, Å, nm, µm, mm, cm,
    m: :func:`unit_to_nm`), e.g. ``km``, ``fm``, ``parsec``, ``inch``."""
    if not isinstance(unit, str):
        return False
    return unit.strip() in _LARGE_PREFIXED_METRES or (unit.strip().lower() in _FOREIGN_LENGTHS
                                                       and not is_length_unit(unit))


def unit_to_nm(unit: str) -> float:
    """Factor converting a length in ``unit`` to nanometres (``m``, ``µm``, ``nm``, ``Å``...)."""
    if not isinstance(unit, str):
        raise ValueError(f"a length unit is text such as 'nm' or 'm', got {type(unit).__name__} {unit!r}")
    key = unit.strip().replace("\\u00B5", "µ").replace("~", "µ").lower()
    if unit.strip() in _LARGE_PREFIXED_METRES or key not in _UNIT_TO_NM:
        raise ValueError(f"unknown length unit {unit!r}; expected one of {sorted(_UNIT_TO_NM)}")
    return _UNIT_TO_NM[key]


def is_length_unit(unit: object) -> bool:
    """Whether ``unit`` is a length unit :func:`unit_to_nm` converts."""
    try:
        unit_to_nm(unit)  # type: ignore[arg-type]
    except ValueError:
        return False
    return True


def check_pixel_size(pixel_size_nm: float | Sequence[float], source: str | Path | None) -> tuple[float, float]:
    """A pixel size (one number, or ``(x, y)``) as two positive finite floats in nm.

    Raises :class:`AFMInputError` naming ``source`` otherwise.
    """
    try:
        items = list(pixel_size_nm) if isinstance(pixel_size_nm, list | tuple) else [pixel_size_nm]
        # true/false would read as 1/0 nm: a flag where a length belongs is a broken file, not 1 nm
        flags = np.asarray(pixel_size_nm).dtype == bool or any(isinstance(v, bool | np.bool_) for v in items)
        values = np.array([np.nan]) if flags else np.atleast_1d(np.asarray(pixel_size_nm, dtype=float)).ravel()
    except (TypeError, ValueError):
        values = np.array([np.nan])
    if values.size == 1:
        values = np.repeat(values, 2)
    if values.size != 2 or not np.all(np.isfinite(values)) or np.any(values <= 0):
        raise AFMInputError(source, f"pixel size must be one or two positive numbers, got {pixel_size_nm!r}")
    return float(values[0]), float(values[1])


def warn_input(message: str) -> None:
    """Issue an :class:`AFMInputWarning` attributed to the user's line (``load_image(...)``,
    ``dataset.load()``...), however deep in the readers the problem was found."""
    warn_at_user(message, AFMInputWarning)


@dataclass
class AFMImage:
    """An AFM height map in physical units.

    Attributes
    ----------
    height : ndarray of float64, shape (rows, cols)
        Heights in nanometres. Row index is the slow-scan axis (y), column index the fast axis (x).
    pixel_size_nm : (float, float)
        Pixel size along x (columns) and y (rows), in nanometres.
    channel : str
        Name of the channel the values come from, as the file names it.
    source : str or None
        File the image came from (used in every error message).
    metadata : dict
        Anything else worth keeping: ``instrument``, ``vendor``, ``acquisition_time`` (ISO 8601)
        and ``raw_header`` where the file gives them, ``format``, ``channel_key`` (the canonical
        channel name, :mod:`hybridtmd.io.channels`), tile origin, levelling steps...
    z_unit : str
        Unit of ``height``: ``"nm"`` for every height channel (the reader converts lengths); a
        non-height channel (phase, amplitude, adhesion, current...) keeps its own unit (``deg``,
        ``V``, ``mV``, ``Pa``...) and is not a height map (:attr:`is_height` is False).

    Draw one with :func:`hybridtmd.io.figures.plot_height_map`.
    """

    height: np.ndarray
    pixel_size_nm: tuple[float, float]
    channel: str = "Height"
    source: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    z_unit: str = "nm"

    def __post_init__(self) -> None:
        self.source = None if self.source is None else str(self.source)
        height = np.asarray(self.height, dtype=np.float64)
        if height.ndim != 2:
            raise AFMInputError(self.source, f"height map must be 2-D, got shape {height.shape}")
        if height.size == 0:
            raise AFMInputError(self.source, "height map is empty")
        if not np.all(np.isfinite(height)):
            raise AFMInputError(self.source, "height map contains NaN or infinite values")
        self.height = height
        self.pixel_size_nm = check_pixel_size(self.pixel_size_nm, self.source)
        if not isinstance(self.z_unit, str) or not self.z_unit.strip():
            raise AFMInputError(self.source, f"z_unit must be a unit name such as 'nm', got {self.z_unit!r}")
        largest, limit = float(np.abs(height).max()), MAX_ABS_HEIGHT_NM if self.is_height else MAX_ABS_SIGNAL
        if largest > limit:
            unit = "nm" if self.is_height else self.z_unit
            raise AFMInputError(self.source, f"values up to {largest:.3g} {unit} (limit {limit:.0e} {unit}, beyond "
                                             "any AFM's range): a broken file or a wrong unit")

    @property
    def is_height(self) -> bool:
        """Whether the values are heights (in nm), not another signal in its own unit."""
        return self.z_unit == "nm"

    @property
    def shape(self) -> tuple[int, int]:
        """(rows, cols) in pixels."""
        return self.height.shape  # type: ignore[return-value]

    @property
    def size_nm(self) -> tuple[float, float]:
        """Physical scan size (width along x, height along y) in nanometres."""
        rows, cols = self.shape
        return cols * self.pixel_size_nm[0], rows * self.pixel_size_nm[1]

    @property
    def area_um2(self) -> float:
        """Scanned area in µm²."""
        w, h = self.size_nm
        return w * h * 1e-6

    @property
    def name(self) -> str:
        """Short name for messages, plots and reports: the file name (its bytes that are not valid
        text written ``\\xNN``: :func:`hybridtmd._utils.files.path_text`), or ``<array>``."""
        return path_text(Path(self.source).name) if self.source else "<array>"

    def with_height(self, height: np.ndarray, **metadata: Any) -> AFMImage:
        """A copy with new heights (same pixel size and provenance), metadata updated."""
        return replace(self, height=height, metadata={**self.metadata, **metadata})


def check_images(X: Sequence[AFMImage] | AFMImage) -> list[AFMImage]:
    """The input of every image transformer as a list of :class:`AFMImage` (TypeError otherwise)."""
    images = list(X) if not isinstance(X, AFMImage) else [X]
    for i, im in enumerate(images):
        if not isinstance(im, AFMImage):
            raise TypeError(f"item {i} is {type(im).__name__}, expected AFMImage (use hybridtmd.io.load_image)")
    return images


#: The channel name of the height map in a mapping channel -> image (a bare AFMImage is it).
HEIGHT_CHANNEL = "height"


def channel_image(item: AFMImage | Mapping[str, AFMImage], channel: str) -> AFMImage | None:
    """The image of ``channel`` in one multichannel input (a mapping channel name -> AFMImage,
    names compared case-insensitively; a bare AFMImage is the ``height`` channel), or None."""
    if isinstance(item, AFMImage):
        return item if channel.casefold() == HEIGHT_CHANNEL else None
    wanted = channel.casefold()
    return next((image for key, image in item.items() if str(key).casefold() == wanted), None)


def check_channel_maps(X: Any) -> list[AFMImage | Mapping[str, AFMImage]]:
    """The input of a multichannel transformer as a list whose items are AFMImages (the height
    channel alone) or mappings channel name -> AFMImage (:func:`~hybridtmd.io.load_channels`);
    TypeError naming the first bad item otherwise."""
    items = [X] if isinstance(X, (AFMImage, Mapping)) else list(X)
    for i, item in enumerate(items):
        if isinstance(item, Mapping):
            bad = [k for k, v in item.items() if not isinstance(v, AFMImage)]
            if bad:
                raise TypeError(f"item {i}: channel(s) {bad} are not AFMImage (use hybridtmd.io.load_channels)")
        elif not isinstance(item, AFMImage):
            raise TypeError(f"item {i} is {type(item).__name__}, expected a mapping channel -> AFMImage")
    return items


def height_images(items: Sequence[AFMImage | Mapping[str, AFMImage]]) -> list[AFMImage]:
    """The height image of every item of :func:`check_channel_maps` (ValueError naming the item,
    and its file, that has none)."""
    heights = []
    for i, item in enumerate(items):
        image = channel_image(item, HEIGHT_CHANNEL)
        if image is None:
            source = next((im.source for im in item.values() if im.source), None)
            raise ValueError(f"item {i}{f' ({source})' if source else ''} has no {HEIGHT_CHANNEL!r} channel "
                             f"(channels: {', '.join(map(str, item))})")
        heights.append(image)
    return heights


def spread(height: np.ndarray) -> float:
    """The standard deviation of heights, computed on heights scaled by their largest magnitude
    so that values near the float64 limit (1e300) give their true spread, not an overflow to inf."""
    scale = float(np.max(np.abs(height))) if height.size else 0.0
    return float(np.std(height / scale)) * scale if scale > 0 else 0.0


def image_info(image: AFMImage) -> dict[str, Any]:
    """One-line facts about an image, for ``hybridtmd info`` and logs."""
    h = image.height
    return {
        "file": image.source,
        "shape_px": f"{image.shape[0]}x{image.shape[1]}",
        "pixel_size_nm": f"{image.pixel_size_nm[0]:.4g} x {image.pixel_size_nm[1]:.4g}",
        "scan_size_um": f"{image.size_nm[0] / 1e3:.4g} x {image.size_nm[1] / 1e3:.4g}",
        "height_range_nm": f"{h.min():.4g} .. {h.max():.4g}",
        "rms_nm": f"{spread(h):.4g}",
        "channel": image.channel,
    }


# --------------------------------------------------------------------------------------------
# Validation of raw reader output
# --------------------------------------------------------------------------------------------


def fill_nonfinite(height: np.ndarray) -> np.ndarray:
    """Fill NaN/inf pixels by linear interpolation from the surrounding finite pixels.

    Only a ring of finite pixels around each hole is used as support, so the cost scales with
    the hole boundary, not the image. Pixels outside the convex hull of the support (image
    corners) take the nearest finite value.
    """
    from scipy import interpolate, ndimage

    bad = ~np.isfinite(height)
    if not bad.any():
        return height
    ring = ndimage.binary_dilation(bad, iterations=2) & ~bad
    pts = np.argwhere(ring)
    filled = height.copy()
    holes = np.argwhere(bad)
    values = interpolate.griddata(pts, height[ring], holes, method="linear")
    missing = ~np.isfinite(values)
    if missing.any():
        _, (ri, ci) = ndimage.distance_transform_edt(bad, return_indices=True)
        values[missing] = height[ri[tuple(holes[missing].T)], ci[tuple(holes[missing].T)]]
    filled[bad] = values
    return filled


def check_height(array: Any, source: str | Path | None = None) -> np.ndarray:
    """Validate raw data as a usable height map and return it as 2-D float64.

    Rules (each failure is one :class:`AFMInputError` naming ``source``):
    singleton dimensions of 3-D+ data are squeezed; the result must be 2-D, non-empty, at least
    :data:`MIN_SIDE_PX` pixels per side and not constant. Non-finite pixels are filled by
    interpolation with an :class:`AFMInputWarning` when they are under
    :data:`MAX_NONFINITE_FRACTION` of the image, otherwise the image is rejected.
    """
    src = None if source is None else str(source)
    try:
        height = np.asarray(array)
        if height.dtype.kind == "b":
            raise TypeError("boolean values are a mask, not heights")
        if height.dtype.kind not in "iuf":
            raise TypeError(f"dtype {height.dtype}")
        height = height.astype(np.float64)
    except (TypeError, ValueError) as exc:
        raise AFMInputError(src, f"data is not numeric ({exc})") from None
    if height.size == 0:
        raise AFMInputError(src, "image is empty (no pixels)")
    if height.ndim > 2:  # (1, rows, cols) pages and (rows, cols, 1) channels are still maps
        height = np.squeeze(height)
    if height.ndim != 2:
        raise AFMInputError(
            src, f"expected a 2-D height map, got shape {np.shape(array)} (stacks and RGB volumes are not height maps)"
        )
    if min(height.shape) < MIN_SIDE_PX:
        rows, cols = height.shape
        raise AFMInputError(src, f"image is {rows}x{cols} px; at least {MIN_SIDE_PX} px per side needed")
    bad = ~np.isfinite(height)
    if bad.any():
        fraction = bad.mean()
        if fraction >= MAX_NONFINITE_FRACTION:
            raise AFMInputError(
                src, f"{fraction:.1%} of pixels are NaN/inf (limit {MAX_NONFINITE_FRACTION:.0%} for interpolation)"
            )
        warn_input(f"{src or '<array>'}: filled {bad.sum()} NaN/inf pixels ({fraction:.2%}) by interpolation")
        height = fill_nonfinite(height)
    if np.ptp(height) == 0:
        raise AFMInputError(src, "image is constant (peak-to-valley height is 0)")
    return height


__all__ = [
    "MAX_ABS_HEIGHT_NM",
    "MAX_ABS_SIGNAL",
    "MAX_NONFINITE_FRACTION",
    "MIN_SIDE_PX",
    "AFMImage",
    "check_height",
    "check_images",
    "check_pixel_size",
    "fill_nonfinite",
    "image_info",
    "is_foreign_length_unit",
    "is_length_unit",
    "unit_to_nm",
    "warn_input",
]
