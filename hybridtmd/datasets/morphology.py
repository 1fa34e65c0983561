"""Per-class growth-morphology distributions and the per-sample parameters drawn from them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class MaterialMorphology:
    """Distribution of growth morphology for one material (class). Ranges are (low, high) for
    uniform draws; ``(median, log_sd)`` pairs are log-normal draws. Lengths in nm."""

    name: str
    share: float  # fraction of samples, as in the paper's dataset
    edge_nm: tuple[float, float]  # log-normal (median, log sd) of the sample's median domain edge
    nucleation_per_um2: tuple[float, float]  # log-normal
    truncation: tuple[float, float]  # uniform: 0 triangle ... 1/3 hexagon
    aligned_fraction: tuple[float, float]  # uniform: share of domains at 0/60 degrees
    rounding: tuple[float, float]  # uniform: 0 sharp polygon ... 1 disc
    edge_roughness: tuple[float, float]  # uniform: relative radial roughness of outlines
    step_height_nm: tuple[float, float]  # normal (mean, sd): monolayer step
    bilayer_probability: tuple[float, float]  # uniform: chance a domain carries an adlayer
    particles_per_um2: tuple[float, float]  # log-normal
    particle_height_nm: tuple[float, float]  # log-normal
    film_roughness_nm: tuple[float, float]  # log-normal rms on covered area
    groove_depth_nm: tuple[float, float]  # uniform: grain-boundary groove depth


#: Per-class morphology: one row per :class:`MaterialMorphology` field, one column per material
#: (see the field comments there for each distribution and the module docstring).
_MORPHOLOGY_TABLE: dict[str, tuple] = {
    #                       MoS2           WS2            WSe2           MoSe2          Mo-WSe2
    "share":               (0.46,          0.18,          0.13,          0.13,          0.10),
    "edge_nm":             ((150, 0.30),   (300, 0.30),   (220, 0.30),   (120, 0.30),   (180, 0.30)),
    "nucleation_per_um2":  ((9.0, 0.35),   (3.5, 0.35),   (5.0, 0.35),   (12.0, 0.35),  (7.0, 0.35)),
    "truncation":          ((0.00, 0.10),  (0.00, 0.08),  (0.22, 0.33),  (0.18, 0.33),  (0.05, 0.25)),
    "aligned_fraction":    ((0.6, 1.0),    (0.7, 1.0),    (0.2, 0.6),    (0.1, 0.5),    (0.0, 0.3)),
    "rounding":            ((0.0, 0.15),   (0.0, 0.10),   (0.0, 0.20),   (0.2, 0.50),   (0.50, 0.90)),
    "edge_roughness":      ((0.02, 0.06),  (0.02, 0.05),  (0.02, 0.06),  (0.03, 0.08),  (0.08, 0.18)),
    "step_height_nm":      ((0.65, 0.03),  (0.70, 0.03),  (0.71, 0.03),  (0.68, 0.03),  (0.70, 0.03)),
    "bilayer_probability": ((0.10, 0.35),  (0.05, 0.20),  (0.15, 0.40),  (0.40, 0.70),  (0.15, 0.40)),
    "particles_per_um2":   ((3.0, 0.5),    (2.0, 0.5),    (5.0, 0.5),    (6.0, 0.5),    (8.0, 0.5)),
    "particle_height_nm":  ((2.5, 0.3),    (2.5, 0.3),    (3.0, 0.3),    (3.0, 0.3),    (3.5, 0.3)),
    "film_roughness_nm":   ((0.08, 0.25),  (0.07, 0.25),  (0.09, 0.25),  (0.10, 0.25),  (0.11, 0.25)),
    "groove_depth_nm":     ((0.05, 0.20),  (0.05, 0.15),  (0.05, 0.20),  (0.08, 0.25),  (0.10, 0.25)),
}

#: Per-class morphology distributions (see the module docstring).
MATERIALS: dict[str, MaterialMorphology] = {
    name: MaterialMorphology(name, **{key: row[column] for key, row in _MORPHOLOGY_TABLE.items()})
    for column, name in enumerate(("MoS2", "WS2", "WSe2", "MoSe2", "Mo-WSe2"))
}


@dataclass(frozen=True)
class Artefacts:
    """Instrument artefacts added to every image; set a field to 0/False to switch it off."""

    tip_radius_nm: float = 8.0  # parabolic tip apex radius; 0 = ideal tip
    tilt: float = 1e-3  # max |slope| of a random plane (nm per nm)
    bow_nm: float = 0.5  # max amplitude of a quadratic scanner bow
    line_offset_nm: float = 0.08  # sd of per-line offsets
    scars_per_image: float = 1.0  # mean number of horizontal scars
    noise_nm: float = 0.03  # white-noise sd

    @classmethod
    def none(cls) -> Artefacts:
        """Ideal instrument: no artefacts at all."""
        return cls(0.0, 0.0, 0.0, 0.0, 0.0, 0.0)


@dataclass(frozen=True)
class SampleParameters:
    """Concrete growth parameters of one sample (drawn once, shared by its images)."""

    material: str
    sample_id: str
    scan_size_nm: float
    edge_nm: float
    nucleation_per_um2: float
    truncation: float
    aligned_fraction: float
    alignment_deg: float
    rounding: float
    edge_roughness: float
    step_height_nm: float
    bilayer_probability: float
    particles_per_um2: float
    particle_height_nm: float
    film_roughness_nm: float
    groove_depth_nm: float
    terrace_width_nm: float
    miscut_deg: float


def class_counts(n_samples: int, materials: Sequence[str] | None = None) -> dict[str, int]:
    """Samples per class for ``n_samples`` (largest-remainder rounding of the shares, each >= 1)."""
    names = list(materials or MATERIALS)
    shares = np.array([MATERIALS[m].share for m in names])
    shares = shares / shares.sum()
    if n_samples < len(names):
        raise ValueError(f"need at least one sample per class ({len(names)})")
    raw = shares * n_samples
    counts = np.maximum(np.floor(raw).astype(int), 1)
    while counts.sum() < n_samples:
        counts[np.argmax(raw - counts)] += 1
    while counts.sum() > n_samples:
        counts[np.argmax(np.where(counts > 1, counts - raw, -np.inf))] -= 1
    return dict(zip(names, counts.tolist(), strict=True))


def sample_parameters(
    material: str,
    rng: np.random.Generator,
    *,
    sample_id: str = "0",
    scan_size_um: tuple[float, float] = (1.0, 5.0),
    spread: float = 1.0,
) -> SampleParameters:
    """Draw one sample's parameters around the class distribution of ``material``.

    ``spread`` scales every log-normal sd and uniform half-width (1 = documented defaults;
    larger = more class overlap).
    """
    if material not in MATERIALS:
        raise ValueError(f"unknown material {material!r}; choose from {list(MATERIALS)}")
    m = MATERIALS[material]

    def lognormal(pair):
        return float(pair[0] * np.exp(rng.normal(0, pair[1] * spread)))

    def uniform(pair):
        mid, half = (pair[0] + pair[1]) / 2, (pair[1] - pair[0]) / 2 * spread
        return float(rng.uniform(mid - half, mid + half))

    return SampleParameters(
        material=material,
        sample_id=sample_id,
        scan_size_nm=float(rng.uniform(*scan_size_um) * 1000),
        edge_nm=lognormal(m.edge_nm),
        nucleation_per_um2=lognormal(m.nucleation_per_um2),
        truncation=float(np.clip(uniform(m.truncation), 0, 1 / 3)),
        aligned_fraction=float(np.clip(uniform(m.aligned_fraction), 0, 1)),
        alignment_deg=float(rng.uniform(0, 120)),
        rounding=float(np.clip(uniform(m.rounding), 0, 1)),
        edge_roughness=float(np.clip(uniform(m.edge_roughness), 0, 0.4)),
        step_height_nm=float(rng.normal(m.step_height_nm[0], m.step_height_nm[1] * spread)),
        bilayer_probability=float(np.clip(uniform(m.bilayer_probability), 0, 1)),
        particles_per_um2=lognormal(m.particles_per_um2),
        particle_height_nm=lognormal(m.particle_height_nm),
        film_roughness_nm=lognormal(m.film_roughness_nm),
        groove_depth_nm=float(max(0.0, uniform(m.groove_depth_nm))),
        terrace_width_nm=float(rng.uniform(50, 400)),
        miscut_deg=float(rng.uniform(0, 180)),
    )
