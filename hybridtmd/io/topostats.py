"""TopoStats ``.topostats`` files (HDF5, written by the TopoStats pipeline), read with h5py.

A file holds the processed (levelled, flattened) height map ``image`` and, from TopoStats file
version 0.2, the height map as it came from the instrument, ``image_original``; both are in nm,
with one ``pixel_to_nm_scaling``. Each is a channel named as the file names it; ``image`` is
the default (the first channel in a length unit). h5py comes with SurfaceTopography, so these
files need no extra (AFMReader, which reads them too, returns ``image`` only).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import AFMInputError
from .channels import ChannelSpec, resolve_channel
from .limits import bounded_call, check_declared_size
from .raw import RawImage

#: The height maps of a .topostats file, in the order they are listed.
TOPOSTATS_IMAGES = ("image", "image_original")
_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"


def _open(path: Path):
    import h5py

    with open(path, "rb") as fh:
        if fh.read(len(_HDF5_MAGIC)) != _HDF5_MAGIC:
            raise AFMInputError(path, "not a .topostats file (its first bytes are not the HDF5 signature)")
    return bounded_call(lambda: h5py.File(path, "r"), path, "opening the .topostats file")


def _pixel_nm(handle, path: Path) -> float:
    if "pixel_to_nm_scaling" not in handle:
        raise AFMInputError(path, ".topostats file has no 'pixel_to_nm_scaling'")
    return float(np.asarray(handle["pixel_to_nm_scaling"][()]))


def _specs(handle, path: Path) -> list[ChannelSpec]:
    import h5py

    names = [n for n in TOPOSTATS_IMAGES if isinstance(handle.get(n), h5py.Dataset) and handle[n].ndim == 2]
    if not names:
        raise AFMInputError(path, f".topostats file holds no 2-D {' or '.join(TOPOSTATS_IMAGES)} dataset")
    pixel = _pixel_nm(handle, path)
    specs = []
    for i, name in enumerate(names):
        rows, cols = handle[name].shape
        specs.append(ChannelSpec(i, name, "nm", (int(rows), int(cols)), (cols * pixel, rows * pixel)))
    return specs


def topostats_channels(path: Path) -> list[ChannelSpec]:
    """``image`` and, where the file has it, ``image_original``, from the HDF5 header."""
    with _open(path) as handle:
        return _specs(handle, path)


def read_topostats(path: Path, channel: str | int | None) -> RawImage:
    """One height map of a .topostats file (``image`` by default), in nm."""
    with _open(path) as handle:
        specs = _specs(handle, path)
        try:
            spec = resolve_channel(specs, channel)
        except ValueError as exc:
            raise AFMInputError(path, str(exc)) from None
        check_declared_size(spec.pixels, path)
        data = bounded_call(lambda: np.asarray(handle[spec.name][()]), path, "reading the .topostats data")
        pixel = _pixel_nm(handle, path)
    return RawImage(data, (pixel, pixel), "nm", {"channel": spec.name, "channel_index": spec.index})


__all__ = ["TOPOSTATS_IMAGES", "read_topostats", "topostats_channels"]
