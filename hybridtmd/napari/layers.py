"""AFM images as napari layer data, and napari image layers back as AFM images.

A layer's ``scale`` is the pixel size in nm as ``(y, x)`` (napari orders axes as the array does:
rows first), its ``units`` are nm, so napari's scale bar reads true lengths. The reader stores
what :class:`~hybridtmd.io.AFMImage` knows beyond the array (file, channel, unit, metadata) under
``metadata["hybridtmd"]``; :func:`layer_image` reads it back, so a layer the reader opened is
classified exactly as the file would be by ``hybridtmd predict``.

Nothing here imports napari: these functions take and return plain data and layer-like objects.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..errors import AFMInputError
from ..io import AFMImage

#: the key of the layer metadata this plugin writes and reads
METADATA_KEY = "hybridtmd"
#: layer metadata key of a classification result (:mod:`.classify`)
PREDICTION_KEY = "hybridtmd_prediction"


def layer_name(image: AFMImage, key: str) -> str:
    """``<file stem> · <channel key> [<unit>]``: the channel and unit visible in the layer list."""
    stem = Path(image.source).stem if image.source else "array"
    return f"{stem} · {key} [{image.z_unit}]"


def image_layer_data(image: AFMImage, key: str) -> tuple[np.ndarray, dict[str, Any], str]:
    """One napari LayerData tuple ``(data, kwargs, "image")`` for one channel of a file."""
    px, py = image.pixel_size_nm
    info = {"source": image.source, "channel": image.channel, "channel_key": key, "z_unit": image.z_unit,
            "pixel_size_nm": (px, py), "file_metadata": dict(image.metadata)}
    kwargs = {
        "name": layer_name(image, key),
        "scale": (py, px),
        "units": ("nm", "nm"),
        "colormap": "afmhot" if image.is_height else "gray",
        "metadata": {METADATA_KEY: info},
    }
    return image.height, kwargs, "image"


def layer_image(layer: Any) -> AFMImage:
    """The :class:`AFMImage` of a napari image layer: its data, with the pixel size and
    provenance the reader stored; a layer from elsewhere needs its scale in nm.

    Raises
    ------
    AFMInputError
        The layer is not a 2-D image, or carries no pixel size (scale left at napari's 1).
    """
    data = np.asarray(layer.data)
    if data.ndim != 2 or getattr(layer, "rgb", False):
        raise AFMInputError(layer.name, f"a 2-D height map is needed, this layer has shape {data.shape}")
    info = layer.metadata.get(METADATA_KEY)
    scale = tuple(float(s) for s in layer.scale)
    if info is None:
        if scale == (1.0, 1.0):
            raise AFMInputError(layer.name, "the layer has no pixel size: open the file with the hybridtmd reader "
                                            "or set the layer's scale to the pixel size in nm")
        return AFMImage(data, (scale[1], scale[0]), channel=layer.name, source=layer.name)
    return AFMImage(data, (scale[1], scale[0]), channel=info["channel"], source=info["source"],
                    metadata=dict(info["file_metadata"]), z_unit=info["z_unit"])


def layer_source(layer: Any) -> str | None:
    """The file a layer was read from, when the hybridtmd reader opened it."""
    info = layer.metadata.get(METADATA_KEY)
    return None if info is None else info.get("source")


def overlay_kwargs(layer: Any, name: str, *, pixel_size_nm: tuple[float, float] | None = None,
                   origin_nm: tuple[float, float] = (0.0, 0.0), **extra: Any) -> dict[str, Any]:
    """Layer keywords that put an overlay exactly on ``layer`` (its translation and units).

    An overlay in the scan's own pixels takes the layer's scale. One on another grid - the
    descriptors' reference grid - gives that grid's ``pixel_size_nm`` (x, y) and where its first
    pixel centre lies in the scan's frame, ``origin_nm`` (x, y; 0 = the centre of the scan's first
    pixel): the overlay's scale is that pixel size and its translation the layer's shifted by
    the origin. Data already in nm (points) use ``pixel_size_nm=(1, 1)``.
    """
    scale = tuple(layer.scale) if pixel_size_nm is None else (float(pixel_size_nm[1]), float(pixel_size_nm[0]))
    ty, tx = (float(t) for t in layer.translate)
    return {"name": name, "scale": scale, "translate": (ty + origin_nm[1], tx + origin_nm[0]),
            "units": tuple(str(u) for u in getattr(layer, "units", ("nm", "nm"))), **extra}
