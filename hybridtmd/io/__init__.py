"""AFM height maps in physical units: the :class:`AFMImage` container (:mod:`.image`), file
readers with a public registry (:mod:`.readers`), writers (:mod:`.writers`) and
:class:`Dataset`, labelled and sample-grouped collections of files (:mod:`.dataset`).

Every reader returns heights in **nanometres** (float64) and the pixel size in nanometres as
``(x, y)``. Any problem with a file raises :class:`~hybridtmd.errors.AFMInputError` whose message
names the file and the reason. The supported formats, and how to add one with
:func:`register_reader`, are listed in :mod:`hybridtmd.io.readers`.
"""

from .dataset import DEFAULT_FILENAME_PATTERN, Dataset, LoadReport, load_dataset, load_images, write_manifest
from .image import (
    MAX_NONFINITE_FRACTION,
    MIN_SIDE_PX,
    AFMImage,
    check_height,
    check_images,
    fill_nonfinite,
    image_info,
    unit_to_nm,
)
from .readers import (
    RASTER_SUFFIXES,
    SUPPORTED_SUFFIXES,
    TIFF_SUFFIXES,
    VENDOR_SUFFIXES,
    RawImage,
    load_image,
    reader_for,
    register_reader,
    unregister_reader,
)
from .writers import save_image

__all__ = [
    "MAX_NONFINITE_FRACTION",
    "MIN_SIDE_PX",
    "RASTER_SUFFIXES",
    "SUPPORTED_SUFFIXES",
    "TIFF_SUFFIXES",
    "VENDOR_SUFFIXES",
    "AFMImage",
    "Dataset",
    "LoadReport",
    "DEFAULT_FILENAME_PATTERN",
    "RawImage",
    "check_height",
    "check_images",
    "fill_nonfinite",
    "image_info",
    "load_dataset",
    "load_image",
    "load_images",
    "reader_for",
    "register_reader",
    "save_image",
    "unit_to_nm",
    "unregister_reader",
    "write_manifest",
]
