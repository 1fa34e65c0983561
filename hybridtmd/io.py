"""AFM height maps in physical units: the :class:`AFMImage` container, file readers and writers,
and :class:`Dataset` (labelled, sample-grouped collections of files).

Every reader returns heights in **nanometres** (float64) and the pixel size in nanometres as
``(x, y)``. Any problem with a file raises :class:`~hybridtmd.errors.AFMInputError` whose message
names the file and the reason.

Supported formats
-----------------
=================  =====================================================================
suffix             notes
=================  =====================================================================
``.tif .tiff``     tifffile. Pixel size from, in order: hybridtmd's JSON description,
                   ImageJ metadata (``unit`` + resolution tags), resolution tags in
                   centimetres. Inch resolutions (display DPI) are ignored.
``.npy``           bare array; ``pixel_size_nm`` required.
``.npz``           ``height`` array (or a single array), optional ``pixel_size_nm``,
                   ``z_unit``, ``channel``.
``.png .jpg``      grey levels x ``z_scale`` (nm per grey level); ``pixel_size_nm`` and
                   ``z_scale`` required; RGB is converted to luminance with a warning.
``.gwy``           Gwyddion files (``gwyfile``), channel chosen by title.
vendor formats     ``.spm .jpk .ibw .asd .stp .top .h5-jpk`` through AFMReader
                   (``pip install 'hybridtmd[vendor]'``).
=================  =====================================================================
"""

from __future__ import annotations

import csv
import re
import warnings
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from ._utils import atomic_path, atomic_write_csv
from .errors import AFMInputError, AFMInputWarning, HybridTMDError, MissingDependencyError

#: Smallest image side accepted at load time (pixels); smaller maps carry no morphology.
MIN_SIDE_PX = 32
#: Largest fraction of non-finite pixels that is filled by interpolation instead of rejected.
MAX_NONFINITE_FRACTION = 0.05

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

TIFF_SUFFIXES = (".tif", ".tiff")
RASTER_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
VENDOR_SUFFIXES = (".spm", ".jpk", ".ibw", ".asd", ".stp", ".top", ".h5-jpk")
SUPPORTED_SUFFIXES = TIFF_SUFFIXES + (".npy", ".npz", ".gwy") + RASTER_SUFFIXES + VENDOR_SUFFIXES


def unit_to_nm(unit: str) -> float:
    """Factor converting a length in ``unit`` to nanometres (``m``, ``µm``, ``nm``, ``Å``...)."""
    key = unit.strip().replace("\\u00B5", "µ").lower()
    if key not in _UNIT_TO_NM:
        raise ValueError(f"unknown length unit {unit!r}; expected one of {sorted(_UNIT_TO_NM)}")
    return _UNIT_TO_NM[key]


def _pixel_pair(pixel_size_nm: float | Sequence[float], source: str | None) -> tuple[float, float]:
    """Normalise a pixel size (scalar or (x, y)) and check it is positive and finite."""
    values = np.atleast_1d(np.asarray(pixel_size_nm, dtype=float)).ravel()
    if values.size == 1:
        values = np.repeat(values, 2)
    if values.size != 2 or not np.all(np.isfinite(values)) or np.any(values <= 0):
        raise AFMInputError(source, f"pixel size must be one or two positive numbers, got {pixel_size_nm!r}")
    return float(values[0]), float(values[1])


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
        Name of the channel the heights come from.
    source : str or None
        File the image came from (used in every error message).
    metadata : dict
        Anything else worth keeping (scan parameters, tile origin, levelling steps...).
    """

    height: np.ndarray
    pixel_size_nm: tuple[float, float]
    channel: str = "Height"
    source: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

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
        self.pixel_size_nm = _pixel_pair(self.pixel_size_nm, self.source)

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
        """Short name for messages and plots: the file name, or ``<array>``."""
        return Path(self.source).name if self.source else "<array>"

    def with_height(self, height: np.ndarray, **metadata: Any) -> AFMImage:
        """A copy with new heights (same pixel size and provenance), metadata updated."""
        return replace(self, height=height, metadata={**self.metadata, **metadata})

    def plot(self, ax=None, **kwargs: Any):
        """Show the height map with a nm colourbar and a physical scale bar.

        Keyword arguments go to :func:`hybridtmd.plotting.plot_height_map` (``cmap``,
        ``scale_bar_nm``, ``colorbar``, ``title``, ``robust``). Returns the ``AxesImage``.
        """
        from .plotting import plot_height_map

        return plot_height_map(self, ax=ax, **kwargs)


# --------------------------------------------------------------------------------------------
# Validation shared by every reader
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
        if height.dtype.kind not in "biuf":
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
        warnings.warn(
            f"{src or '<array>'}: filled {bad.sum()} NaN/inf pixels ({fraction:.2%}) by interpolation",
            AFMInputWarning,
            stacklevel=3,
        )
        height = fill_nonfinite(height)
    if np.ptp(height) == 0:
        raise AFMInputError(src, "image is constant (peak-to-valley height is 0)")
    return height


# --------------------------------------------------------------------------------------------
# Readers: each returns (array, pixel_size_nm or None, z_unit or None, metadata)
# --------------------------------------------------------------------------------------------


def _tiff_pixel_size(tif, page) -> tuple[float, float] | None:
    """Pixel size in nm from ImageJ metadata or resolution tags, None when not physical."""
    tags = page.tags

    def resolution(name: str) -> float | None:
        tag = tags.get(name)
        if tag is None:
            return None
        num, den = tag.value if isinstance(tag.value, tuple) else (tag.value, 1)
        return num / den if num else None

    xres, yres = resolution("XResolution"), resolution("YResolution")
    if not xres:
        return None
    yres = yres or xres
    ij = tif.imagej_metadata or {}
    if ij.get("unit"):
        try:
            factor = unit_to_nm(str(ij["unit"]))
        except ValueError:
            return None
        return factor / xres, factor / yres
    unit_tag = tags.get("ResolutionUnit")
    if unit_tag is not None and int(unit_tag.value) == 3:  # centimetre
        return 1e7 / xres, 1e7 / yres
    return None  # inch (display DPI) or no unit: not a physical calibration


def _read_tiff(path: Path, channel: str):
    import tifffile

    with tifffile.TiffFile(path) as tif:
        if not tif.pages:
            raise AFMInputError(path, "TIFF has no image pages")
        page = tif.pages[0]
        data = tif.asarray()
        meta: dict[str, Any] = {}
        shaped = tif.shaped_metadata
        if shaped and isinstance(shaped[0], dict):
            meta = {k: v for k, v in shaped[0].items() if k != "shape"}
        pixel = meta.pop("pixel_size_nm", None)
        pixel = tuple(pixel) if pixel is not None else _tiff_pixel_size(tif, page)
        z_unit = meta.pop("z_unit", None)
        if z_unit is None and data.dtype.kind in "iu":
            z_unit = "counts"
    return data, pixel, z_unit, meta


def _check_magic(path: Path, magic: bytes, what: str) -> None:
    """Reject a file whose first bytes are not ``magic`` (np.load would call it pickled data and
    suggest loading it unsafely)."""
    with open(path, "rb") as fh:
        if fh.read(len(magic)) != magic:
            raise AFMInputError(path, f"not a {what} file (its first bytes are not the {what} signature)")


def _read_npy(path: Path, channel: str):
    _check_magic(path, b"\x93NUMPY", ".npy")
    return np.load(path, allow_pickle=False), None, None, {}


def _read_npz(path: Path, channel: str):
    _check_magic(path, b"PK", ".npz (zip)")
    with np.load(path, allow_pickle=False) as npz:
        keys = list(npz.files)
        key = next((k for k in ("height", channel, "image", "data") if k in keys), None)
        if key is None:
            if len(keys) != 1:
                raise AFMInputError(path, f"npz has arrays {keys}; expected one named 'height'")
            key = keys[0]
        data = npz[key]
        pixel = tuple(np.atleast_1d(npz["pixel_size_nm"]).tolist()) if "pixel_size_nm" in keys else None
        z_unit = str(npz["z_unit"]) if "z_unit" in keys else None
        meta = {"channel": str(npz["channel"])} if "channel" in keys else {}
    return data, pixel, z_unit, meta


def _read_raster(path: Path, channel: str):
    from PIL import Image

    with Image.open(path) as img:
        img.load()
        if img.mode not in ("L", "I", "I;16", "I;16B", "I;16L", "F"):
            warnings.warn(
                f"{path}: {img.mode} image converted to grey (luminance); AFM heights should be saved as grey",
                AFMInputWarning,
                stacklevel=4,
            )
            img = img.convert("L")
        data = np.asarray(img)
    return data, None, "counts", {}


def _read_gwy(path: Path, channel: str):
    import gwyfile
    from gwyfile.util import get_datafields

    obj = gwyfile.load(str(path))
    fields = get_datafields(obj)
    if not fields:
        raise AFMInputError(path, "Gwyddion file holds no data fields")
    titles = list(fields)
    match = next((t for t in titles if t.lower() == channel.lower()), None)
    match = match or next((t for t in titles if channel.lower() in t.lower()), None)
    if match is None:
        raise AFMInputError(path, f"channel {channel!r} not found; channels are {titles}")
    df = fields[match]
    data = np.asarray(df.data)
    xy_unit = (df.si_unit_xy.unitstr if df.get("si_unit_xy") is not None else "m") or "m"
    z_unit = (df.si_unit_z.unitstr if df.get("si_unit_z") is not None else "m") or "m"
    factor = unit_to_nm(xy_unit)
    pixel = (df.xreal * factor / data.shape[1], df.yreal * factor / data.shape[0])
    return data, pixel, z_unit, {"gwy_channel": match}


def _read_vendor(path: Path, channel: str):
    try:
        import AFMReader  # noqa: F401
    except ImportError:
        raise MissingDependencyError(
            f"{path}: reading {path.suffix} files needs AFMReader; install the extra: pip install 'hybridtmd[vendor]'"
        ) from None
    import importlib

    suffix = path.suffix.lower()
    module_name, func = {
        ".spm": ("spm", "load_spm"),
        ".jpk": ("jpk", "load_jpk"),
        ".ibw": ("ibw", "load_ibw"),
        ".asd": ("asd", "load_asd"),
        ".stp": ("stp", "load_stp"),
        ".top": ("top", "load_top"),
        ".h5-jpk": ("h5_jpk", "load_h5jpk"),
    }[suffix]
    loader = getattr(importlib.import_module(f"AFMReader.{module_name}"), func)
    result = loader(path) if module_name in ("stp", "top") else loader(path, channel=channel)
    data, px_to_nm = result[0], result[1]
    meta: dict[str, Any] = {}
    if np.ndim(data) == 3:  # high-speed AFM movies: first frame
        meta["n_frames"] = int(np.shape(data)[0])
        warnings.warn(f"{path}: {meta['n_frames']} frames, using the first", AFMInputWarning, stacklevel=4)
        data = data[0]
    return data, (float(px_to_nm), float(px_to_nm)), "nm", meta  # AFMReader returns nm


_READERS = {
    **dict.fromkeys(TIFF_SUFFIXES, _read_tiff),
    ".npy": _read_npy,
    ".npz": _read_npz,
    **dict.fromkeys(RASTER_SUFFIXES, _read_raster),
    ".gwy": _read_gwy,
    **dict.fromkeys(VENDOR_SUFFIXES, _read_vendor),
}


def load_image(
    path: str | Path,
    *,
    pixel_size_nm: float | Sequence[float] | None = None,
    channel: str = "Height",
    z_unit: str | None = None,
    z_scale: float | None = None,
) -> AFMImage:
    """Read one AFM height map from ``path`` into an :class:`AFMImage` (heights in nm).

    Parameters
    ----------
    path : str or Path
        File to read; the reader is chosen by suffix (see module docstring).
    pixel_size_nm : float or (float, float), optional
        Pixel size in nm. Overrides what the file says; required when the file says nothing
        (``.npy``, PNG/JPEG, uncalibrated TIFF).
    channel : str
        Channel to read from multi-channel formats (Gwyddion, vendor files).
    z_unit : str, optional
        Unit of the stored heights (``m``, ``um``, ``nm``, ``A``...) when the file does not say;
        default nm.
    z_scale : float, optional
        Nanometres per stored count for integer data (PNG/JPEG grey levels, 8/16-bit TIFF).
        Required for PNG/JPEG.

    Raises
    ------
    AFMInputError
        The file is missing, unreadable, truncated, not a 2-D height map, too small, constant,
        has too many NaN/inf pixels or no pixel size. The message names the file and the reason.
    MissingDependencyError
        A vendor format was requested without the ``vendor`` extra installed.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if path.name.lower().endswith(".h5-jpk"):
        suffix = ".h5-jpk"
    if not path.exists():
        raise AFMInputError(path, "file not found")
    if not path.is_file():
        raise AFMInputError(path, "not a regular file")
    if suffix not in _READERS:
        raise AFMInputError(path, f"unsupported file type {suffix!r}; supported: {', '.join(SUPPORTED_SUFFIXES)}")
    if path.stat().st_size == 0:
        raise AFMInputError(path, "file is empty (0 bytes)")
    try:
        data, file_pixel, file_z_unit, meta = _READERS[suffix](path, channel)
    except HybridTMDError:
        raise
    except Exception as exc:  # any parser failure is a bad file, reported as one line
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise AFMInputError(path, f"cannot read {suffix} file ({type(exc).__name__}: {reason})") from exc

    height = check_height(data, path)
    pixel = pixel_size_nm if pixel_size_nm is not None else file_pixel
    if pixel is None:
        raise AFMInputError(path, "no pixel size in the file; pass pixel_size_nm=...")
    pixel = _pixel_pair(pixel, str(path))

    unit = z_unit or file_z_unit or "nm"
    if unit == "counts":
        if z_scale is None:
            if suffix in RASTER_SUFFIXES:
                raise AFMInputError(path, "grey-level image: pass z_scale (nm per grey level) and pixel_size_nm")
            warnings.warn(
                f"{path}: integer heights without a z scale are taken as nm; pass z_scale=nm per count",
                AFMInputWarning,
                stacklevel=2,
            )
        height = height * (1.0 if z_scale is None else float(z_scale))
        unit = "nm"
    elif z_scale is not None:
        height = height * float(z_scale)
    try:
        height = height * unit_to_nm(unit)
    except ValueError as exc:
        raise AFMInputError(path, str(exc)) from None
    meta = {**meta, "format": suffix.lstrip("."), "original_z_unit": unit}
    return AFMImage(height=height, pixel_size_nm=pixel, channel=meta.pop("channel", channel),
                    source=str(path), metadata=meta)


# --------------------------------------------------------------------------------------------
# Writers
# --------------------------------------------------------------------------------------------


def save_image(image: AFMImage, path: str | Path, *, tiff_dtype: str = "float32") -> Path:
    """Write ``image`` to ``path`` (``.tif``, ``.npz``, ``.npy`` or ``.gwy``), atomically.

    TIFF is float nm (``tiff_dtype`` float32, or float16 for compact example data: ~0.5 pm
    resolution at 1 nm, 4 pm at 8 nm) with the pixel size in the resolution tags (centimetre unit)
    and, exactly, in a JSON description that :func:`load_image` reads back. ``.npy`` keeps
    heights only.
    """
    if tiff_dtype not in ("float32", "float16", "float64"):
        raise ValueError("tiff_dtype must be float16, float32 or float64")
    path = Path(path)
    suffix = path.suffix.lower()
    px, py = image.pixel_size_nm
    with atomic_path(path, suffix=suffix) as tmp:
        if suffix in TIFF_SUFFIXES:
            import tifffile

            tifffile.imwrite(
                tmp,
                image.height.astype(tiff_dtype),
                resolution=(1e7 / px, 1e7 / py),
                resolutionunit="CENTIMETER",
                metadata={
                    "pixel_size_nm": [px, py],
                    "z_unit": "nm",
                    "channel": image.channel,
                    **{k: v for k, v in image.metadata.items() if _is_json_scalar(v)},
                },
                compression="zlib",
            )
        elif suffix == ".npz":
            with open(tmp, "wb") as fh:
                np.savez_compressed(
                    fh, height=image.height, pixel_size_nm=np.array([px, py]), z_unit="nm",
                    channel=image.channel,
                )
        elif suffix == ".npy":
            with open(tmp, "wb") as fh:
                np.save(fh, image.height, allow_pickle=False)
        elif suffix == ".gwy":
            from gwyfile.objects import GwyContainer, GwyDataField, GwySIUnit

            rows, cols = image.shape
            field_ = GwyDataField(
                image.height * 1e-9, xreal=cols * px * 1e-9, yreal=rows * py * 1e-9,
                si_unit_xy=GwySIUnit(unitstr="m"), si_unit_z=GwySIUnit(unitstr="m"),
            )
            container = GwyContainer()
            container["/0/data/title"] = image.channel
            container["/0/data"] = field_
            container.tofile(str(tmp))
        else:
            raise ValueError(f"cannot write {suffix!r}; use .tif, .npz, .npy or .gwy")
    return path


def _is_json_scalar(value: Any) -> bool:
    return isinstance(value, (str, int, float, bool)) and not isinstance(value, np.generic)


# --------------------------------------------------------------------------------------------
# Datasets
# --------------------------------------------------------------------------------------------

#: Default file-name convention of the seed paper: underscore-separated fields
#: ``<anything>_<MATERIAL>_<anything>_<SAMPLEID>[_<more>...].<ext>``; a last field of
#: ``train``/``val``/``test`` is taken as the split. E.g. ``synthetic_WS2_2.0um_0012_img1.tif``.
DEFAULT_FILENAME_PATTERN = r"^[^_]+_(?P<label>[^_]+)_[^_]+_(?P<group>[^_.]+)(?:_[^.]*)?\.[A-Za-z0-9-]+$"
_SPLITS = ("train", "val", "test")


@dataclass
class LoadReport:
    """What a batch load produced: the images that loaded and the files that did not."""

    images: list[AFMImage]
    indices: np.ndarray  # positions in the dataset of ``images``
    errors: list[tuple[str, str]]  # (file, reason) for every file that failed


@dataclass
class Dataset:
    """A labelled, sample-grouped list of AFM files; images are read lazily on access.

    ``groups`` are sample ids: every cross-validation in hybridtmd splits by them, so images of
    one sample are never in both train and test.
    """

    paths: list[Path]
    labels: np.ndarray
    groups: np.ndarray
    splits: np.ndarray | None = None
    pixel_size_nm: float | tuple[float, float] | None = None
    channel: str = "Height"
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.paths = [Path(p) for p in self.paths]
        self.labels = np.asarray(self.labels, dtype=object)
        self.groups = np.asarray(self.groups, dtype=object)
        if self.splits is not None:
            self.splits = np.asarray(self.splits, dtype=object)
        n = len(self.paths)
        if len(self.labels) != n or len(self.groups) != n or (self.splits is not None and len(self.splits) != n):
            raise ValueError("paths, labels, groups (and splits) must have the same length")

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> AFMImage:
        return load_image(self.paths[index], pixel_size_nm=self.pixel_size_nm, channel=self.channel)

    def __iter__(self) -> Iterator[AFMImage]:
        for i in range(len(self)):
            yield self[i]

    @property
    def classes(self) -> list[str]:
        """Sorted distinct labels."""
        return sorted(set(self.labels.tolist()))

    def subset(self, indices: Iterable[int]) -> Dataset:
        """A dataset of the given positions (e.g. one CV fold)."""
        idx = np.asarray(list(indices), dtype=int)
        return Dataset(
            paths=[self.paths[i] for i in idx], labels=self.labels[idx], groups=self.groups[idx],
            splits=None if self.splits is None else self.splits[idx],
            pixel_size_nm=self.pixel_size_nm, channel=self.channel,
        )

    def to_frame(self):
        """The dataset as a pandas DataFrame (path, label, group[, split])."""
        import pandas as pd

        frame = pd.DataFrame({"path": [str(p) for p in self.paths], "label": self.labels, "group": self.groups})
        if self.splits is not None:
            frame["split"] = self.splits
        return frame

    def load(self, on_error: str = "skip", progress: bool = False) -> LoadReport:
        """Read every image. ``on_error="skip"`` collects bad files in ``report.errors``
        (file, reason) and keeps going; ``"raise"`` stops at the first one."""
        return load_images(self.paths, pixel_size_nm=self.pixel_size_nm, channel=self.channel,
                           on_error=on_error, progress=progress)

    def summary(self):
        """Images and samples per class, as a DataFrame."""
        frame = self.to_frame()
        return frame.groupby("label").agg(images=("path", "size"), samples=("group", "nunique"))


def load_images(
    paths: Iterable[str | Path],
    *,
    pixel_size_nm: float | Sequence[float] | None = None,
    channel: str = "Height",
    on_error: str = "skip",
    progress: bool = False,
) -> LoadReport:
    """Load many files, skipping (and reporting) the bad ones instead of stopping."""
    if on_error not in ("skip", "raise"):
        raise ValueError("on_error must be 'skip' or 'raise'")
    paths = [Path(p) for p in paths]
    images, indices, errors = [], [], []
    iterator: Iterable = enumerate(paths)
    if progress:
        from rich.progress import track

        iterator = track(iterator, total=len(paths), description="loading")
    for i, p in iterator:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("default", AFMInputWarning)
                images.append(load_image(p, pixel_size_nm=pixel_size_nm, channel=channel))
            indices.append(i)
        except HybridTMDError as exc:
            if on_error == "raise":
                raise
            errors.append((str(p), getattr(exc, "reason", str(exc))))
    return LoadReport(images=images, indices=np.asarray(indices, dtype=int), errors=errors)


def load_dataset(
    source: str | Path,
    *,
    pattern: str = DEFAULT_FILENAME_PATTERN,
    pixel_size_nm: float | tuple[float, float] | None = None,
    channel: str = "Height",
    recursive: bool = False,
) -> Dataset:
    """Describe a labelled AFM dataset from a CSV manifest or a folder of files.

    Parameters
    ----------
    source : path
        A ``.csv`` manifest with columns ``path,label,group`` and optionally ``split``
        (paths relative to the manifest's folder), or a folder. A folder containing
        ``manifest.csv`` uses it; otherwise labels and groups are parsed from file names
        with ``pattern``.
    pattern : str
        Regular expression with named groups ``label`` and ``group`` (and optionally ``split``)
        matched against each file name. The default is the seed paper's convention,
        :data:`DEFAULT_FILENAME_PATTERN`: ``<anything>_<MATERIAL>_<anything>_<SAMPLEID>_...``.
        Files with a supported suffix that do not match are listed in ``Dataset.skipped``
        with a warning.
    """
    source = Path(source)
    if not source.exists():
        raise AFMInputError(source, "dataset path not found")
    if source.is_dir() and (source / "manifest.csv").exists():
        source = source / "manifest.csv"
    if source.is_file():
        return _dataset_from_manifest(source, pixel_size_nm=pixel_size_nm, channel=channel)
    regex = re.compile(pattern)
    if "label" not in regex.groupindex or "group" not in regex.groupindex:
        raise ValueError("pattern needs named groups 'label' and 'group'")
    files = sorted(source.rglob("*") if recursive else source.iterdir())
    paths, labels, groups, splits, skipped = [], [], [], [], []
    for f in files:
        if not f.is_file() or f.name.startswith(".") or f.suffix.lower() not in SUPPORTED_SUFFIXES:
            continue
        m = regex.match(f.name)
        if m is None:
            skipped.append((str(f), "file name does not match the dataset pattern"))
            continue
        paths.append(f)
        labels.append(m.group("label"))
        groups.append(m.group("group"))
        split = m.groupdict().get("split")
        last = f.stem.rsplit("_", 1)[-1].lower()
        splits.append(split or (last if last in _SPLITS else None))
    if skipped:
        warnings.warn(f"{source}: {len(skipped)} file(s) do not match the name pattern and were skipped",
                      AFMInputWarning, stacklevel=2)
    if not paths:
        raise AFMInputError(source, "no AFM files matching the dataset pattern")
    has_split = any(s is not None for s in splits)
    return Dataset(paths, labels, groups, splits if has_split else None, pixel_size_nm, channel, skipped)


def _dataset_from_manifest(manifest: Path, *, pixel_size_nm, channel) -> Dataset:
    try:
        with open(manifest, newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise AFMInputError(manifest, f"cannot read manifest ({exc})") from None
    if not rows:
        raise AFMInputError(manifest, "manifest has no rows")
    missing = {"path", "label", "group"} - set(rows[0])
    if missing:
        raise AFMInputError(manifest, f"manifest lacks column(s) {sorted(missing)}; needs path,label,group[,split]")
    base = manifest.parent
    paths = [base / r["path"] if not Path(r["path"]).is_absolute() else Path(r["path"]) for r in rows]
    for i, r in enumerate(rows, start=2):
        if not r["label"] or not r["group"]:
            raise AFMInputError(manifest, f"line {i}: empty label or group")
    first: dict[Path, int] = {}
    for i, (p, r) in enumerate(zip(paths, rows, strict=True)):
        key = p.resolve()
        if key not in first:
            first[key] = i
            continue
        j = first[key]
        if (r["label"], r["group"]) != (rows[j]["label"], rows[j]["group"]):
            raise AFMInputError(manifest, f"lines {j + 2} and {i + 2}: {r['path']} is listed twice with different "
                                          f"label/group ({rows[j]['label']}/{rows[j]['group']} vs "
                                          f"{r['label']}/{r['group']})")
        warnings.warn(f"{manifest}: line {i + 2}: {r['path']} is listed again (first on line {j + 2}); "
                      "it is used twice", AFMInputWarning, stacklevel=3)
    splits = [r.get("split") or None for r in rows] if "split" in rows[0] else None
    return Dataset(
        paths, [r["label"] for r in rows], [r["group"] for r in rows], splits,
        pixel_size_nm=pixel_size_nm, channel=channel,
    )


def write_manifest(dataset: Dataset, path: str | Path) -> Path:
    """Write ``dataset`` as a CSV manifest with paths relative to the manifest's folder."""
    path = Path(path)
    frame = dataset.to_frame()
    root = path.parent.resolve()

    def rel(p: str) -> str:
        try:
            return Path(p).resolve().relative_to(root).as_posix()
        except ValueError:
            return str(Path(p).resolve())

    frame["path"] = [rel(p) for p in frame["path"]]
    atomic_write_csv(frame, path, index=False)
    return path


def image_info(image: AFMImage) -> dict[str, Any]:
    """One-line facts about an image, for ``hybridtmd info`` and logs."""
    h = image.height
    return {
        "file": image.source,
        "shape_px": f"{image.shape[0]}x{image.shape[1]}",
        "pixel_size_nm": f"{image.pixel_size_nm[0]:.4g} x {image.pixel_size_nm[1]:.4g}",
        "scan_size_um": f"{image.size_nm[0] / 1e3:.4g} x {image.size_nm[1] / 1e3:.4g}",
        "height_range_nm": f"{h.min():.4g} .. {h.max():.4g}",
        "rms_nm": f"{h.std():.4g}",
        "channel": image.channel,
    }


__all__ = [
    "AFMImage",
    "Dataset",
    "LoadReport",
    "DEFAULT_FILENAME_PATTERN",
    "check_height",
    "fill_nonfinite",
    "image_info",
    "load_dataset",
    "load_image",
    "load_images",
    "save_image",
    "unit_to_nm",
    "write_manifest",
]
