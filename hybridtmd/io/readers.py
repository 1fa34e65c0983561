"""File readers: one per format, chosen by file suffix through a public registry.

Every reader returns heights in **nanometres** (float64) and the pixel size in nanometres as
``(x, y)`` once :func:`load_image` has validated and converted its output. Any problem with a
file raises :class:`~hybridtmd.errors.AFMInputError` whose message names the file and the reason.

Supported formats
-----------------
==========================  ==============================================================
suffix                      read by, notes
==========================  ==============================================================
``.tif .tiff``              tifffile; a Park Systems TIFF (found from its private tag, not
                            its name) through SurfaceTopography. Pixel size from, in order:
                            hybridtmd's JSON description, ImageJ metadata (``unit`` +
                            resolution tags), resolution tags in centimetres (inch
                            resolutions are display DPI, ignored). Multi-page: pages are
                            channels ``page 0``...; pass ``channel``.
``.npy``                    bare array; ``pixel_size_nm`` required.
``.npz``                    ``height`` array (or a single array), optional
                            ``pixel_size_nm``, ``z_unit``, ``channel``.
``.png .jpg .jpeg .bmp``    grey levels x ``z_scale`` (nm per grey level);
                            ``pixel_size_nm`` and ``z_scale`` required.
``.gwy``                    Gwyddion (gwyfile), every data field a channel.
instrument formats          SurfaceTopography: Bruker Nanoscope ``.spm .di .000-.999``,
                            Asylum ``.ibw``, Nanosurf ``.nid .ezd``, Agilent ``.mi``, JPK
                            ``.jpk``, WSxM ``.stp .top``, NT-MDT ``.mdt``, optical
                            profilers ``.x3p .opd .sur .plu .datx .vk4 .zon``...
                            (:data:`~hybridtmd.io.vendor.SURFACE_TOPOGRAPHY_FORMATS`).
``.topostats``              TopoStats (HDF5, h5py): channels ``image`` (default) and
                            ``image_original``.
``.asd .h5-jpk``            AFMReader (``pip install 'hybridtmd[vendor]'``).
==========================  ==============================================================

Adding a format
---------------
Write a function ``reader(path: Path, channel: str | int | None) -> RawImage`` (``channel`` is a
name, an index or None for the default) and register it with :func:`register_reader`;
:func:`load_image`, :func:`~hybridtmd.io.load_dataset` and the command line then accept the
suffix. The reader only parses: :func:`load_image` checks the array
(:func:`~hybridtmd.io.check_height`), applies ``pixel_size_nm`` / ``z_unit`` / ``z_scale`` and
converts to nm, and turns any exception the reader raises into an :class:`AFMInputError` naming
the file. A registered reader and lister run under the read time limit
(:func:`~hybridtmd.io.limits.bounded_call`, ``HYBRIDTMD_READ_TIMEOUT``), as do the built-in
readers' third-party calls. A multi-channel format also passes ``channels=lister`` (``lister(path) ->
list[ChannelSpec]``) so that :func:`list_channels` and :func:`load_channels` see every channel.

>>> def read_toy(path, channel):                                     # doctest: +SKIP
...     return RawImage(np.loadtxt(path), pixel_size_nm=2.0, z_unit="nm")
>>> register_reader(".toy", read_toy)                                # doctest: +SKIP
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import AFMInputError, HybridTMDError
from .channels import ChannelSpec, canonical_channel, channel_keys, default_channel, resolve_channel
from .formats import gwy_channels, read_gwy, read_npy, read_npz, read_raster, read_tiff, tiff_channels
from .image import (
    HEIGHT_CHANNEL,
    AFMImage,
    check_height,
    check_pixel_size,
    is_foreign_length_unit,
    is_length_unit,
    unit_to_nm,
    warn_input,
)
from .limits import bounded_call
from .raw import RawImage
from .topostats import read_topostats, topostats_channels
from .vendor import (
    AFMREADER_LOADERS,
    SURFACE_TOPOGRAPHY_FORMATS,
    read_afmreader,
    read_surface_topography,
    surface_topography_channels,
)

TIFF_SUFFIXES = (".tif", ".tiff")
RASTER_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
#: Instrument formats (SurfaceTopography, TopoStats files, and AFMReader for the last two).
VENDOR_SUFFIXES = (*SURFACE_TOPOGRAPHY_FORMATS, ".topostats", *AFMREADER_LOADERS)

#: ``reader(path, channel) -> RawImage`` (a tuple of the same fields in the same order works too).
Reader = Callable[[Path, Any], RawImage]
#: ``lister(path) -> list[ChannelSpec]``: the channels of a multi-channel file, from its header.
ChannelLister = Callable[[Path], list[ChannelSpec]]

_READERS: dict[str, Reader] = {}
_LISTERS: dict[str, ChannelLister] = {}


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


def register_reader(suffixes: str | Iterable[str], reader: Reader, *, channels: ChannelLister | None = None) -> None:
    """Read files ending in ``suffixes`` (e.g. ``".xyz"`` or ``[".ome.tif", ".ome.tiff"]``; shell
    patterns such as ``".[0-9][0-9][0-9]"`` too) with ``reader``.

    ``reader(path: Path, channel: str | int | None)`` returns a :class:`RawImage` (see the module
    docstring); ``channels(path)``, when given, lists a multi-channel file's channels.
    Suffixes are case-insensitive and may contain several dots; a file is read by the reader of
    the longest registered suffix its name ends with. Registering a suffix that already has a
    reader (built-in or not) replaces that reader: the last registration wins. The suffixes join
    :data:`SUPPORTED_SUFFIXES` at once.
    """
    if not callable(reader):
        raise TypeError(f"reader must be callable as reader(path, channel), got {type(reader).__name__}")
    if channels is not None and not callable(channels):
        raise TypeError(f"channels must be callable as channels(path), got {type(channels).__name__}")
    for suffix in _normalise_suffixes(suffixes):
        _READERS[suffix] = reader
        _LISTERS.pop(suffix, None)
        if channels is not None:
            _LISTERS[suffix] = channels


def unregister_reader(suffixes: str | Iterable[str]) -> None:
    """Stop reading files ending in ``suffixes``; suffixes without a reader are ignored.

    A built-in reader removed or replaced this way comes back by registering it again
    (:func:`reader_for` returns it before the change).
    """
    for suffix in _normalise_suffixes(suffixes):
        _READERS.pop(suffix, None)
        _LISTERS.pop(suffix, None)


def registered_suffix(path: str | Path) -> str | None:
    """The longest registered suffix that the file name of ``path`` ends with (lower case), or
    None when no reader handles it."""
    name = Path(path).name.lower()
    literal = [s for s in _READERS if name.endswith(s) and len(name) > len(s)]
    if literal:
        return max(literal, key=len)
    patterns = [s for s in _READERS if any(c in s for c in "*?[") and fnmatch.fnmatchcase(name, "?*" + s)]
    return patterns[0] if patterns else None


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

#: Built-in readers that import their library first and then bound each third-party call
#: themselves: a time limit around the import would count the import (SurfaceTopography takes
#: seconds) and, when it strikes there, leave a half-imported module for the rest of the process.
_BOUND_INSIDE = frozenset({read_tiff, tiff_channels, read_gwy, gwy_channels, read_surface_topography,
                           surface_topography_channels, read_afmreader, read_topostats, topostats_channels})

register_reader(TIFF_SUFFIXES, read_tiff, channels=tiff_channels)
register_reader(".npy", read_npy)
register_reader(".npz", read_npz)
register_reader(".gwy", read_gwy, channels=gwy_channels)
register_reader(RASTER_SUFFIXES, read_raster)
register_reader(list(SURFACE_TOPOGRAPHY_FORMATS), read_surface_topography, channels=surface_topography_channels)
register_reader(".topostats", read_topostats, channels=topostats_channels)
register_reader(list(AFMREADER_LOADERS), read_afmreader)


# --------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------


def _read_raw(path: Path, channel: str | int | None) -> tuple[str, RawImage]:
    """Check the file, dispatch on its suffix and return (suffix, reader output); any parser
    failure becomes one :class:`AFMInputError` line naming the file."""
    suffix = _checked_suffix(path)
    reader = _READERS[suffix]
    try:
        if reader in _BOUND_INSIDE:
            return suffix, RawImage(*reader(path, channel))
        return suffix, RawImage(*bounded_call(lambda: reader(path, channel), path, f"reading the {suffix} file"))
    except HybridTMDError:
        raise
    except Exception as exc:  # any parser failure is a bad file, reported as one line
        raise AFMInputError(path, f"cannot read {suffix} file ({one_line(exc)})") from exc


def one_line(exc: BaseException) -> str:
    """``Type: first line of the message`` of an exception, for one-line reports."""
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__


def _checked_suffix(path: Path) -> str:
    """The registered suffix of an existing, non-empty regular file (AFMInputError otherwise)."""
    suffix = registered_suffix(path)
    try:
        exists, is_file = path.exists(), path.is_file()
    except (OSError, RuntimeError) as exc:  # symlink loops, names the file system refuses
        raise AFMInputError(path, f"cannot access the file ({one_line(exc)})") from None
    if not exists:
        raise AFMInputError(path, "file not found")
    if not is_file:
        raise AFMInputError(path, "not a regular file (a folder, FIFO, device or broken link)")
    if suffix is None:
        raise AFMInputError(path, f"unsupported file type {path.suffix.lower()!r}; "
                                  f"supported: {', '.join(SUPPORTED_SUFFIXES)}")
    if path.stat().st_size == 0:
        raise AFMInputError(path, "file is empty (0 bytes)")
    return suffix


def _values_in_unit(values: np.ndarray, path: Path, unit: Any, z_scale: float | None,
                    z_scale_required: bool) -> tuple[np.ndarray, str, str]:
    """(values converted, their unit: ``nm`` for lengths, the signal's own unit otherwise, the
    unit they were stored in); ``counts`` become nm once scaled."""
    if not isinstance(unit, str) or not unit.strip():
        raise AFMInputError(path, f"z unit must be a unit name such as 'nm' or 'm', got {unit!r}")
    if z_scale is not None:
        scale = float(z_scale)
        if not np.isfinite(scale) or scale <= 0:
            raise AFMInputError(path, f"z_scale must be a positive number (nm per count), got {z_scale!r}")
    if unit == "counts":
        if z_scale is None:
            if z_scale_required:
                raise AFMInputError(path, "grey-level image: pass z_scale (nm per grey level) and pixel_size_nm")
            warn_input(f"{path}: integer heights without a z scale are taken as nm; pass z_scale=nm per count")
        return values * (1.0 if z_scale is None else float(z_scale)), "nm", "counts"
    if z_scale is not None:
        values = values * float(z_scale)
    if is_length_unit(unit):
        return values * unit_to_nm(unit), "nm", unit
    if is_foreign_length_unit(unit):
        raise AFMInputError(path, f"z unit {unit!r} is a length no AFM height is stored in (expected pm, Å, nm, "
                                  "µm, mm, cm or m)")
    return values, unit.strip(), unit.strip()


def load_image(
    path: str | Path,
    *,
    pixel_size_nm: float | Sequence[float] | None = None,
    channel: str | int | None = None,
    z_unit: str | None = None,
    z_scale: float | None = None,
) -> AFMImage:
    """Read one channel of an AFM file into an :class:`AFMImage` (heights in nm).

    Parameters
    ----------
    path : str or Path
        File to read; the reader is chosen by suffix, and by content where the suffix is
        ambiguous (a Park Systems ``.tiff``). See the module docstring and :func:`register_reader`.
    pixel_size_nm : float or (float, float), optional
        Pixel size in nm, ``(x, y)``. Overrides what the file says; required when the file says
        nothing (``.npy``, PNG/JPEG, uncalibrated TIFF).
    channel : str or int, optional
        Channel by index (:func:`list_channels`), name as the file writes it, or canonical name
        (``height_sensor``, ``phase``...; :mod:`hybridtmd.io.channels`). Default: the topography
        channel by the documented rule of :mod:`hybridtmd.io.channels`. The name read is stored
        in :attr:`AFMImage.channel`.
    z_unit : str, optional
        Length unit of the stored heights (``m``, ``um``, ``nm``, ``A``...) when the file does not
        say; default nm. A pixel size or unit that contradicts the file's is used with an
        :class:`~hybridtmd.errors.AFMInputWarning` naming the file and both values.
    z_scale : float, optional
        Nanometres per stored count for integer data (PNG/JPEG grey levels, 8/16-bit TIFF).
        Required for PNG/JPEG.

    Raises
    ------
    AFMInputError
        The file is missing, unreadable, truncated, too large (``HYBRIDTMD_MAX_PIXELS``), takes
        too long to parse (``HYBRIDTMD_READ_TIMEOUT``), is not a 2-D map, too small, constant, has
        too many NaN/inf pixels, unusable metadata or no pixel size. The message names the file
        and the reason.
    MissingDependencyError
        An AFMReader format was requested without the ``vendor`` extra installed.
    """
    path = Path(path)
    suffix, raw = _read_raw(path, channel)
    try:
        return _to_image(path, suffix, raw, channel, pixel_size_nm, z_unit, z_scale)
    except HybridTMDError:
        raise
    except Exception as exc:  # odd metadata values: still this file's reason, never a batch traceback
        raise AFMInputError(path, f"unusable metadata in the {suffix} file ({one_line(exc)})") from exc


def _to_image(path: Path, suffix: str, raw: RawImage, channel, pixel_size_nm, z_unit, z_scale) -> AFMImage:
    """The reader's output validated and converted: heights in nm, other signals in their unit."""
    values = check_height(raw.data, path)
    pixel = pixel_size_nm if pixel_size_nm is not None else raw.pixel_size_nm
    if pixel is None:
        raise AFMInputError(path, "no pixel size in the file; pass pixel_size_nm=...")
    pixel = check_pixel_size(pixel, str(path))
    if z_unit is not None and not is_length_unit(z_unit):
        raise AFMInputError(path, f"z_unit must be a length unit such as 'nm', 'um' or 'm', got {z_unit!r}")
    _warn_overrides(path, raw, pixel if pixel_size_nm is not None else None, z_unit)
    values, unit, stored = _values_in_unit(values, path, z_unit or raw.z_unit or "nm", z_scale, raw.z_scale_required)
    meta = {**(raw.metadata or {}), "format": suffix.lstrip("."), "original_z_unit": stored}
    name = meta.pop("channel", None) or (channel if isinstance(channel, str) else None) or "Height"
    meta["channel_key"] = canonical_channel(str(name))
    return AFMImage(height=values, pixel_size_nm=pixel, channel=str(name), source=str(path), metadata=meta,
                    z_unit=unit)


def _warn_overrides(path: Path, raw: RawImage, pixel: tuple[float, float] | None, z_unit: str | None) -> None:
    """Warn, naming the file and both values, when a pixel size or z unit given by the caller
    replaces a different one the file declares (the caller's value is used: it was asked for)."""
    if pixel is not None and raw.pixel_size_nm is not None:
        declared = check_pixel_size(raw.pixel_size_nm, str(path))
        if not np.allclose(pixel, declared, rtol=1e-6, atol=0):
            warn_input(f"{path}: pixel size {pixel[0]:.4g} x {pixel[1]:.4g} nm given overrides the "
                       f"{declared[0]:.4g} x {declared[1]:.4g} nm the file declares")
    stored = raw.z_unit if isinstance(raw.z_unit, str) and raw.z_unit != "counts" else None
    if z_unit is None or stored is None:
        return
    if not is_length_unit(stored):
        warn_input(f"{path}: z unit {z_unit!r} given overrides the file's {stored!r} (its values are not lengths)")
    elif unit_to_nm(z_unit) != unit_to_nm(stored):
        warn_input(f"{path}: z unit {z_unit!r} given overrides the {stored!r} the file declares (heights "
                   f"x{unit_to_nm(z_unit) / unit_to_nm(stored):.4g})")


def _channel_specs(path: Path) -> list[ChannelSpec]:
    """The channels of a file: its format's lister, or the one channel its reader returns."""
    suffix = _checked_suffix(path)
    lister = _LISTERS.get(suffix)
    if lister is not None:
        try:
            if lister in _BOUND_INSIDE:
                return list(lister(path))
            return list(bounded_call(lambda: lister(path), path, f"reading the {suffix} header"))
        except HybridTMDError:
            raise
        except Exception as exc:
            raise AFMInputError(path, f"cannot read {suffix} file ({one_line(exc)})") from exc
    _, raw = _read_raw(path, None)
    shape = np.shape(np.squeeze(np.asarray(raw.data)))
    pixels = (int(shape[0]), int(shape[1])) if len(shape) == 2 else None
    scan = None
    if raw.pixel_size_nm is not None and pixels is not None:
        px, py = check_pixel_size(raw.pixel_size_nm, str(path))
        scan = (px * pixels[1], py * pixels[0])
    name = str((raw.metadata or {}).get("channel") or "Height")
    unit = raw.z_unit if isinstance(raw.z_unit, str) else None
    return [ChannelSpec(0, name, unit or "nm", pixels, scan, None, unit in (None, "counts") or is_length_unit(unit))]


def list_channels(path: str | Path):
    """Every channel of a file as a DataFrame, from its header where the format allows.

    Columns: ``index``, ``name`` (as the file writes it), ``key`` (canonical name, unique in the
    file; the keys of :func:`load_channels`), ``unit`` (of the values: a length for heights,
    ``V``, ``deg``... otherwise), ``rows``, ``cols``, ``scan_x_nm``, ``scan_y_nm`` (NaN when the
    file does not say), ``direction`` (``trace``/``retrace`` where the file says), ``default``
    (the channel :func:`load_image` reads without ``channel``).
    """
    import pandas as pd

    path = Path(path)
    specs = _channel_specs(path)
    chosen = default_channel(specs)
    rows = [{
        "index": c.index, "name": c.name, "key": key, "unit": c.unit,
        "rows": c.pixels[0] if c.pixels else None, "cols": c.pixels[1] if c.pixels else None,
        "scan_x_nm": c.scan_size_nm[0] if c.scan_size_nm else np.nan,
        "scan_y_nm": c.scan_size_nm[1] if c.scan_size_nm else np.nan,
        "direction": c.direction, "default": chosen is not None and c.index == chosen.index,
    } for c, key in zip(specs, channel_keys(specs), strict=True)]
    return pd.DataFrame(rows, columns=["index", "name", "key", "unit", "rows", "cols", "scan_x_nm", "scan_y_nm",
                                       "direction", "default"])


def load_channels(
    path: str | Path,
    channels: Sequence[str] | None = None,
    *,
    channel: str | int | None = None,
    pixel_size_nm: float | Sequence[float] | None = None,
    z_unit: str | None = None,
    z_scale: float | None = None,
) -> dict[str, AFMImage]:
    """Channels of a file, keyed by canonical name (the ``key`` column of :func:`list_channels`:
    ``height``, ``height_sensor``, ``phase``, ``amplitude_retrace``...), in file order.

    Heights are in nm; other signals keep their own unit (:attr:`AFMImage.z_unit`). Channels of
    one file share the pixel grid. ``z_unit`` and ``z_scale`` apply to the length channels only.

    ``channels`` (e.g. ``["height", "phase"]``, what a multichannel model needs) reads only
    those, keyed as asked: each is found by key, then by canonical name
    (:func:`~hybridtmd.io.channels.resolve_channel`); ``height`` is ``channel`` when given, else
    the file's channel keyed ``height``, else its default topography channel (the rule of
    :mod:`hybridtmd.io.channels`). A file lacking one of them is an :class:`AFMInputError`
    naming the channel and listing the file's channels. Without ``channels``: every channel
    (``channel`` is then unused).
    """
    path = Path(path)
    specs = _channel_specs(path)
    keys = channel_keys(specs)
    if channels is None:
        wanted = list(zip(keys, specs, strict=True))
    else:
        wanted = [(name, _wanted_channel(path, specs, keys, name, channel)) for name in dict.fromkeys(channels)]
    out: dict[str, AFMImage] = {}
    for key, spec in wanted:
        lengths = {"z_unit": z_unit, "z_scale": z_scale} if spec.is_length else {}
        image = load_image(path, pixel_size_nm=pixel_size_nm, channel=spec.index if len(specs) > 1 else None,
                           **lengths)
        image.metadata["channel_key"] = keys[specs.index(spec)]
        out[key] = image
    return out


def _wanted_channel(path: Path, specs: list[ChannelSpec], keys: list[str], name: str,
                    height: str | int | None) -> ChannelSpec:
    """The channel of a file that :func:`load_channels` reads as ``name``."""
    is_height = name.casefold() == HEIGHT_CHANNEL
    try:
        if is_height and height is not None:
            return resolve_channel(specs, height)
        for spec, key in zip(specs, keys, strict=True):
            if key == name.casefold():
                return spec
        return resolve_channel(specs, None if is_height else name)
    except ValueError:
        listing = ", ".join(f"{k} ({c.name})" for c, k in zip(specs, keys, strict=True))
        what = f"height channel {height!r}" if is_height and height is not None else f"{name!r} channel"
        raise AFMInputError(path, f"has no {what} (its channels: {listing})") from None


__all__ = [
    "ChannelLister",
    "RASTER_SUFFIXES",
    "SUPPORTED_SUFFIXES",
    "TIFF_SUFFIXES",
    "VENDOR_SUFFIXES",
    "RawImage",
    "Reader",
    "list_channels",
    "load_channels",
    "load_image",
    "one_line",
    "reader_for",
    "register_reader",
    "registered_suffix",
    "unregister_reader",
]
