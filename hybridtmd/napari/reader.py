"""napari reader: every format :mod:`hybridtmd.io` reads, one image layer per channel, in nm.

The reading is the library's (:func:`hybridtmd.io.load_channels`): the same heights, pixel size
and channel names as ``hybridtmd info`` and ``hybridtmd predict``. A file the library refuses
raises its :class:`~hybridtmd.errors.AFMInputError`; napari shows that error (naming the file
and the reason) instead of adding a layer.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ..io import load_channels
from ..io.readers import registered_suffix
from .layers import image_layer_data

LayerData = tuple[Any, dict[str, Any], str]


def read_files(path: str | Sequence[str]) -> list[LayerData]:
    """Every channel of every file as napari LayerData, in file and channel order; each file's
    first height channel is shown, its other channels are listed hidden (they would cover it)."""
    paths = [path] if isinstance(path, str | Path) else list(path)
    layers: list[LayerData] = []
    for one in paths:
        channels = load_channels(one)
        shown = next((key for key, image in channels.items() if image.is_height), next(iter(channels)))
        for key, image in channels.items():
            data, kwargs, kind = image_layer_data(image, key)
            layers.append((data, {**kwargs, "visible": key == shown}, kind))
    return layers


def get_reader(path: str | Sequence[str]) -> Callable[[Any], list[LayerData]] | None:
    """The reader for ``path`` (a file or a list of files) when hybridtmd has a reader for every
    suffix, else None so that napari offers other plugins."""
    paths = [path] if isinstance(path, str | Path) else list(path)
    if not paths or any(registered_suffix(p) is None for p in paths):
        return None
    return read_files
