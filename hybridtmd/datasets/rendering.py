"""Rendering one synthetic AFM image of a sample: substrate, film, particles, instrument."""

from __future__ import annotations

import numpy as np

from ..io import AFMImage
from .morphology import Artefacts, SampleParameters

SAPPHIRE_STEP_NM = 0.22  # c-plane sapphire single step (1/6 c), the terrace height below the film


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
    sub-pixel edges like a finite scan line does. Layers are drawn in growth order: substrate,
    film (domains, adlayers, roughness, grain-boundary grooves), particles, then the instrument.
    """
    art = artefacts if artefacts is not None else Artefacts()
    n = size_px * supersample
    px = params.scan_size_nm / n
    height = _substrate(params, rng, n, px)
    height, n_domains = _add_film(height, params, rng, px)
    height, n_particles = _add_particles(height, params, rng, px)
    # down to the output grid
    height = height.reshape(size_px, supersample, size_px, supersample).mean(axis=(1, 3))
    px_out = params.scan_size_nm / size_px
    height = _add_artefacts(height, px_out, art, rng)
    meta = {"material": params.material, "sample_id": params.sample_id, "generator": "hybridtmd.datasets",
            "n_domains": int(n_domains), "n_particles": int(n_particles)}
    return AFMImage(height, (px_out, px_out), "Height", source, meta)


def _substrate(params: SampleParameters, rng: np.random.Generator, n: int, px: float) -> np.ndarray:
    """Sapphire miscut terraces with a meandering edge, plus weak roughness (n x n, nm)."""
    shape = (n, n)
    yy, xx = np.mgrid[0:n, 0:n] * px
    theta = np.deg2rad(params.miscut_deg)
    along = xx * np.cos(theta) + yy * np.sin(theta)
    meander = correlated_noise(shape, rng, max(2.0, 60 / px), 0.15 * params.terrace_width_nm)
    height = SAPPHIRE_STEP_NM * np.floor((along + meander) / params.terrace_width_nm)
    height += correlated_noise(shape, rng, max(1.0, 10 / px), 0.03)
    return height


def _place_domains(params: SampleParameters, rng: np.random.Generator, shape: tuple[int, int], px: float):
    """Nucleate the monolayer domains and their adlayers: per pixel, how many domains cover it,
    the last domain drawn there (1-based, 0 = bare) and the adlayer count; and the domain count.

    Centres may lie outside the frame so that domains are cut by the border.
    """
    scan = params.scan_size_nm
    margin = 0.6 * params.edge_nm
    n_domains = rng.poisson(params.nucleation_per_um2 * ((scan + 2 * margin) / 1000) ** 2)
    cover, owner, adlayer = (np.zeros(shape, np.int32) for _ in range(3))
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
    return cover, owner, adlayer, n_domains


def _add_film(height: np.ndarray, params: SampleParameters, rng: np.random.Generator, px: float):
    """``height`` with the TMD film on top (layer steps, film roughness, grooves at grain
    boundaries), and the number of domains."""
    from scipy import ndimage
    from skimage.segmentation import find_boundaries

    shape = height.shape
    cover, owner, adlayer, n_domains = _place_domains(params, rng, shape, px)
    covered = cover > 0
    layers_map = covered.astype(float) + adlayer * covered
    height = height + params.step_height_nm * layers_map
    if covered.any():
        height += covered * correlated_noise(shape, rng, max(1.0, 8 / px), params.film_roughness_nm)
        boundaries = find_boundaries(owner, mode="inner") & covered & (cover > 1)
        if params.groove_depth_nm > 0 and boundaries.any():
            groove = ndimage.gaussian_filter(boundaries.astype(float), max(0.5, 6 / px))
            height -= params.groove_depth_nm * groove / max(groove.max(), 1e-12)
    return height, n_domains


def _add_particles(height: np.ndarray, params: SampleParameters, rng: np.random.Generator, px: float):
    """``height`` with Gaussian bumps of a few nm (precursor clusters), and their number."""
    n = height.shape[0]
    n_particles = rng.poisson(params.particles_per_um2 * (params.scan_size_nm / 1000) ** 2)
    if not n_particles:
        return height, n_particles
    bumps = np.zeros(height.shape)
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
    return height, n_particles


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
