"""Image-texture descriptors (family ``texture``): multi-distance/multi-angle GLCM, uniform LBP
summaries and Gabor band energies.

All three work in **pixel units** - GLCM and LBP on the normalised height image
(:func:`~hybridtmd.descriptors.core.normalise_height`) like the paper's GLCM, Gabor on the power
spectrum of the levelled heights - of the image at the reference pixel size
(``DescriptorConfig.reference_pixel_nm``, 10 nm): a distance of 1 px in a name is one reference
pixel (10 nm), so the values do not depend on the scan's pixel size. With
``reference_pixel_nm=None`` they are in the image's own pixels (pixel-dependent, release 0.1.0). Every summary averages over
directions that a 90-degree rotation permutes (GLCM at 0/45/90/135 degrees, LBP's circular
neighbourhood, Gabor at 0/45/90/135 degrees), so all of them are invariant to 90-degree rotations.

* **GLCM** - symmetric normalised co-occurrence matrices of the image quantised to 32 grey levels
  at distances 1, 2, 4 px and angles 0, 45, 90, 135 degrees; each property is the mean over the
  four angles (Haralick et al. 1973). ``glcm_contrast_anisotropy_d1px`` is the spread of the
  contrast over the angles, (max - min) / mean.
* **LBP** - rotation-invariant uniform local binary patterns (Ojala et al. 2002; the
  ``method="uniform"`` codes of ``skimage.feature.local_binary_pattern``, computed by
  :func:`~hybridtmd.descriptors.fast.uniform_lbp` - identical codes) with 8 neighbours at radius 1 and at
  radius 2 on the 8-bit image. Summaries: fraction of uniform patterns, entropy of the code
  histogram, and the fractions of peaks (code 0: all neighbours lower), flat/pits (code P: no
  neighbour lower) and edges (codes P/2-1 ... P/2+1).
* **Gabor** - share of the height variance passed by a symmetric Gabor filter pair of one-octave
  bandwidth (skimage's ``gabor_kernel`` defaults) at wavelengths 4, 8, 16, 32 px, computed
  exactly in the Fourier domain from the windowed power spectrum (Parseval) instead of by
  convolution; mean over the four orientations and its anisotropy (max - min) / (max + min).
"""

from __future__ import annotations

import functools

import numpy as np

from .core import Surface
from .fast import uniform_lbp
from .fast_glcm import glcm_properties
from .registry import DescriptorValues, annotate_descriptors, register_family

REFERENCE = ("Haralick, Shanmugam & Dinstein, IEEE TSMC 3, 610 (1973); Ojala, Pietikainen & Maenpaa, "
             "IEEE TPAMI 24, 971 (2002); Gabor energies: Jain & Farrokhnia, Pattern Recogn. 24, 1167 (1991)")

GLCM_DISTANCES_PX = (1, 2, 4)
GLCM_LEVELS = 32
GLCM_PROPS = ("contrast", "dissimilarity", "homogeneity", "energy", "correlation", "entropy")
LBP_SETTINGS = ((8, 1), (8, 2))  # (neighbours P, radius R in px)
GABOR_WAVELENGTHS_PX = (4, 8, 16, 32)
GABOR_ANGLES_DEG = (0, 45, 90, 135)

_GLCM_DEFS = {
    "contrast": "sum P(i,j)(i-j)²",
    "dissimilarity": "sum P(i,j)|i-j|",
    "homogeneity": "sum P(i,j)/(1+(i-j)²)",
    "energy": "sqrt(sum P(i,j)²)",
    "correlation": "grey-level correlation of pixel pairs",
    "entropy": "-sum P(i,j) ln P(i,j)",
}


def _descriptor_table() -> list[tuple[str, str, str]]:
    rows = []
    for d in GLCM_DISTANCES_PX:
        for prop in GLCM_PROPS:
            unit = "nat" if prop == "entropy" else "1"
            rows.append((f"glcm_{prop}_d{d}px", unit,
                         f"GLCM {prop}, {_GLCM_DEFS[prop]}, 32 levels, distance {d} px, mean of 0/45/90/135 deg"))
    rows.append(("glcm_contrast_anisotropy_d1px", "1", "(max - min) / mean of the GLCM contrast over 0/45/90/135 deg at 1 px"))
    for p, r in LBP_SETTINGS:
        key = f"lbp_p{p}r{r}"
        where = f"uniform LBP, {p} neighbours at radius {r} px"
        rows += [
            (f"{key}_uniform_fraction", "1", f"fraction of pixels with a uniform pattern ({where})"),
            (f"{key}_entropy_bits", "bit", f"Shannon entropy of the code histogram ({where})"),
            (f"{key}_peak_fraction", "1", f"fraction of local peaks, all neighbours lower ({where})"),
            (f"{key}_flat_or_pit_fraction", "1", f"fraction of pixels with no lower neighbour: flats and pits ({where})"),
            (f"{key}_edge_fraction", "1", f"fraction of edge patterns, about half the neighbours lower ({where})"),
        ]
    for lam in GABOR_WAVELENGTHS_PX:
        rows.append((f"gabor_energy_fraction_{lam}px", "1",
                     f"share of height variance in the one-octave Gabor band at wavelength {lam} px, mean of 4 orientations"))
    for lam in GABOR_WAVELENGTHS_PX:
        rows.append((f"gabor_anisotropy_{lam}px", "1",
                     f"(max - min) / (max + min) of the Gabor band energy over 4 orientations at wavelength {lam} px"))
    return rows


DESCRIPTORS = _descriptor_table()
NAMES = [d[0] for d in DESCRIPTORS]


# --------------------------------------------------------------------------------------------
# Array functions
# --------------------------------------------------------------------------------------------


def glcm_features(image_uint8: np.ndarray, distances: tuple[int, ...] = GLCM_DISTANCES_PX,
                  levels: int = GLCM_LEVELS) -> dict[str, float]:
    """Angle-averaged GLCM properties of an 8-bit image re-quantised to ``levels`` grey levels
    (``levels`` must divide 256). Keys ``glcm_<prop>_d<d>px`` and ``glcm_contrast_anisotropy_d<d0>px``."""
    from skimage.feature import graycomatrix

    q = (np.asarray(image_uint8, np.uint8) // (256 // levels)).astype(np.uint8)
    angles = np.deg2rad([0, 45, 90, 135])
    glcm = graycomatrix(q, distances=list(distances), angles=angles, levels=levels, symmetric=True, normed=True)
    out = {}
    for prop, values in glcm_properties(glcm, GLCM_PROPS).items():  # (distances, angles)
        for k, d in enumerate(distances):
            out[f"glcm_{prop}_d{d}px"] = float(values[k].mean())
        if prop == "contrast":
            c = values[0]
            out[f"glcm_contrast_anisotropy_d{distances[0]}px"] = float((c.max() - c.min()) / c.mean()) if c.mean() > 0 else np.nan
    return out


def lbp_summary(codes: np.ndarray, n_points: int) -> dict[str, float]:
    """Summaries of a uniform-LBP code image: ``uniform_fraction, entropy_bits, peak_fraction,
    flat_or_pit_fraction, edge_fraction`` (see module docstring)."""
    hist = np.bincount(codes.ravel(), minlength=n_points + 2) / codes.size
    nz = hist[hist > 0]
    half = n_points // 2
    return {
        "uniform_fraction": float(1.0 - hist[n_points + 1]),
        "entropy_bits": float(-(nz * np.log2(nz)).sum()),
        "peak_fraction": float(hist[0]),
        "flat_or_pit_fraction": float(hist[n_points]),
        "edge_fraction": float(hist[half - 1 : half + 2].sum()),
    }


@functools.lru_cache(maxsize=16)
def _gabor_weights(shape: tuple[int, int], wavelengths_px: tuple[float, ...], angles_deg: tuple[float, ...],
                   bandwidth: float) -> np.ndarray:
    """Squared Gabor transfer functions on the ``fftfreq`` grid of ``shape`` (cycles/px),
    flattened to ``(n_wavelengths * n_angles, rows * cols)`` float32. They depend only on the
    image shape, so they are computed once per shape (a dataset has a few scan sizes, so its
    reference grids have a few shapes)."""
    from scipy import fft

    b = 2.0**bandwidth
    prefactor = np.sqrt(np.log(2) / 2) / np.pi * (b + 1) / (b - 1)
    FY, FX = np.meshgrid(fft.fftfreq(shape[0]), fft.fftfreq(shape[1]), indexing="ij")
    weights = np.empty((len(wavelengths_px) * len(angles_deg), shape[0] * shape[1]), np.float32)
    row = 0
    for lam in wavelengths_px:
        f0 = 1.0 / lam
        k = 4 * np.pi**2 * (prefactor / f0) ** 2
        for theta in np.deg2rad(angles_deg):
            u, v = f0 * np.cos(theta), f0 * np.sin(theta)
            plus = (FX - u) ** 2 + (FY - v) ** 2
            minus = (FX + u) ** 2 + (FY + v) ** 2
            weights[row] = np.exp(-k * np.minimum(plus, minus)).ravel()
            row += 1
    weights[:, 0] = 0.0  # DC carries no texture
    return weights


def gabor_band_energies(psd: np.ndarray, wavelengths_px: tuple[float, ...] = GABOR_WAVELENGTHS_PX,
                        angles_deg: tuple[float, ...] = GABOR_ANGLES_DEG, bandwidth: float = 1.0) -> np.ndarray:
    """Share of the power of ``psd`` (2-D, ``fftfreq`` layout) passed by symmetric Gabor filters:
    array ``(len(wavelengths), len(angles))``.

    The squared transfer function of skimage's ``gabor_kernel(f0, theta, bandwidth)`` is
    ``exp(-4 pi² sigma² |f - f0|²)`` with ``sigma = c(bandwidth) / f0`` (frequencies in
    cycles/px); the filter pair at ``±f0`` takes the larger of the two lobes. By Parseval the
    output energy is the transfer-weighted sum of the PSD, so no convolution is needed.
    """
    power = np.asarray(psd, float).copy()
    power[0, 0] = 0.0
    total = power.sum()
    if not total > 0:
        return np.full((len(wavelengths_px), len(angles_deg)), np.nan)
    weights = _gabor_weights(power.shape, tuple(wavelengths_px), tuple(angles_deg), float(bandwidth))
    energies = weights @ (power.ravel() / total).astype(np.float32)
    return energies.astype(float).reshape(len(wavelengths_px), len(angles_deg))


# --------------------------------------------------------------------------------------------
# Family
# --------------------------------------------------------------------------------------------


def texture_descriptors(surface: Surface) -> DescriptorValues:
    """All ``texture`` descriptors of a :class:`Surface` (see the module table), at the
    reference pixel size."""
    surface = surface.reference
    out = DescriptorValues()
    u8 = surface.uint8
    if u8 is None:
        out.undefined(NAMES, surface.no_contrast_reason)
        return out
    out.update(glcm_features(u8))
    for p, r in LBP_SETTINGS:
        summary = lbp_summary(uniform_lbp(u8, p, r), p)
        out.update({f"lbp_p{p}r{r}_{k}": v for k, v in summary.items()})
    energies = gabor_band_energies(surface.power_spectrum[0])
    for lam, row in zip(GABOR_WAVELENGTHS_PX, energies, strict=True):
        out[f"gabor_energy_fraction_{lam}px"] = float(row.mean())
        spread = row.max() + row.min()
        out[f"gabor_anisotropy_{lam}px"] = float((row.max() - row.min()) / spread) if spread > 0 else np.nan
    return out


register_family(
    "texture", texture_descriptors, default=True, reference=REFERENCE, descriptors=DESCRIPTORS, any_channel=True,
    description="GLCM, uniform LBP and Gabor band energies of the normalised height image (reference pixels)",
)
annotate_descriptors(NAMES, resolution_invariant=True,
                     scale_note="distances and wavelengths in pixels of the reference grid (one physical scale)")
annotate_descriptors(["lbp_p8r1_peak_fraction"], resolution_invariant=False, scale_note=(
    "single-pixel maxima of the reference grid: how much detail below the reference pixel the "
    "scan resolved changes their number (~20 % between 5 and 10 nm scans)"))
annotate_descriptors(["gabor_energy_fraction_4px"], resolution_invariant=False, scale_note=(
    "the 4-pixel band is twice the reference grid's Nyquist wavelength: a scan whose pixel is near "
    "the reference has it blurred by its own sampling (median ratio 0.79 between 11.7 and 5.9 nm "
    "scans of one surface, tests/test_descriptors_scale.py)"))
