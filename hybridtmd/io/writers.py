"""Writing :class:`~hybridtmd.io.AFMImage` height maps to files that :func:`~hybridtmd.io.load_image`
reads back with the same heights and pixel size."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .._utils.files import atomic_path
from .image import AFMImage
from .readers import TIFF_SUFFIXES

WRITABLE_SUFFIXES = (*TIFF_SUFFIXES, ".npz", ".npy", ".gwy")


def _is_json_scalar(value: Any) -> bool:
    return isinstance(value, (str, int, float, bool)) and not isinstance(value, np.generic)


def _write_tiff(image: AFMImage, tmp: Path, dtype: str) -> None:
    import tifffile

    px, py = image.pixel_size_nm
    tifffile.imwrite(
        tmp,
        image.height.astype(dtype),
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


def _write_gwy(image: AFMImage, tmp: Path) -> None:
    from gwyfile.objects import GwyContainer, GwyDataField, GwySIUnit

    px, py = image.pixel_size_nm
    rows, cols = image.shape
    data_field = GwyDataField(
        image.height * 1e-9, xreal=cols * px * 1e-9, yreal=rows * py * 1e-9,
        si_unit_xy=GwySIUnit(unitstr="m"), si_unit_z=GwySIUnit(unitstr="m"),
    )
    container = GwyContainer()
    container["/0/data/title"] = image.channel
    container["/0/data"] = data_field
    container.tofile(str(tmp))


def save_image(image: AFMImage, path: str | Path, *, tiff_dtype: str = "float32") -> Path:
    """Write ``image`` to ``path`` (``.tif``, ``.npz``, ``.npy`` or ``.gwy``), atomically.

    TIFF is float nm (``tiff_dtype`` float32, or float16 for compact example data: ~0.5 pm
    resolution at 1 nm, 4 pm at 8 nm) with the pixel size in the resolution tags (centimetre unit)
    and, exactly, in a JSON description that :func:`~hybridtmd.io.load_image` reads back.
    ``.npy`` keeps heights only.
    """
    if tiff_dtype not in ("float32", "float16", "float64"):
        raise ValueError("tiff_dtype must be float16, float32 or float64")
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in WRITABLE_SUFFIXES:
        raise ValueError(f"cannot write {suffix!r}; use .tif, .npz, .npy or .gwy")
    with atomic_path(path, suffix=suffix) as tmp:
        if suffix in TIFF_SUFFIXES:
            _write_tiff(image, tmp, tiff_dtype)
        elif suffix == ".gwy":
            _write_gwy(image, tmp)
        else:
            with open(tmp, "wb") as fh:
                if suffix == ".npz":
                    np.savez_compressed(fh, height=image.height, pixel_size_nm=np.array(image.pixel_size_nm),
                                        z_unit="nm", channel=image.channel)
                else:
                    np.save(fh, image.height, allow_pickle=False)
    return path


__all__ = ["WRITABLE_SUFFIXES", "save_image"]
