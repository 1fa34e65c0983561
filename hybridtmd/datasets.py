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

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ._utils import atomic_path, atomic_write_text
from .io import AFMImage, Dataset, load_dataset, save_image

SAPPHIRE_STEP_NM = 0.22  # c-plane sapphire single step (1/6 c), the terrace height below the film


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


#: Per-class morphology distributions (see module docstring and README's table).
MATERIALS: dict[str, MaterialMorphology] = {
    m.name: m
    for m in [
        MaterialMorphology("MoS2", 0.46, (150, 0.30), (9.0, 0.35), (0.00, 0.10), (0.6, 1.0), (0.0, 0.15),
                           (0.02, 0.06), (0.65, 0.03), (0.10, 0.35), (3.0, 0.5), (2.5, 0.3), (0.08, 0.25),
                           (0.05, 0.20)),
        MaterialMorphology("WS2", 0.18, (300, 0.30), (3.5, 0.35), (0.00, 0.08), (0.7, 1.0), (0.0, 0.10),
                           (0.02, 0.05), (0.70, 0.03), (0.05, 0.20), (2.0, 0.5), (2.5, 0.3), (0.07, 0.25),
                           (0.05, 0.15)),
        MaterialMorphology("WSe2", 0.13, (220, 0.30), (5.0, 0.35), (0.22, 0.33), (0.2, 0.6), (0.0, 0.20),
                           (0.02, 0.06), (0.71, 0.03), (0.15, 0.40), (5.0, 0.5), (3.0, 0.3), (0.09, 0.25),
                           (0.05, 0.20)),
        MaterialMorphology("MoSe2", 0.13, (120, 0.30), (12.0, 0.35), (0.18, 0.33), (0.1, 0.5), (0.2, 0.50),
                           (0.03, 0.08), (0.68, 0.03), (0.40, 0.70), (6.0, 0.5), (3.0, 0.3), (0.10, 0.25),
                           (0.08, 0.25)),
        MaterialMorphology("Mo-WSe2", 0.10, (180, 0.30), (7.0, 0.35), (0.05, 0.25), (0.0, 0.3), (0.50, 0.90),
                           (0.08, 0.18), (0.70, 0.03), (0.15, 0.40), (8.0, 0.5), (3.5, 0.3), (0.11, 0.25),
                           (0.10, 0.25)),
    ]
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
        film_roughness_nm=lognormal((m.film_roughness_nm[0], m.film_roughness_nm[1])),
        groove_depth_nm=float(max(0.0, uniform(m.groove_depth_nm))),
        terrace_width_nm=float(rng.uniform(50, 400)),
        miscut_deg=float(rng.uniform(0, 180)),
    )


# --------------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------------


def correlated_noise(shape: tuple[int, int], rng: np.random.Generator, corr_px: float, rms: float) -> np.ndarray:
    """Gaussian random field with a Gaussian correlation of ``corr_px`` pixels and given rms."""
    from scipy import ndimage

    field_ = ndimage.gaussian_filter(rng.standard_normal(shape), corr_px, mode="wrap")
    sd = field_.std()
    return field_ * (rms / sd) if sd > 0 else field_


def domain_outline(
    edge: float, angle: float, truncation: float, rounding: float, roughness: float,
    rng: np.random.Generator, points_per_side: int = 16,
) -> np.ndarray:
    """Vertices (x, y) in nm, centred on 0, of one domain outline.

    An equilateral triangle of side ``edge`` whose corners are cut by ``truncation`` x edge
    (1/3 gives a regular hexagon), blended radially towards a disc by ``rounding`` and
    perturbed by a smooth random radial roughness of relative amplitude ``roughness``.
    """
    corners = np.array([[np.cos(a), np.sin(a)] for a in angle + np.pi / 2 + np.arange(3) * 2 * np.pi / 3])
    corners *= edge / np.sqrt(3)
    t = truncation
    verts = []
    for k in range(3):
        a, b = corners[k], corners[(k + 1) % 3]
        if t > 0:
            verts += [a + t * (b - a), a + (1 - t) * (b - a)]
        else:
            verts.append(a)
    verts = np.array(verts)
    # densify so rounding and roughness act smoothly along the outline
    dense = np.concatenate([
        np.linspace(verts[i], verts[(i + 1) % len(verts)], points_per_side, endpoint=False)
        for i in range(len(verts))
    ])
    phi = np.arctan2(dense[:, 1], dense[:, 0])
    r = np.hypot(dense[:, 0], dense[:, 1])
    r = (1 - rounding) * r + rounding * r.mean()
    if roughness > 0:
        harmonics = np.arange(2, 9)
        amps = rng.normal(0, roughness / np.sqrt(len(harmonics)), (len(harmonics), 2)) / np.sqrt(harmonics[:, None] / 2)
        r = r * (1 + (amps[:, 0, None] * np.cos(harmonics[:, None] * phi)
                      + amps[:, 1, None] * np.sin(harmonics[:, None] * phi)).sum(0))
    return np.stack([r * np.cos(phi), r * np.sin(phi)], axis=1)


def _rasterise(poly_nm: np.ndarray, centre_nm: np.ndarray, px: float, shape: tuple[int, int]):
    from skimage.draw import polygon

    xy = (poly_nm + centre_nm) / px
    return polygon(xy[:, 1], xy[:, 0], shape=shape)


def render_image(
    params: SampleParameters,
    rng: np.random.Generator,
    *,
    size_px: int = 128,
    artefacts: Artefacts | None = None,
    supersample: int = 2,
    source: str | None = None,
) -> AFMImage:
    """Render one AFM image (``size_px`` square, heights in nm) of a sample with ``params``.

    Geometry is drawn on a grid ``supersample`` times finer and block-averaged, which gives
    sub-pixel edges like a finite scan line does.
    """
    from scipy import ndimage
    from skimage.segmentation import find_boundaries

    art = artefacts if artefacts is not None else Artefacts()
    n = size_px * supersample
    scan = params.scan_size_nm
    px = scan / n
    shape = (n, n)
    yy, xx = np.mgrid[0:n, 0:n] * px

    # substrate: miscut terraces with a meandering edge, plus weak roughness
    theta = np.deg2rad(params.miscut_deg)
    along = xx * np.cos(theta) + yy * np.sin(theta)
    meander = correlated_noise(shape, rng, max(2.0, 60 / px), 0.15 * params.terrace_width_nm)
    height = SAPPHIRE_STEP_NM * np.floor((along + meander) / params.terrace_width_nm)
    height += correlated_noise(shape, rng, max(1.0, 10 / px), 0.03)

    # monolayer domains (centres may lie outside the frame so domains are cut by the border)
    margin = 0.6 * params.edge_nm
    area_um2 = ((scan + 2 * margin) / 1000) ** 2
    n_domains = rng.poisson(params.nucleation_per_um2 * area_um2)
    cover = np.zeros(shape, np.int32)
    owner = np.zeros(shape, np.int32)
    adlayer = np.zeros(shape, np.int32)
    for k in range(1, n_domains + 1):
        edge = params.edge_nm * np.exp(rng.normal(0, 0.3))
        if rng.random() < params.aligned_fraction:
            angle = np.deg2rad(params.alignment_deg + 60 * rng.integers(0, 2) + rng.normal(0, 2))
        else:
            angle = rng.uniform(0, 2 * np.pi)
        centre = rng.uniform(-margin, scan + margin, 2)
        outline = domain_outline(edge, angle, params.truncation, params.rounding, params.edge_roughness, rng)
        rr, cc = _rasterise(outline, centre, px, shape)
        cover[rr, cc] += 1
        owner[rr, cc] = k
        layers = 0
        while rng.random() < params.bilayer_probability * (0.35 if layers else 1.0) and layers < 2:
            layers += 1
            scale = rng.uniform(0.15, 0.45) / layers
            rr2, cc2 = _rasterise(outline * scale, centre, px, shape)
            adlayer[rr2, cc2] = np.maximum(adlayer[rr2, cc2], layers)
    covered = cover > 0
    layers_map = covered.astype(float) + adlayer * covered
    step = params.step_height_nm
    height = height + step * layers_map
    if covered.any():
        height += covered * correlated_noise(shape, rng, max(1.0, 8 / px), params.film_roughness_nm)
        boundaries = find_boundaries(owner, mode="inner") & covered & (cover > 1)
        if params.groove_depth_nm > 0 and boundaries.any():
            groove = ndimage.gaussian_filter(boundaries.astype(float), max(0.5, 6 / px))
            height -= params.groove_depth_nm * groove / max(groove.max(), 1e-12)

    # particles: Gaussian bumps of a few nm
    n_particles = rng.poisson(params.particles_per_um2 * (scan / 1000) ** 2)
    if n_particles:
        bumps = np.zeros(shape)
        for _ in range(n_particles):
            h = params.particle_height_nm * np.exp(rng.normal(0, 0.4))
            sigma = rng.uniform(6, 18) / px
            cy, cx = rng.uniform(0, n, 2)
            r = int(4 * sigma) + 1
            y0, y1 = max(0, int(cy) - r), min(n, int(cy) + r + 1)
            x0, x1 = max(0, int(cx) - r), min(n, int(cx) + r + 1)
            if y0 >= y1 or x0 >= x1:
                continue
            gy, gx = np.mgrid[y0:y1, x0:x1]
            bumps[y0:y1, x0:x1] = np.maximum(bumps[y0:y1, x0:x1],
                                             h * np.exp(-((gy - cy) ** 2 + (gx - cx) ** 2) / (2 * sigma**2)))
        height += bumps

    # down to the output grid
    height = height.reshape(size_px, supersample, size_px, supersample).mean(axis=(1, 3))
    px_out = scan / size_px
    height = _add_artefacts(height, px_out, art, rng)
    meta = {"material": params.material, "sample_id": params.sample_id, "generator": "hybridtmd.datasets",
            "n_domains": int(n_domains), "n_particles": int(n_particles)}
    return AFMImage(height, (px_out, px_out), "Height", source, meta)


def _add_artefacts(height: np.ndarray, px: float, art: Artefacts, rng: np.random.Generator) -> np.ndarray:
    from scipy import ndimage

    n_rows, n_cols = height.shape
    if art.tip_radius_nm > 0:
        radius_px = int(min(6, max(1, np.sqrt(2 * art.tip_radius_nm * 3.0) / px)))
        gy, gx = np.mgrid[-radius_px : radius_px + 1, -radius_px : radius_px + 1] * px
        r2 = gx**2 + gy**2
        footprint = r2 <= (radius_px * px) ** 2
        tip = -r2 / (2 * art.tip_radius_nm)
        height = ndimage.grey_dilation(height, footprint=footprint, structure=np.where(footprint, tip, 0))
    y, x = np.mgrid[0:n_rows, 0:n_cols]
    xs, ys = x / n_cols * 2 - 1, y / n_rows * 2 - 1
    if art.tilt > 0:
        sx, sy = rng.uniform(-art.tilt, art.tilt, 2)
        height = height + sx * x * px + sy * y * px
    if art.bow_nm > 0:
        height = height + rng.uniform(-art.bow_nm, art.bow_nm) * (xs**2 + ys**2)
    if art.line_offset_nm > 0:
        height = height + rng.normal(0, art.line_offset_nm, (n_rows, 1))
    for _ in range(rng.poisson(art.scars_per_image) if art.scars_per_image > 0 else 0):
        row = rng.integers(1, n_rows - 1)
        start = rng.integers(0, n_cols // 2)
        length = rng.integers(n_cols // 4, n_cols - start + 1)
        height[row, start : start + length] += rng.choice([-1, 1]) * rng.uniform(0.5, 2.0)
    if art.noise_nm > 0:
        height = height + rng.normal(0, art.noise_nm, height.shape)
    return height


# --------------------------------------------------------------------------------------------
# Datasets
# --------------------------------------------------------------------------------------------


@dataclass
class SyntheticDataset:
    """In-memory synthetic dataset: images with labels, sample groups and sample parameters."""

    images: list[AFMImage]
    labels: np.ndarray
    groups: np.ndarray
    parameters: list[SampleParameters] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.images)


def make_synthetic_dataset(
    n_samples: int = 60,
    images_per_sample: int | tuple[int, int] = 2,
    *,
    size_px: int = 128,
    scan_size_um: tuple[float, float] = (1.0, 2.5),
    materials: Sequence[str] | None = None,
    artefacts: Artefacts | None = None,
    spread: float = 1.0,
    seed: int = 0,
) -> SyntheticDataset:
    """Generate a labelled, sample-grouped synthetic TMD dataset in memory.

    Parameters
    ----------
    n_samples : int
        Number of samples, split over classes in the paper's proportions (:func:`class_counts`).
    images_per_sample : int or (low, high)
        Images per sample, fixed or drawn uniformly in ``[low, high]``.
    size_px, scan_size_um :
        Image side in pixels; scan size range (µm), drawn per sample independently of class.
    materials : list of str, optional
        Subset of :data:`MATERIALS` to generate.
    artefacts : Artefacts, optional
        Instrument artefacts (default :class:`Artefacts`; ``Artefacts.none()`` for ideal scans).
    spread : float
        Scales the within-class spread of sample parameters (class overlap).
    seed : int
        Everything is a deterministic function of the arguments and this seed.
    """
    counts = class_counts(n_samples, materials)
    order = [m for m, c in counts.items() for _ in range(c)]
    root = np.random.SeedSequence(seed)
    images, labels, groups, params = [], [], [], []
    for index, (material, seq) in enumerate(zip(order, root.spawn(len(order)), strict=True)):
        rng = np.random.default_rng(seq)
        sample_id = f"{index + 1:04d}"
        p = sample_parameters(material, rng, sample_id=sample_id, scan_size_um=scan_size_um, spread=spread)
        params.append(p)
        if isinstance(images_per_sample, int):
            k = images_per_sample
        else:
            k = int(rng.integers(images_per_sample[0], images_per_sample[1] + 1))
        for j, img_seq in enumerate(seq.spawn(k)):
            name = synthetic_filename(p, j)
            image_rng = np.random.default_rng(img_seq)
            images.append(render_image(p, image_rng, size_px=size_px, artefacts=artefacts, source=name))
            labels.append(material)
            groups.append(sample_id)
    return SyntheticDataset(images, np.array(labels, dtype=object), np.array(groups, dtype=object), params)


def synthetic_filename(params: SampleParameters, image_index: int) -> str:
    """File name in the paper's convention: ``synthetic_<MATERIAL>_<scan>um_<SAMPLEID>_img<k>.tif``."""
    return f"synthetic_{params.material}_{params.scan_size_nm / 1000:.2f}um_{params.sample_id}_img{image_index}.tif"


def write_synthetic_dataset(outdir: str | Path, *, tiff_dtype: str = "float32", **kwargs) -> Dataset:
    """Generate a dataset (arguments of :func:`make_synthetic_dataset`) and write it to ``outdir``:
    one TIFF per image (nm as ``tiff_dtype``, pixel size in tags), ``manifest.csv``
    (path,label,group), and ``samples.json`` (each sample's parameters). Returns the on-disk
    :class:`Dataset`."""
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    data = make_synthetic_dataset(**kwargs)
    for image in data.images:
        save_image(image, outdir / image.source, tiff_dtype=tiff_dtype)
    with atomic_path(outdir / "manifest.csv") as tmp:
        with open(tmp, "w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow(["path", "label", "group"])
            for image, label, group in zip(data.images, data.labels, data.groups, strict=True):
                writer.writerow([image.source, label, group])
    settings = {k: (asdict(v) if hasattr(v, "__dataclass_fields__") else v) for k, v in kwargs.items()}
    samples = {"generator_arguments": settings, "samples": [asdict(p) for p in data.parameters]}
    atomic_write_text(outdir / "samples.json", json.dumps(samples, indent=1))
    return load_dataset(outdir)


#: Arguments that produced the bundled ``data/synthetic_tmd`` set (see data/README.md).
BUNDLED_ARGUMENTS: dict = {"n_samples": 100, "images_per_sample": 2, "size_px": 128, "scan_size_um": (1.0, 2.5),
                           "spread": 1.0, "seed": 2024, "artefacts": None, "tiff_dtype": "float16"}


def example_data_path() -> Path:
    """Folder of the bundled synthetic dataset (``data/synthetic_tmd`` in the repository)."""
    return Path(__file__).resolve().parent.parent / "data" / "synthetic_tmd"


def load_example_dataset(path: str | Path | None = None) -> Dataset:
    """The bundled synthetic TMD dataset (200 images, 100 samples, 5 classes, 128x128 px).

    If the repository's ``data/`` folder is not there (e.g. a wheel install), the identical
    dataset is regenerated deterministically into ``path`` or ``~/.cache/hybridtmd``.
    """
    bundled = example_data_path()
    if path is None and (bundled / "manifest.csv").exists():
        return load_dataset(bundled)
    target = Path(path) if path is not None else Path.home() / ".cache" / "hybridtmd" / "synthetic_tmd"
    if not (target / "manifest.csv").exists():
        write_synthetic_dataset(target, **BUNDLED_ARGUMENTS)
    return load_dataset(target)


__all__ = [
    "MATERIALS",
    "Artefacts",
    "MaterialMorphology",
    "SampleParameters",
    "SyntheticDataset",
    "class_counts",
    "load_example_dataset",
    "make_synthetic_dataset",
    "render_image",
    "sample_parameters",
    "write_synthetic_dataset",
]
