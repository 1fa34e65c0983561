"""Synthetic AFM height maps of MOCVD-grown TMD films, and the bundled example dataset.

No real TMD AFM images can be shipped or downloaded here, so demos, tests and examples run on a
physically grounded generator. Each image is rendered in nanometres from a small growth model:

* **substrate** - c-plane sapphire terraces (0.22 nm steps, 50-400 nm wide, random miscut
  direction) with weak correlated roughness;
* **monolayer domains** - Poisson-nucleated triangles truncated towards hexagons (truncation
  0 = triangle, 1/3 = regular hexagon), a fraction epitaxially aligned to 0/60 degrees, outlines
  roughened and rounded; overlapping domains coalesce into a film (coverage emerges from
  nucleation density x domain area), with shallow grooves at grain boundaries;
* **adlayers** - concentric bilayer (and rare trilayer) islands nucleated at domain centres;
* **particles** - Gaussian bumps (precursor/chalcogen clusters) of a few nm;
* **film roughness** on the covered area;
* **instrument artefacts** (each optional): parabolic tip convolution, tilt, bow, line offsets,
  scars and white noise.

Per-class distributions (:data:`MATERIALS`) are plausible MOCVD morphologies chosen so that the
classes *overlap*: some differences are statistical (densities, step and particle heights), some
are shape/texture (truncation, alignment, rounding). They are not fitted to measured films.

**Sample random effects.** Every sample draws its own parameters around its class
(:func:`sample_parameters`); all images of a sample share them and differ only in the random
placement of features and artefacts - so images of one sample are far more alike than images of
two samples, and cross-validation that is not grouped by sample is optimistic.

Class shares follow the paper (MoS2 46 %, WS2 18 %, WSe2 13 %, MoSe2 13 %, Mo-WSe2 10 %).
"""

from .morphology import MATERIALS
from .synthetic import (
    SyntheticDataset,
    example_data_path,
    load_example_dataset,
    make_synthetic_dataset,
    write_synthetic_dataset,
)

__all__ = [
    "MATERIALS",
    "SyntheticDataset",
    "example_data_path",
    "load_example_dataset",
    "make_synthetic_dataset",
    "write_synthetic_dataset",
]
