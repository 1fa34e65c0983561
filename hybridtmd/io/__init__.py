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

from .channels import CHANNEL_ALIASES, ChannelSpec, canonical_channel, default_channel
from .dataset import DEFAULT_FILENAME_PATTERN, Dataset, LoadReport, load_dataset, load_images, write_manifest
from .files import needed_channels, readable_files, source_of
from .image import (
    HEIGHT_CHANNEL,
    MAX_NONFINITE_FRACTION,
    MIN_SIDE_PX,
    AFMImage,
    channel_image,
    check_channel_maps,
    check_height,
    check_images,
    fill_nonfinite,
    height_images,
    image_info,
    is_length_unit,
    unit_to_nm,
)
from .limits import DEFAULT_MAX_PIXELS, max_pixels, set_third_party_logging
from .readers import (
    RASTER_SUFFIXES,
    SUPPORTED_SUFFIXES,
    TIFF_SUFFIXES,
    VENDOR_SUFFIXES,
    ChannelLister,
    RawImage,
    list_channels,
    load_channels,
    load_image,
    reader_for,
    register_reader,
    registered_suffix,
    unregister_reader,
)
from .writers import save_image

__all__ = [
    "CHANNEL_ALIASES",
    "DEFAULT_MAX_PIXELS",
    "ChannelLister",
    "ChannelSpec",
    "canonical_channel",
    "default_channel",
    "is_length_unit",
    "list_channels",
    "load_channels",
    "max_pixels",
    "set_third_party_logging",
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
    "HEIGHT_CHANNEL",
    "channel_image",
    "check_channel_maps",
    "check_height",
    "check_images",
    "height_images",
    "fill_nonfinite",
    "image_info",
    "load_dataset",
    "load_image",
    "load_images",
    "needed_channels",
    "readable_files",
    "reader_for",
    "register_reader",
    "registered_suffix",
    "save_image",
    "source_of",
    "unit_to_nm",
    "unregister_reader",
    "write_manifest",
]
