"""Files to read in batch: the files of a folder hybridtmd has a reader for, the channels a
model or extractor needs from each, and the file an image came from.

One place for what ``hybridtmd predict FOLDER`` (and the other commands taking a folder) and
the napari plugin's Batch widget both need, so that they find the same files.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..errors import AFMInputError
from .image import AFMImage, height_images
from .readers import registered_suffix

__all__ = ["needed_channels", "readable_files", "source_of"]


def readable_files(folder: str | Path, *, recursive: bool = False) -> list[Path]:
    """The entries of ``folder`` (and of its subfolders with ``recursive``) whose suffix hybridtmd
    has a reader for (:func:`~hybridtmd.io.registered_suffix`), hidden ones (``.name``) left out,
    sorted by path.

    Entries that are not regular files stay in (a folder named ``x.tif``, a FIFO): reading them
    reports them, and a FIFO is never opened.

    Raises
    ------
    AFMInputError
        ``folder`` is not a folder.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise AFMInputError(folder, "not a folder")
    entries = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(p for p in entries if not p.name.startswith(".") and registered_suffix(p) is not None)


def needed_channels(reader: Any) -> list[str] | None:
    """The channels ``reader`` - a model's :class:`~hybridtmd.model.HybridFeatures`
    (``model.features_``) or a :class:`~hybridtmd.descriptors.DescriptorExtractor` - reads from
    each file (its ``channels``, for :func:`~hybridtmd.io.load_images`); None for height maps only."""
    channels = getattr(reader, "channels", None)
    return None if channels is None else list(channels)


def source_of(item: AFMImage | Mapping[str, AFMImage]) -> str:
    """The file of an image, or of a mapping channel -> image (its height channel's)."""
    return str(height_images([item])[0].source)
