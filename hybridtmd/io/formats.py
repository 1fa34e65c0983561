"""Built-in readers of open formats: TIFF (hybridtmd's own, ImageJ, plain exports; Park Systems
TIFFs are detected from their content and read as instrument files), NumPy ``.npy``/``.npz``,
PNG/JPEG/BMP grey levels and Gwyddion ``.gwy``.

Each reader checks the image size its file declares against the pixel limit before decoding
(:func:`~hybridtmd.io.limits.check_declared_size`).
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from .._utils.files import json_loads
from ..errors import AFMInputError
from .channels import ChannelSpec, resolve_channel
from .image import unit_to_nm, warn_input
from .integrity import check_gwy_complete, check_tiff_complete
from .limits import bounded_call, check_declared_size
from .raw import RawImage
from .vendor import read_surface_topography

#: Park Systems' private TIFF tag and the value that marks their files.
PARK_TAG, PARK_MAGIC = 50432, 0x0E031301


def _tiff_pixel_size(tif, page) -> tuple[float, float] | None:
    """Pixel size in nm from ImageJ metadata or resolution tags, None when not physical."""
    tags = page.tags

    def resolution(name: str) -> float | None:
        tag = tags.get(name)
        if tag is None:
            return None
        num, den = tag.value if isinstance(tag.value, tuple) else (tag.value, 1)
        return num / den if num and den else None

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


def is_park_tiff(path: Path) -> bool:
    """Whether a TIFF is a Park Systems file (their private tag carries their magic number)."""
    import tifffile

    with tifffile.TiffFile(path) as tif:
        tag = tif.pages[0].tags.get(PARK_TAG) if tif.pages else None
        return tag is not None and tag.value == PARK_MAGIC


def _description_metadata(page) -> dict[str, Any]:
    """hybridtmd's JSON description (written by :func:`~hybridtmd.io.save_image`), else empty."""
    text = getattr(page, "description", "") or ""
    if not text.lstrip().startswith("{"):
        return {}
    try:
        meta = json_loads(text)
    except ValueError:
        return {}
    return {k: v for k, v in meta.items() if k != "shape"} if isinstance(meta, dict) else {}


def _tiff_pages(tif) -> list:
    """The image pages, without thumbnails (reduced-resolution copies some exporters add)."""
    return [p for p in tif.pages if getattr(p, "shape", None) is not None and not getattr(p, "is_reduced", False)]


def tiff_channels(path: Path) -> list[ChannelSpec]:
    """A multi-page TIFF's pages as channels ``page 0``, ``page 1``...; one channel otherwise."""
    import tifffile

    check_tiff_complete(path)
    if is_park_tiff(path):
        from .vendor import surface_topography_channels

        return surface_topography_channels(path, "ps")
    with tifffile.TiffFile(path) as tif:
        pages = _tiff_pages(tif)
        names = [f"page {i}" for i in range(len(pages))] if len(pages) > 1 else [
            str(_description_metadata(pages[0]).get("channel", "Height")) if pages else "Height"]
        return [ChannelSpec(i, name, None, tuple(int(d) for d in p.shape[:2]), None)
                for i, (name, p) in enumerate(zip(names, pages, strict=False))]


def read_tiff(path: Path, channel: str | int | None) -> RawImage:
    """TIFF: Park Systems files through SurfaceTopography; others one page (a multi-page TIFF needs
    ``channel`` = its page index), pixel size from hybridtmd's JSON description, ImageJ or
    resolution tags."""
    import tifffile

    check_tiff_complete(path)
    if is_park_tiff(path):
        return read_surface_topography(path, channel, "ps")
    with tifffile.TiffFile(path) as tif:
        pages = _tiff_pages(tif)
        if not pages:
            raise AFMInputError(path, "TIFF has no image pages")
        index = 0
        if len(pages) > 1:
            specs = tiff_channels(path)
            if channel is None:
                raise AFMInputError(path, f"TIFF has {len(pages)} pages (an image stack or channels saved as pages); "
                                          f"pass channel=<page index 0..{len(pages) - 1}> to read one")
            try:
                index = resolve_channel(specs, channel).index
            except ValueError as exc:
                raise AFMInputError(path, str(exc)) from None
        page = pages[index]
        check_declared_size(page.shape, path)
        data = page.asarray()
        meta = _description_metadata(pages[0])
        pixel = meta.pop("pixel_size_nm", None)
        if pixel is None:
            pixel = _tiff_pixel_size(tif, page)
        z_unit = meta.pop("z_unit", None)
        if z_unit is None and data.dtype.kind in "iu":
            z_unit = "counts"
    if len(pages) > 1:
        meta["channel"] = f"page {index}"
    return RawImage(data, pixel, z_unit, meta)


def _check_magic(path: Path, magic: bytes, what: str) -> None:
    """Reject a file whose first bytes are not ``magic`` (np.load would call it pickled data and
    suggest loading it unsafely)."""
    with open(path, "rb") as fh:
        if fh.read(len(magic)) != magic:
            raise AFMInputError(path, f"not a {what} file (its first bytes are not the {what} signature)")


def _npy_header(fh) -> tuple[tuple[int, ...], np.dtype]:
    """(shape, dtype) from a .npy stream's header, without reading the data."""
    version = np.lib.format.read_magic(fh)
    read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    shape, _, dtype = read(fh)
    return shape, dtype


def read_npy(path: Path, channel: str | int | None) -> RawImage:
    """A bare NumPy array (no pixel size); pickled objects are refused."""
    _check_magic(path, b"\x93NUMPY", ".npy")
    with open(path, "rb") as fh:
        shape, _ = _npy_header(fh)
    check_declared_size(shape, path)
    return RawImage(np.load(path, allow_pickle=False))


def _npz_text(npz, key: str, path: Path) -> str | None:
    """A one-value text entry of an archive (``z_unit``, ``channel``), None when absent."""
    if key not in npz.files:
        return None
    value = npz[key]
    if value.dtype.kind not in "US" or value.size != 1:
        raise AFMInputError(path, f"npz entry {key!r} must be one text value, got {value.dtype} {value.tolist()!r}")
    return str(value.reshape(()).item())


def read_npz(path: Path, channel: str | int | None) -> RawImage:
    """A NumPy archive: ``height`` (or ``channel``, ``image``, ``data``, or its only array), and
    optional ``pixel_size_nm``, ``z_unit`` and ``channel`` entries."""
    _check_magic(path, b"PK", ".npz (zip)")
    with np.load(path, allow_pickle=False) as npz:
        keys = list(npz.files)
        wanted = channel if isinstance(channel, str) else None
        key = next((k for k in ("height", wanted, "image", "data") if k in keys), None)
        if key is None:
            arrays = [k for k in keys if k not in ("pixel_size_nm", "z_unit", "channel")]
            if len(arrays) != 1:
                raise AFMInputError(path, f"npz has arrays {keys}; expected one named 'height'")
            key = arrays[0]
        with zipfile.ZipFile(path) as archive, archive.open(f"{key}.npy") as member:
            shape, _ = _npy_header(member)
        check_declared_size(shape, path)
        data = npz[key]
        pixel = None
        if "pixel_size_nm" in keys:
            value = npz["pixel_size_nm"]
            if value.dtype.kind not in "iuf":
                raise AFMInputError(path, f"npz pixel_size_nm must be numbers in nm, got {value.tolist()!r}")
            pixel = tuple(np.atleast_1d(value).astype(float).tolist())
        z_unit, name = _npz_text(npz, "z_unit", path), _npz_text(npz, "channel", path)
    return RawImage(data, pixel, z_unit, {"channel": name} if name else {})


def read_raster(path: Path, channel: str | int | None) -> RawImage:
    """PNG/JPEG/BMP grey levels (colour converted to luminance with a warning); needs ``z_scale``."""
    from PIL import Image

    with Image.open(path) as img:
        check_declared_size(img.size[::-1], path)
        img.load()
        if img.mode not in ("L", "I", "I;16", "I;16B", "I;16L", "F"):
            warn_input(f"{path}: {img.mode} image converted to grey (luminance); AFM heights should be saved as grey")
            img = img.convert("L")
        data = np.asarray(img)
    return RawImage(data, None, "counts", {}, z_scale_required=True)


def _gwy_fields(path: Path) -> dict[str, Any]:
    import gwyfile
    from gwyfile.util import get_datafields

    check_gwy_complete(path)
    fields = bounded_call(lambda: get_datafields(gwyfile.load(str(path))), path, "reading the Gwyddion file")
    if not fields:
        raise AFMInputError(path, "Gwyddion file holds no data fields")
    return fields


def _gwy_unit(field: Any, name: str) -> str:
    """A data field's lateral (``si_unit_xy``, metres when absent) or value unit (``si_unit_z``:
    ``dimensionless`` when absent or empty, as Gwyddion reads it: a log or ratio channel)."""
    unit = field[name].unitstr if field.get(name) is not None else None
    return unit or ("m" if name == "si_unit_xy" else "dimensionless")


def _gwy_specs(fields: dict[str, Any]) -> list[ChannelSpec]:
    from .image import is_length_unit

    specs = []
    for i, (title, df) in enumerate(fields.items()):
        factor = unit_to_nm(_gwy_unit(df, "si_unit_xy"))
        unit = _gwy_unit(df, "si_unit_z")
        rows, cols = np.shape(df.data)
        specs.append(ChannelSpec(i, str(title), unit, (int(rows), int(cols)),
                                 (df.xreal * factor, df.yreal * factor), is_length=is_length_unit(unit)))
    return specs


def gwy_channels(path: Path) -> list[ChannelSpec]:
    """The data fields of a Gwyddion file, by title."""
    return _gwy_specs(_gwy_fields(path))


def read_gwy(path: Path, channel: str | int | None) -> RawImage:
    """Gwyddion ``.gwy``: the data field asked for (title, canonical name or index; default by the
    topography rule of :mod:`hybridtmd.io.channels`)."""
    fields = _gwy_fields(path)
    try:
        spec = resolve_channel(_gwy_specs(fields), channel)
    except ValueError as exc:
        raise AFMInputError(path, str(exc)) from None
    df = fields[spec.name]
    data = np.asarray(df.data)
    factor = unit_to_nm(_gwy_unit(df, "si_unit_xy"))
    pixel = (df.xreal * factor / data.shape[1], df.yreal * factor / data.shape[0])
    return RawImage(data, pixel, _gwy_unit(df, "si_unit_z"), {"channel": spec.name, "gwy_channel": spec.name})


__all__ = [
    "PARK_MAGIC",
    "PARK_TAG",
    "gwy_channels",
    "is_park_tiff",
    "read_gwy",
    "read_npy",
    "read_npz",
    "read_raster",
    "read_tiff",
    "tiff_channels",
]
