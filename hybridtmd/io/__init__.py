"""AFM height maps in physical units: the :class:`AFMImage` container (:mod:`.image`), file
readers with a public registry (:mod:`.readers`), writers (:mod:`.writers`) and
:class:`Dataset`, labelled and sample-grouped collections of files (:mod:`.dataset`), and the
readable files of a folder (:mod:`.files`).

Every reader returns heights in **nanometres** (float64) and the pixel size in nanometres as
``(x, y)``; other channels (phase, amplitude...) keep their own unit (``AFMImage.z_unit``).
Channel names are aligned across vendors by :mod:`.channels`; :mod:`.limits` bounds what one
file may cost (pixels, parse time) and :mod:`.integrity` refuses container files cut short.
Any problem with a file raises :class:`~hybridtmd.errors.AFMInputError` whose message names the
file and the reason. The supported formats, and how to add one with :func:`register_reader`,
are listed in :mod:`hybridtmd.io.readers`.
"""

from .channels import canonical_channel, default_channel
from .dataset import Dataset, LoadReport, load_dataset, load_images, write_manifest
from .files import readable_files
from .image import AFMImage, image_info, unit_to_nm
from .limits import max_pixels
from .readers import (
    SUPPORTED_SUFFIXES,
    RawImage,
    list_channels,
    load_channels,
    load_image,
    register_reader,
    unregister_reader,
)
from .writers import save_image

__all__ = [
    "AFMImage",
    "Dataset",
    "LoadReport",
    "RawImage",
    "SUPPORTED_SUFFIXES",
    "canonical_channel",
    "default_channel",
    "image_info",
    "list_channels",
    "load_channels",
    "load_dataset",
    "load_image",
    "load_images",
    "max_pixels",
    "readable_files",
    "register_reader",
    "save_image",
    "unit_to_nm",
    "unregister_reader",
    "write_manifest",
]
