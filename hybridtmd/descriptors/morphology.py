"""The paper's descriptors at one physical scale (family ``morphology``): resolution-invariant.

The ``paper`` family's operators (Gaussian smoothing of 1 px, Canny of sigma 0.3 px, 3 x 3 peak
search, DoG sigmas 5-40 px, the opening disk of radius 5 px) are defined in pixels, so their
counts per µm² change with the pixel size: rendering the same samples at half the pixel size
multiplies the step-edge density by ~5, the defect density by ~4. This family applies the very
same operators to :attr:`~hybridtmd.descriptors.core.Surface.reference`, the image resampled to
``DescriptorConfig.reference_pixel_nm`` (10 nm): each operator then has one physical scale -

==================================  ========================================================
operator                            physical scale at the 10 nm reference
==================================  ========================================================
roughness / local-variation filter  Gaussian sigma 10 nm
Canny step edges                    sigma 3 nm (below the pixel: edges of the 10 nm grid)
defect peak search                  Gaussian sigma 10 nm, peaks >= 10 nm apart (3 x 3)
DoG blobs                           sigma 50-400 nm
domains                             opening disk of radius 50 nm
==================================  ========================================================

and the densities, lengths and areas agree for any image at or finer than the reference
(tolerances in docs/descriptors.md, ``tests/test_descriptors.py::test_descriptors_agree_across_pixel_sizes``).
With ``reference_pixel_nm=None`` the values equal the paper family's physical counterparts.
"""

from __future__ import annotations

from . import paper
from .core import Surface
from .registry import DescriptorValues, annotate_descriptors, register_family

#: morphology column -> the paper column computed on the reference surface
SOURCES = {
    "morph_rms_roughness_nm": "paper_rms_roughness_nm",
    "morph_local_variation_nm": "paper_local_variation_nm",
    "morph_step_edge_density_per_um2": "paper_step_edge_density_per_um2",
    "morph_defect_density_per_um2": "paper_defect_density_per_um2",
    "morph_anisotropy_rad": "paper_anisotropy_rad",
    "morph_dog_blob_density_per_um2": "paper_dog_blob_density_per_um2",
    "morph_grain_density_per_um2": "paper_grain_density_per_um2",
    "morph_grain_mean_eq_diameter_nm": "paper_grain_mean_eq_diameter_nm",
    "morph_domain_density_per_um2": "paper_domain_density_per_um2",
    "morph_domain_mean_area_nm2": "paper_domain_mean_area_nm2",
}
_DEFINITIONS = dict((name, (unit, definition)) for name, unit, definition in paper.DESCRIPTORS)
DESCRIPTORS = [(name, _DEFINITIONS[source][0], f"{_DEFINITIONS[source][1]}; on the image at the reference pixel size "
                "(1 px = reference_pixel_nm)") for name, source in SOURCES.items()]
NAMES = list(SOURCES)


def morphology_descriptors(surface: Surface) -> DescriptorValues:
    """The ``morphology`` descriptors: the paper family's physical counterparts computed on
    ``surface.reference``."""
    values = paper.paper_descriptors(surface.reference, wanted=SOURCES.values())
    out = DescriptorValues()
    for name, source in SOURCES.items():
        out[name] = values[source]
        if source in values.reasons:
            out.reasons[name] = values.reasons[source]
    return out


register_family(
    "morphology", morphology_descriptors, default=True, reference=paper.PAPER_REFERENCE, descriptors=DESCRIPTORS,
    description="the paper's operators at one physical scale (image resampled to the reference pixel size)",
)
annotate_descriptors(NAMES, resolution_invariant=True,
                     scale_note="operators in reference pixels (one physical scale) on the resampled image")
