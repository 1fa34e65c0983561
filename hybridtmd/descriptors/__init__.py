"""Physical descriptors of AFM height maps: named features in physical units.

Families (each a module; ``list_descriptors()`` gives every column with unit and definition):

===========  ===============================================================================
``paper``    the seed paper's descriptors (RMS roughness, step edges, defects, anisotropy,
             local variation, DoG blobs, GLCM, grains/domains) with its pixel definitions:
             pixel-dependent, for reproduction (:mod:`.paper`)
``morphology`` the same operators at one physical scale, resolution-invariant
             (:mod:`.morphology`)
``areal``    ISO 25178-2 Sa, Sq, Ssk, Sku, Sp, Sv, Sz, Sdq, Sdr (:mod:`.areal`)
``spectral`` PSD slope, fractal dimension, corner frequency, peak wavelength, Sal, Str,
             orientation (:mod:`.spectral`)
``grains``   TopoStats-like grain statistics and terrace/layer counts (:mod:`.grains`)
``texture``  multi-distance GLCM, uniform LBP, Gabor energies (:mod:`.texture`)
===========  ===============================================================================

:mod:`.fast` holds the families' own implementations of scikit-image / scipy routines (DoG
blobs, peak search, disk morphology, LBP, region perimeters and hulls), each equal to the
library routine it replaces. :mod:`.maps` returns what two families look at, per image: the
grain labels (:func:`grain_labels`) and the DoG blobs (:func:`blob_positions`), in nm.

Quick use::

    from hybridtmd.descriptors import extract_descriptors, DescriptorExtractor, list_descriptors
    s = extract_descriptors(image)                      # pandas Series; reasons in s.attrs["reasons"]
    X = DescriptorExtractor(n_jobs=-1).fit_transform(images)   # DataFrame, one row per image

Register your own family::

    from hybridtmd.descriptors import register_family, DescriptorValues

    def step_density(surface):                          # surface: levelled image + cached arrays
        ...
        return {"my_steps_per_um": value}

    register_family("mine", step_density, descriptors=[("my_steps_per_um", "per µm", "...")])
    DescriptorExtractor(families=["areal", "mine"])
"""

# importing a family module registers it; this order is the default column order
from . import paper  # noqa: F401, I001
from . import morphology  # noqa: F401
from . import areal  # noqa: F401
from . import spectral  # noqa: F401
from . import grains  # noqa: F401
from . import texture  # noqa: F401
from .core import DescriptorConfig, Surface
from .extract import DescriptorExtractor, channel_selections, extract_descriptors
from .maps import GrainLabels, blob_positions, grain_labels
from .registry import (
    DescriptorSpec,
    DescriptorValues,
    Family,
    RegistryError,
    describe,
    family_names,
    list_descriptors,
    register_descriptor,
    register_family,
    unregister_family,
)

__all__ = [
    "DescriptorConfig",
    "DescriptorExtractor",
    "DescriptorSpec",
    "DescriptorValues",
    "Family",
    "GrainLabels",
    "RegistryError",
    "Surface",
    "blob_positions",
    "channel_selections",
    "describe",
    "extract_descriptors",
    "family_names",
    "grain_labels",
    "list_descriptors",
    "register_descriptor",
    "register_family",
    "unregister_family",
]
