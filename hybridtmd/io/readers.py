"""File readers: one per format, chosen by file suffix through a public registry.

Every reader returns heights in **nanometres** (float64) and the pixel size in nanometres as
``(x, y)`` once :func:`load_image` has validated and converted its output. Any problem with a
file raises :class:`~hybridtmd.errors.AFMInputError` whose message names the file and the reason.

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

Adding a format
---------------
Write a function ``reader(path: Path, channel: str) -> RawImage`` and register it with
:func:`register_reader`; :func:`load_image`, :func:`~hybridtmd.io.load_dataset` and the command
line then accept the suffix. The reader only parses: :func:`load_image` checks the array
(:func:`~hybridtmd.io.check_height`), applies ``pixel_size_nm`` / ``z_unit`` / ``z_scale`` and
converts to nm, and turns any exception the reader raises into an :class:`AFMInputError` naming
the file.

>>> def read_toy(path, channel):                                     # doctest: +SKIP
...     return RawImage(np.loadtxt(path), pixel_size_nm=2.0, z_unit="nm")
>>> register_reader(".toy", read_toy)                                # doctest: +SKIP
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from ..errors import AFMInputError, HybridTMDError, MissingDependencyError
from .image import AFMImage, check_height, check_pixel_size, unit_to_nm, warn_input

TIFF_SUFFIXES = (".tif", ".tiff")
RASTER_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
VENDOR_SUFFIXES = (".spm", ".jpk", ".ibw", ".asd", ".stp", ".top", ".h5-jpk")


class RawImage(NamedTuple):
    """What a reader returns: the stored data before validation and unit conversion.

    Attributes
    ----------
    data : array-like
        The height map as stored (any numeric dtype; singleton dimensions are squeezed).
    pixel_size_nm : float or (float, float) or None
        Pixel size in nm from the file, ``(x, y)``; None when the file does not say (the caller
        must then pass ``pixel_size_nm`` to :func:`load_image`).
    z_unit : str or None
        Length unit of the stored values (``m``, ``um``, ``nm``...), ``"counts"`` for integers of
        unknown scale (taken as nm with a warning unless ``z_scale`` is given), None for nm.
    metadata : dict or None
        Anything worth keeping; a ``"channel"`` entry names the channel that was read.
    z_scale_required : bool
        The values carry no height scale at all (grey levels of a picture): counts are refused
        without ``z_scale`` instead of being taken as nm.
    """

    data: Any
    pixel_size_nm: float | tuple[float, float] | None = None
    z_unit: str | None = None
    metadata: dict[str, Any] | None = None
    z_scale_required: bool = False


#: ``reader(path, channel) -> RawImage`` (a tuple of the same fields in the same order works too).
Reader = Callable[[Path, str], RawImage]

_READERS: dict[str, Reader] = {}


def _normalise_suffixes(suffixes: str | Iterable[str]) -> list[str]:
    names = [suffixes] if isinstance(suffixes, str) else list(suffixes)
    out = []
    for name in names:
        suffix = str(name).strip().lower()
        if len(suffix) < 2 or not suffix.startswith(".") or "/" in suffix:
            raise ValueError(f"a file suffix starts with a dot, like '.tif'; got {name!r}")
        out.append(suffix)
    if not out:
        raise ValueError("no suffix given")
    return out


def register_reader(suffixes: str | Iterable[str], reader: Reader) -> None:
    """Read files ending in ``suffixes`` (e.g. ``".xyz"`` or ``[".ome.tif", ".ome.tiff"]``) with
    ``reader``.

    ``reader(path: Path, channel: str)`` returns a :class:`RawImage` (see the module docstring).
    Suffixes are case-insensitive and may contain several dots; a file is read by the reader of
    the longest registered suffix its name ends with. Registering a suffix that already has a
    reader (built-in or not) replaces that reader: the last registration wins. The suffixes join
    :data:`SUPPORTED_SUFFIXES` at once.
    """
    if not callable(reader):
        raise TypeError(f"reader must be callable as reader(path, channel), got {type(reader).__name__}")
    for suffix in _normalise_suffixes(suffixes):
        _READERS[suffix] = reader


def unregister_reader(suffixes: str | Iterable[str]) -> None:
    """Stop reading files ending in ``suffixes``; suffixes without a reader are ignored.

    A built-in reader removed or replaced this way comes back by registering it again
    (:func:`reader_for` returns it before the change).
    """
    for suffix in _normalise_suffixes(suffixes):
        _READERS.pop(suffix, None)


def registered_suffix(path: str | Path) -> str | None:
    """The longest registered suffix that the file name of ``path`` ends with (lower case), or
    None when no reader handles it."""
    name = Path(path).name.lower()
    matches = [suffix for suffix in _READERS if name.endswith(suffix) and len(name) > len(suffix)]
    return max(matches, key=len) if matches else None


def reader_for(suffix: str) -> Reader:
    """The reader registered for ``suffix`` (KeyError naming the supported ones otherwise)."""
    (key,) = _normalise_suffixes(suffix)
    if key not in _READERS:
        raise KeyError(f"no reader for {key!r}; supported: {', '.join(_READERS)}")
    return _READERS[key]


class _SupportedSuffixes(Sequence[str]):
    """The registered suffixes in registration order, read from the registry at each use."""

    def __getitem__(self, index):  # type: ignore[override]
        return tuple(_READERS)[index]

    def __len__(self) -> int:
        return len(_READERS)

    def __contains__(self, suffix: object) -> bool:
        return suffix in _READERS

    def __repr__(self) -> str:
        return repr(tuple(_READERS))


#: Every suffix with a reader, kept current by :func:`register_reader` (a live, read-only sequence).
SUPPORTED_SUFFIXES: Sequence[str] = _SupportedSuffixes()


# --------------------------------------------------------------------------------------------
# Built-in readers
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


def read_tiff(path: Path, channel: str) -> RawImage:
    """TIFF: first page; pixel size from hybridtmd's JSON description, ImageJ or resolution tags."""
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
    return RawImage(data, pixel, z_unit, meta)


def _check_magic(path: Path, magic: bytes, what: str) -> None:
    """Reject a file whose first bytes are not ``magic`` (np.load would call it pickled data and
    suggest loading it unsafely)."""
    with open(path, "rb") as fh:
        if fh.read(len(magic)) != magic:
            raise AFMInputError(path, f"not a {what} file (its first bytes are not the {what} signature)")


def read_npy(path: Path, channel: str) -> RawImage:
    """A bare NumPy array (no pixel size); pickled objects are refused."""
    _check_magic(path, b"\x93NUMPY", ".npy")
    return RawImage(np.load(path, allow_pickle=False))


def read_npz(path: Path, channel: str) -> RawImage:
    """A NumPy archive: ``height`` (or ``channel``, ``image``, ``data``, or its only array), and
    optional ``pixel_size_nm``, ``z_unit`` and ``channel`` entries."""
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
    return RawImage(data, pixel, z_unit, meta)


def read_raster(path: Path, channel: str) -> RawImage:
    """PNG/JPEG/BMP grey levels (colour converted to luminance with a warning); needs ``z_scale``."""
    from PIL import Image

    with Image.open(path) as img:
        img.load()
        if img.mode not in ("L", "I", "I;16", "I;16B", "I;16L", "F"):
            warn_input(f"{path}: {img.mode} image converted to grey (luminance); AFM heights should be saved as grey")
            img = img.convert("L")
        data = np.asarray(img)
    return RawImage(data, None, "counts", {}, z_scale_required=True)


def read_gwy(path: Path, channel: str) -> RawImage:
    """Gwyddion ``.gwy``: the data field titled ``channel`` (exact, else containing it)."""
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
    return RawImage(data, pixel, z_unit, {"gwy_channel": match})


#: AFMReader module and loader function of each vendor suffix.
_AFMREADER_LOADERS = {
    ".spm": ("spm", "load_spm"),
    ".jpk": ("jpk", "load_jpk"),
    ".ibw": ("ibw", "load_ibw"),
    ".asd": ("asd", "load_asd"),
    ".stp": ("stp", "load_stp"),
    ".top": ("top", "load_top"),
    ".h5-jpk": ("h5_jpk", "load_h5jpk"),
}


def read_vendor(path: Path, channel: str) -> RawImage:
    """Vendor formats through AFMReader (the ``vendor`` extra); movies give their first frame."""
    try:
        import AFMReader  # noqa: F401
    except ImportError:
        raise MissingDependencyError(
            f"{path}: reading {path.suffix} files needs AFMReader; install the extra: pip install 'hybridtmd[vendor]'"
        ) from None
    module_name, func = _AFMREADER_LOADERS[path.suffix.lower()]
    loader = getattr(importlib.import_module(f"AFMReader.{module_name}"), func)
    result = loader(path) if module_name in ("stp", "top") else loader(path, channel=channel)
    data, px_to_nm = result[0], result[1]
    meta: dict[str, Any] = {}
    if np.ndim(data) == 3:  # high-speed AFM movies: first frame
        meta["n_frames"] = int(np.shape(data)[0])
        warn_input(f"{path}: {meta['n_frames']} frames, using the first")
        data = data[0]
    return RawImage(data, (float(px_to_nm), float(px_to_nm)), "nm", meta)  # AFMReader returns nm


register_reader(TIFF_SUFFIXES, read_tiff)
register_reader(".npy", read_npy)
register_reader(".npz", read_npz)
register_reader(".gwy", read_gwy)
register_reader(RASTER_SUFFIXES, read_raster)
register_reader(VENDOR_SUFFIXES, read_vendor)


# --------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------


def _read_raw(path: Path, channel: str) -> tuple[str, RawImage]:
    """Check the file, dispatch on its suffix and return (suffix, reader output); any parser
    failure becomes one :class:`AFMInputError` line naming the file."""
    suffix = registered_suffix(path)
    if not path.exists():
        raise AFMInputError(path, "file not found")
    if not path.is_file():
        raise AFMInputError(path, "not a regular file")
    if suffix is None:
        raise AFMInputError(path, f"unsupported file type {path.suffix.lower()!r}; "
                                  f"supported: {', '.join(SUPPORTED_SUFFIXES)}")
    if path.stat().st_size == 0:
        raise AFMInputError(path, "file is empty (0 bytes)")
    try:
        return suffix, RawImage(*_READERS[suffix](path, channel))
    except HybridTMDError:
        raise
    except Exception as exc:  # any parser failure is a bad file, reported as one line
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise AFMInputError(path, f"cannot read {suffix} file ({type(exc).__name__}: {reason})") from exc


def _heights_in_nm(height: np.ndarray, path: Path, unit: str, z_scale: float | None,
                   z_scale_required: bool) -> tuple[np.ndarray, str]:
    """Heights converted from ``unit`` (scaled by ``z_scale``) to nm, and the unit they were in
    (``counts`` become nm once scaled)."""
    if unit == "counts":
        if z_scale is None:
            if z_scale_required:
                raise AFMInputError(path, "grey-level image: pass z_scale (nm per grey level) and pixel_size_nm")
            warn_input(f"{path}: integer heights without a z scale are taken as nm; pass z_scale=nm per count")
        height = height * (1.0 if z_scale is None else float(z_scale))
        unit = "nm"
    elif z_scale is not None:
        height = height * float(z_scale)
    try:
        return height * unit_to_nm(unit), unit
    except ValueError as exc:
        raise AFMInputError(path, str(exc)) from None


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
        File to read; the reader is chosen by suffix (see module docstring and
        :func:`register_reader`).
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
    suffix, raw = _read_raw(path, channel)
    height = check_height(raw.data, path)
    pixel = pixel_size_nm if pixel_size_nm is not None else raw.pixel_size_nm
    if pixel is None:
        raise AFMInputError(path, "no pixel size in the file; pass pixel_size_nm=...")
    pixel = check_pixel_size(pixel, str(path))
    height, unit = _heights_in_nm(height, path, z_unit or raw.z_unit or "nm", z_scale, raw.z_scale_required)
    meta = {**(raw.metadata or {}), "format": suffix.lstrip("."), "original_z_unit": unit}
    return AFMImage(height=height, pixel_size_nm=pixel, channel=meta.pop("channel", channel),
                    source=str(path), metadata=meta)


__all__ = [
    "RASTER_SUFFIXES",
    "SUPPORTED_SUFFIXES",
    "TIFF_SUFFIXES",
    "VENDOR_SUFFIXES",
    "RawImage",
    "Reader",
    "load_image",
    "read_gwy",
    "read_npy",
    "read_npz",
    "read_raster",
    "read_tiff",
    "read_vendor",
    "reader_for",
    "register_reader",
    "registered_suffix",
    "unregister_reader",
]
