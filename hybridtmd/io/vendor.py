"""Instrument formats: SurfaceTopography (core dependency) for every format it reads, AFMReader
(the ``vendor`` extra) for two it lacks (``.asd`` high-speed AFM, ``.h5-jpk``).

Every third-party read is bounded: the file's signature (and, for Nanoscope files, the end of
the header) is checked first, the declared pixel count is checked against the pixel limit
before any data is decoded, and the parse runs under a time limit
(:func:`~hybridtmd.io.limits.bounded_call`).
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import AFMInputError, MissingDependencyError
from .channels import ChannelSpec, channel_direction, implied_directions, resolve_channel
from .igor import ibw_label_names
from .image import is_length_unit, unit_to_nm, warn_input
from .integrity import check_tiff_complete
from .limits import bounded_call, check_declared_size, quiet_third_party_logs
from .raw import RawImage

#: SurfaceTopography format of each suffix read through it (``.000``-``.999`` are Nanoscope files).
SURFACE_TOPOGRAPHY_FORMATS: dict[str, str] = {
    ".spm": "di", ".di": "di", ".[0-9][0-9][0-9]": "di", ".ibw": "ibw", ".nid": "ezd", ".ezd": "ezd",
    ".mi": "mi", ".jpk": "jpk", ".stp": "wsxm", ".top": "wsxm", ".x3p": "x3p", ".opd": "opd",
    ".sur": "sur", ".plu": "plu", ".mdt": "mdt", ".sdf": "sdf", ".datx": "datx", ".vk4": "vk", ".vk6": "vk",
    ".vk7": "vk", ".zon": "zon", ".al3d": "al3d", ".lext": "lext", ".oir": "oir", ".nms": "nms", ".frt": "frt",
}
#: AFMReader module, loader and default (topography) channel of each suffix SurfaceTopography
#: lacks (``.asd``: ``TP``, topography; ``.h5-jpk``: ``height_trace``). ``.topostats`` is read
#: with h5py (:mod:`.topostats`).
AFMREADER_LOADERS = {".asd": ("asd", "load_asd", "TP"), ".h5-jpk": ("h5_jpk", "load_h5jpk", "height_trace")}
_HEADER_END = b"\\*File list end"
#: Vendor of each SurfaceTopography format, for files whose header does not name it.
FORMAT_VENDORS = {"di": "Bruker", "ps": "Park Systems", "mi": "Agilent (Molecular Imaging)", "ezd": "Nanosurf",
                  "ibw": "Asylum Research", "jpk": "JPK (Bruker)", "wsxm": "WSxM", "mdt": "NT-MDT"}


def _import_surface_topography() -> Any:
    import SurfaceTopography.IO as st_io  # ~3 s the first time: imported only when a vendor file is read

    quiet_third_party_logs()
    return st_io


def _check_signature(path: Path, fmt: str, st_io: Any) -> None:
    """Refuse a file whose first bytes rule out its format, a Nanoscope file whose header never
    ends (a parser would search for the end forever) and a JPK file (a TIFF) cut short."""
    with open(path, "rb") as fh:
        head = fh.read(max(int(getattr(st_io, "MAGIC_BUFFER_SIZE", 4096)), 65536))
    reader_class = st_io.lookup_reader_by_format[fmt]
    verdict = reader_class.can_read(head)
    if getattr(verdict, "value", verdict) == "no":
        raise AFMInputError(path, f"not a {reader_class.name()} file (its first bytes are not that format's signature)")
    if fmt == "jpk":
        check_tiff_complete(path)
    if fmt == "di":
        declared = re.search(rb"\\Data length:\s*(\d+)", head)
        header_length = int(declared.group(1)) if declared else len(head)
        with open(path, "rb") as fh:
            header = fh.read(min(header_length, 64 * 2**20))
        if _HEADER_END not in header:
            raise AFMInputError(path, "Nanoscope header has no '\\*File list end' line (truncated or not a "
                                      "Nanoscope file)")


#: ``\@Sens. ForceSens: V 0.006000000 V/Arb``: a Nanoscope soft scale (name, value, unit per hard unit).
_SOFT_SCALE = re.compile(rb"\\@([^:\r\n]+):\s*V\s+([-+0-9.eE]+)[ \t]*([^\r\n]*)")


def _soft_scales(path: Path) -> dict[str, tuple[float, str]]:
    """The soft scales a Nanoscope header declares, by lower-case name (``sens. forcesens``)."""
    with open(path, "rb") as fh:
        head = fh.read(65536)
    declared = re.search(rb"\\Data length:\s*(\d+)", head)
    with open(path, "rb") as fh:
        header = fh.read(min(int(declared.group(1)) if declared else len(head), 64 * 2**20))
    header = header.split(_HEADER_END, 1)[0]
    return {name.decode("latin-1").strip().lower(): (float(value), unit.decode("latin-1").strip())
            for name, value, unit in _SOFT_SCALE.findall(header) if value.strip(b"+-.eE")}


def _data_unit(channel: Any, raw: dict, soft_scales: dict[str, tuple[float, str]]) -> tuple[str | None, float]:
    """(unit of the values, factor from the values SurfaceTopography returns to that unit).

    Nanoscope channels that are not lengths come unscaled (raw counts): their
    ``'@2:Z scale'`` entry gives the hard scale, e.g. ``V [Sens. Phase] (0.005493164 º/LSB)
    359.9945 º`` (359.9945 º per 2^(8 x bytes/pixel) counts), and the soft scale it names in
    brackets, when its unit is per the hard unit (``Sens. ForceSens: V 0.006 V/Arb``), the unit.
    """
    unit = channel.unit
    if not isinstance(unit, tuple):
        return (unit if channel.is_height_channel else channel.data_unit) or unit, 1.0
    scale = str(raw.get("@2:z scale", raw.get("@4:z scale", "")))
    found = re.search(r"\)\s*([-+0-9.eE]+)\s*(\S+)\s*$", scale)
    if not found:
        return (None, 1.0) if unit[1] is None else (f"{unit[1]} (unscaled counts)", 1.0)
    bytes_per_pixel = int(raw.get("bytes/pixel", 2) or 2)
    hard = float(found.group(1)) / 256.0**bytes_per_pixel
    hard_unit = found.group(2).replace("º", "deg").replace("°", "deg")
    quantity = re.match(r"\s*\w\s*\[([^\]]*)\]", scale)
    soft = soft_scales.get(quantity.group(1).strip().lower()) if quantity else None
    if unit[1] is not None and soft is not None and soft[1].endswith(f"/{found.group(2)}"):
        return soft[1].rsplit("/", 1)[0].strip() or unit[1], hard * soft[0]
    if unit[1] is not None:  # a soft unit whose scale is not in the header: say so, never a false V
        return f"{unit[1]} (unscaled counts)", 1.0
    return hard_unit, hard


def _spec(channel: Any, name: str, soft_scales: dict[str, tuple[float, str]]) -> ChannelSpec:
    raw = channel.info.get("raw_metadata") or {}
    unit, _ = _data_unit(channel, raw if isinstance(raw, dict) else {}, soft_scales)
    lateral = channel.unit[0] if isinstance(channel.unit, tuple) else channel.unit
    nx, ny = (tuple(channel.nb_grid_pts) + (1,))[:2]
    scan = None
    if channel.physical_sizes is not None and lateral and len(channel.physical_sizes) == 2:
        factor = unit_to_nm(str(lateral))
        scan = (float(channel.physical_sizes[0]) * factor, float(channel.physical_sizes[1]) * factor)
    hint = raw.get("line direction") if isinstance(raw, dict) else None
    return ChannelSpec(index=int(channel.index), name=name, unit=unit, pixels=(int(ny), int(nx)),
                       scan_size_nm=scan, direction=channel_direction(name, hint),
                       is_length=unit is not None and is_length_unit(unit))


def _metadata(channel: Any, fmt: str) -> dict[str, Any]:
    info = dict(channel.info or {})
    meta: dict[str, Any] = {"reader": "SurfaceTopography", "vendor_format": fmt}
    instrument = info.get("instrument") or {}
    instrument = instrument if isinstance(instrument, dict) else {"name": instrument}
    if instrument.get("name"):
        meta["instrument"] = str(instrument["name"])
    vendor = instrument.get("vendor") or FORMAT_VENDORS.get(fmt)
    if vendor:
        meta["vendor"] = str(vendor)
    if instrument:
        meta["instrument_info"] = {str(k): str(v) for k, v in instrument.items()}
    if info.get("acquisition_time") is not None:
        when = info["acquisition_time"]
        meta["acquisition_time"] = when.isoformat() if hasattr(when, "isoformat") else str(when)
    if info.get("raw_metadata") is not None:
        meta["raw_header"] = info["raw_metadata"]
    return meta


def _open(path: Path, fmt: str) -> tuple[Any, list[Any], list[ChannelSpec], dict[str, tuple[float, str]]]:
    """(SurfaceTopography reader, its 2-D channels, their specs, the file's Nanoscope soft
    scales), header read under the time limit. Asylum channels are named as the file writes
    them (:mod:`.igor`)."""
    st_io = _import_surface_topography()
    _check_signature(path, fmt, st_io)
    names = ibw_label_names(path) if fmt == "ibw" else {}
    soft_scales = _soft_scales(path) if fmt == "di" else {}

    def open_file():
        reader = st_io.open_topography(str(path), format=fmt)
        channels = [c for c in reader.channels if c.dim == 2]
        specs = [_spec(c, names.get(str(c.name), str(c.name)), soft_scales) for c in channels]
        return reader, channels, implied_directions(specs)

    reader, channels, specs = bounded_call(open_file, path, f"reading the {fmt} header")
    if not specs:
        raise AFMInputError(path, "file holds no 2-D image channel (line scans are not height maps)")
    return reader, channels, specs, soft_scales


def surface_topography_channels(path: Path, fmt: str | None = None) -> list[ChannelSpec]:
    """The image channels of a file SurfaceTopography reads, from its header only."""
    reader, _, specs, _ = _open(path, fmt or _format_of(path))
    _close(reader)
    return specs


def _format_of(path: Path) -> str:
    name = path.name.lower()
    if re.search(r"\.\d{3}$", name):
        return "di"
    for suffix, fmt in sorted(SURFACE_TOPOGRAPHY_FORMATS.items(), key=lambda kv: -len(kv[0])):
        if name.endswith(suffix):
            return fmt
    raise AFMInputError(path, "no SurfaceTopography format for this suffix")


def _close(reader: Any) -> None:
    close = getattr(reader, "close", None)
    if callable(close):
        close()


def read_surface_topography(path: Path, channel: str | int | None, fmt: str | None = None) -> RawImage:
    """One channel of a file through SurfaceTopography: values as stored in their unit (heights
    in a length unit, other signals in V, deg...), pixel size from the physical size, metadata."""
    fmt = fmt or _format_of(path)
    reader, channels, specs, soft_scales = _open(path, fmt)
    try:
        try:
            spec = resolve_channel(specs, channel)
        except ValueError as exc:
            raise AFMInputError(path, str(exc)) from None
        check_declared_size(spec.pixels, path)
        info = channels[specs.index(spec)]
        raw = info.info.get("raw_metadata") or {}
        unit, factor = _data_unit(info, raw if isinstance(raw, dict) else {}, soft_scales)
        topography = bounded_call(lambda: reader.topography(channel_index=info.index), path, "reading the data")
        values = np.ma.filled(np.ma.asarray(topography.heights(), dtype=np.float64), np.nan).T * factor
    finally:
        _close(reader)
    rows, cols = values.shape
    pixel = None if spec.scan_size_nm is None else (spec.scan_size_nm[0] / cols, spec.scan_size_nm[1] / rows)
    meta = {**_metadata(info, fmt), "channel": spec.name, "channel_index": spec.index, "direction": spec.direction}
    return RawImage(values, pixel, unit or "nm", meta)


def read_afmreader(path: Path, channel: str | int | None) -> RawImage:
    """``.asd`` and ``.h5-jpk`` through AFMReader (the ``vendor`` extra); movies
    give their first frame."""
    suffix = next(s for s in AFMREADER_LOADERS if path.name.lower().endswith(s))
    try:
        import AFMReader  # noqa: F401
    except ImportError:
        raise MissingDependencyError(
            f"reading {suffix} files needs AFMReader; install the extra: pip install 'hybridtmd[vendor]'", path
        ) from None
    module_name, func, default = AFMREADER_LOADERS[suffix]
    loader = getattr(importlib.import_module(f"AFMReader.{module_name}"), func)
    quiet_third_party_logs()  # after the import: each AFMReader module turns its logger on when imported
    wanted = str(channel if channel is not None else default or "Height")
    result = bounded_call(lambda: loader(path) if default is None else loader(path, channel=wanted),
                          path, f"reading the {suffix} file")
    data, px_to_nm = (result["image"], result["pixel_to_nm_scaling"]) if isinstance(result, dict) else result[:2]
    meta: dict[str, Any] = {"reader": "AFMReader", "channel": wanted}
    if np.ndim(data) == 3:  # high-speed AFM movies: first frame
        meta["n_frames"] = int(np.shape(data)[0])
        warn_input(f"{path}: {meta['n_frames']} frames, using the first")
        data = data[0]
    return RawImage(data, (float(px_to_nm), float(px_to_nm)), "nm", meta)  # AFMReader returns nm


__all__ = [
    "AFMREADER_LOADERS",
    "FORMAT_VENDORS",
    "SURFACE_TOPOGRAPHY_FORMATS",
    "read_afmreader",
    "read_surface_topography",
    "surface_topography_channels",
]
