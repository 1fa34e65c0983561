"""Spatial and spectral descriptors (family ``spectral``): power spectral density, fractal
dimension, autocorrelation length and texture aspect ratio (ISO 25178-2 Sal, Str), orientation.

Conventions
-----------
* Frequencies are spatial frequencies in cycles per nm (reported per µm where named so).
* The PSD is the Hann-windowed periodogram of the levelled, mean-free heights (see
  :attr:`~hybridtmd.descriptors.core.Surface.power_spectrum`), in nm⁴, radially averaged in
  rings of width ``1 / L`` (L the longer image side).
* Angles are in degrees in ``[0, 180)``, counter-clockwise from the +x (column) axis as the image
  is displayed (rows downwards), i.e. with +y pointing *up* the screen.
* Everything is computed on the image at the reference pixel size
  (``DescriptorConfig.reference_pixel_nm``): the PSD fit band (wavelengths L/4 to 4 reference
  px), the peak of f²·PSD and the ACF then cover the same physical band at any pixel size.
* ``fractal_dimension`` is meaningful for a surface only in [2, 3] (PSD slopes -4 ... -2);
  outside it is NaN with the reason (``DescriptorConfig.fractal_range_check``); the slope itself
  (``psd_loglog_slope``, out of the default set as an affine function of it) stays available.
"""

from __future__ import annotations

import functools

import numpy as np

from .core import Surface
from .registry import DescriptorValues, annotate_descriptors, register_family

REFERENCE = ("ISO 25178-2:2021 (Sal, Str, Std); Jacobs, Junge & Pastewka, Surf. Topogr.: Metrol. Prop. 5, "
             "013001 (2017) for PSD and fractal dimension")

DESCRIPTORS = [
    ("psd_loglog_slope", "1", "slope of log PSD vs log frequency between wavelengths L/4 and 4 px (-(2H+2) for a self-affine surface)"),
    ("fractal_dimension", "1", "fractal dimension from the PSD slope, D = (8 + slope) / 2 (meaningful for 2 <= D <= 3)"),
    ("psd_corner_frequency_per_um", "per µm", "frequency where the low-frequency PSD plateau meets the high-frequency power law (roll-off)"),
    ("psd_peak_wavelength_nm", "nm", "wavelength of the maximum of f²·PSD(f), the band carrying most height variance per octave"),
    ("sal_nm", "nm", "ISO 25178 Sal: shortest lag at which the normalised autocorrelation decays to 0.2"),
    ("str", "1", "ISO 25178 Str: texture aspect ratio, shortest / longest autocorrelation decay length (1 isotropic)"),
    ("dominant_orientation_deg", "deg", "lay direction of the surface (ridges/steps) from the PSD-weighted doubled-angle mean, 0-180"),
    ("orientation_strength", "1", "|PSD-weighted mean of exp(2i·angle)| over the spectrum: 0 isotropic, 1 single direction"),
]
NAMES = [d[0] for d in DESCRIPTORS]


# --------------------------------------------------------------------------------------------
# Array functions
# --------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=16)
def _frequency_geometry(rows: int, cols: int, ry: float, rx: float) -> tuple[np.ndarray, int, np.ndarray]:
    """Per-grid quantities of the ``fftfreq`` layout in units of the ring width ``df`` (frequency
    steps ``ry = dfy / df``, ``rx = dfx / df``): ring index of every frequency (0 = DC or beyond
    Nyquist), number of rings, and ``exp(2i phi)`` of every frequency direction inside the
    Nyquist circle (0 elsewhere). In these units they depend on the pixel aspect only, not on
    the pixel size, so images of one shape share one cached geometry; integer-valued radii
    also make the classification of frequencies exactly on the Nyquist circle exact."""
    from scipy import fft

    fy, fx = fft.fftfreq(rows, 1.0 / (rows * ry)), fft.fftfreq(cols, 1.0 / (cols * rx))
    FY, FX = np.meshgrid(fy, fx, indexing="ij")
    radius = np.hypot(FY, FX)
    nyquist = min(np.abs(fx).max(), np.abs(fy).max())
    n_rings = int(np.floor(nyquist + 1e-9))
    ring = np.rint(radius).astype(np.int64)
    ring[(ring < 1) | (ring > n_rings)] = 0
    # rows grow downwards, so +y (up the screen) is -fy; strictly inside Nyquist so the
    # unpaired Nyquist row/column of even sizes adds no direction of its own
    inside = (radius > 0) & (radius < nyquist)
    unit = np.where(inside, np.exp(2j * np.arctan2(-FY, FX)), 0)
    return ring.ravel(), n_rings, unit.ravel()


def _geometry(psd: np.ndarray, fy: np.ndarray, fx: np.ndarray) -> tuple[np.ndarray, int, float, np.ndarray]:
    """:func:`_frequency_geometry` of a PSD grid and its ring width ``df`` (1/nm), the larger
    frequency step."""
    rows, cols = psd.shape
    dfy = float(abs(fy[1] - fy[0])) if rows > 1 else 1.0
    dfx = float(abs(fx[1] - fx[0])) if cols > 1 else 1.0
    df = max(dfx if cols > 1 else 0.0, dfy if rows > 1 else 0.0)
    ring, n_rings, unit = _frequency_geometry(rows, cols, dfy / df, dfx / df)
    return ring, n_rings, df, unit


def radial_psd(psd: np.ndarray, fy: np.ndarray, fx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Radially average a 2-D PSD (``fftfreq`` layout) in rings of width ``max(dfx, dfy)``.

    Returns ``(f, p)``: ring-centre frequencies (1/nm, excluding DC, up to the lower Nyquist
    frequency) and the mean PSD in each ring. Empty rings are dropped.
    """
    ring, n_rings, df, _ = _geometry(psd, fy, fx)
    sums = np.bincount(ring, weights=psd.ravel(), minlength=n_rings + 1)
    counts = np.bincount(ring, minlength=n_rings + 1)
    keep = counts > 0
    keep[0] = False
    return np.nonzero(keep)[0] * df, sums[keep] / counts[keep]


def psd_fit(f: np.ndarray, p: np.ndarray, f_low: float, f_high: float) -> tuple[float, float]:
    """Least-squares line through ``log10 p`` vs ``log10 f`` on ``f_low <= f <= f_high``:
    ``(slope, intercept)``; NaNs when fewer than 3 positive points."""
    use = (f >= f_low) & (f <= f_high) & (p > 0)
    if use.sum() < 3:
        return float("nan"), float("nan")
    slope, intercept = np.polyfit(np.log10(f[use]), np.log10(p[use]), 1)
    return float(slope), float(intercept)


def autocorrelation(height: np.ndarray) -> np.ndarray:
    """Normalised areal autocorrelation of the mean-free heights for lags up to half the image.

    Linear (zero-padded) correlation divided by the number of overlapping pixel pairs at each
    lag, then by its value at lag 0 (ISO 25178-2's ACF). Returned centred: shape
    ``(2*(rows//2)+1, 2*(cols//2)+1)``, lag 0 at the centre, row lag increasing downwards.
    """
    from scipy import fft

    z = np.asarray(height, float)
    z = z - z.mean()
    rows, cols = z.shape
    hr, hc = rows // 2, cols // 2
    shape = (fft.next_fast_len(rows + hr), fft.next_fast_len(cols + hc))
    # rfft2 / irfft2 on the zero-padded grid, with the padding rows skipped where they are
    # known: the row transforms of the zero rows are zero, and only the rows of lags -hr..hr
    # are transformed back
    spec = fft.fft(fft.rfft(z, n=shape[1], axis=1), n=shape[0], axis=0)
    power = spec.real * spec.real
    power += spec.imag * spec.imag  # = spec * conj(spec), whose imaginary part is exactly 0
    lags_r = np.r_[-hr : hr + 1]
    lags_c = np.r_[-hc : hc + 1]
    # negative lags wrap to the end of the circular correlation
    corr = fft.irfft(fft.ifft(power, axis=0)[lags_r % shape[0]], n=shape[1], axis=1)
    acf = corr[:, lags_c % shape[1]]
    overlap = (rows - np.abs(lags_r))[:, None] * (cols - np.abs(lags_c))[None, :]
    acf /= overlap
    acf /= acf[hr, hc]
    return acf


_RAY_CHUNK = 32  # radii sampled per step of acf_decay_lengths


def acf_decay_lengths(acf: np.ndarray, pixel_size_nm: tuple[float, float], threshold: float = 0.2,
                      n_angles: int = 180) -> tuple[np.ndarray, np.ndarray]:
    """Distance (nm) along each direction at which a centred ACF first falls to ``threshold``.

    Rays at ``n_angles`` directions in [0, 180) degrees (the ACF is point-symmetric), sampled
    every half pixel by bilinear interpolation up to the edge of the lag window; the crossing is
    interpolated linearly between samples. Directions that never decay give ``inf``.
    Returns ``(angles_deg, lengths_nm)``.
    """
    from scipy.ndimage import map_coordinates

    dx, dy = pixel_size_nm
    cr, cc = (acf.shape[0] - 1) / 2, (acf.shape[1] - 1) / 2
    r_max = min(cr * dy, cc * dx)
    step = 0.5 * min(dx, dy)
    radii = np.arange(0.0, r_max + step / 2, step)
    angles = np.arange(n_angles) * (180.0 / n_angles)
    theta = np.deg2rad(angles)
    sin, cos = np.sin(theta), np.cos(theta)
    lengths = np.full(n_angles, np.inf)
    # rays are sampled outwards in chunks and dropped once they cross: an ACF usually decays
    # within a fraction of the window, so most of the far samples are never needed
    pending, previous = np.arange(n_angles), None
    for begin in range(0, len(radii), _RAY_CHUNK):
        r = radii[begin : begin + _RAY_CHUNK]
        rows = cr - np.outer(sin[pending], r) / dy  # +y up the screen = decreasing row
        cols = cc + np.outer(cos[pending], r) / dx
        samples = map_coordinates(acf, [rows.ravel(), cols.ravel()], order=1, mode="nearest").reshape(rows.shape)
        offset = begin
        if previous is not None:  # the last sample before this chunk, for the interpolation
            samples, offset = np.column_stack([previous, samples]), begin - 1
        below = samples <= threshold
        crossed = below.any(axis=1)
        k = np.argmax(below, axis=1)[crossed]
        rays = np.nonzero(crossed)[0]
        a, b = samples[rays, np.maximum(k - 1, 0)], samples[rays, k]
        t = np.divide(a - threshold, a - b, out=np.zeros_like(a), where=a != b)
        at = k + offset  # index into radii; 0 only when the ACF starts below the threshold
        lo, hi = radii[np.maximum(at - 1, 0)], radii[at]
        found = np.where(at == 0, 0.0, lo + t * (hi - lo))
        lengths[pending[rays]] = found
        previous, pending = samples[~crossed, -1], pending[~crossed]
        if not pending.size:
            break
    return angles, lengths


def spectral_orientation(psd: np.ndarray, fy: np.ndarray, fx: np.ndarray) -> tuple[float, float]:
    """Dominant lay direction (deg, [0, 180)) and its strength (0-1) from a 2-D PSD.

    The PSD-weighted mean of ``exp(2i phi)`` over frequency directions ``phi`` (strictly inside
    the circle of the lower Nyquist frequency, DC excluded, so the square frequency grid adds no
    anisotropy of its own) gives the dominant *frequency* direction; the lay (ridges, step
    edges) is perpendicular to it. Angles as in the module docstring.
    """
    ring, _, _, unit = _geometry(psd, fy, fx)
    weights = np.where(unit != 0, psd.ravel(), 0.0)
    total = weights.sum()
    if not total > 0:
        return float("nan"), float("nan")
    # numpy's pairwise sum, not BLAS: the same digits with any number of BLAS threads
    vector = np.add.reduce(weights * unit) / total
    freq_dir = np.rad2deg(np.angle(vector) / 2)
    return float((freq_dir + 90.0) % 180.0), float(np.abs(vector))


# --------------------------------------------------------------------------------------------
# Family
# --------------------------------------------------------------------------------------------


def spectral_descriptors(surface: Surface) -> DescriptorValues:
    """All ``spectral`` descriptors of a :class:`Surface` (see the module table), at the
    reference pixel size."""
    surface = surface.reference
    out = DescriptorValues()
    if surface.is_flat:
        out.undefined(NAMES, "flat image: no height variation to analyse")
        return out
    psd, fy, fx = surface.power_spectrum
    f, p = radial_psd(psd, fy, fx)
    rows, cols = surface.height.shape
    dx, dy = surface.pixel_size_nm
    length = max(cols * dx, rows * dy)
    f_low, f_high = 4.0 / length, 1.0 / (4.0 * max(dx, dy))
    slope, intercept = psd_fit(f, p, f_low, f_high)
    out["psd_loglog_slope"] = slope
    out["fractal_dimension"] = (8.0 + slope) / 2.0
    if np.isnan(slope):
        out.undefined(["psd_loglog_slope", "fractal_dimension"], "image too small for a PSD fit (< 3 frequencies)")
    elif surface.config.fractal_range_check and not 2.0 <= out["fractal_dimension"] <= 3.0:
        out.undefined("fractal_dimension", f"PSD slope {slope:.2f} gives D = {out['fractal_dimension']:.2f}, outside "
                      "the range [2, 3] of a self-affine surface (slopes -4 ... -2)")
    # corner: where the plateau of the three lowest rings meets the power law fitted above
    plateau = np.log10(np.mean(p[:3])) if p.size >= 3 and np.all(p[:3] > 0) else np.nan
    if np.isnan(slope) or np.isnan(plateau) or slope >= 0:
        out.undefined("psd_corner_frequency_per_um", "PSD has no decaying power law to meet a plateau")
    else:
        fc = 10 ** ((plateau - intercept) / slope)
        if f[0] <= fc <= f[-1]:
            out["psd_corner_frequency_per_um"] = fc * 1e3
        else:
            out.undefined("psd_corner_frequency_per_um", "roll-off lies outside the measured frequency band")
    weighted = f**2 * p
    out["psd_peak_wavelength_nm"] = float(1.0 / f[np.argmax(weighted)]) if f.size else np.nan

    acf = autocorrelation(surface.height)
    _, lengths = acf_decay_lengths(acf, surface.pixel_size_nm, surface.config.acf_threshold)
    if np.all(np.isinf(lengths)):
        out.undefined(["sal_nm", "str"], "autocorrelation does not decay to 0.2 within half the image")
    else:
        out["sal_nm"] = float(lengths.min())
        if np.isinf(lengths.max()):
            out.undefined("str", "autocorrelation does not decay to 0.2 in some direction within half the image")
        else:
            out["str"] = float(lengths.min() / lengths.max()) if lengths.max() > 0 else np.nan
    angle, strength = spectral_orientation(psd, fy, fx)
    out["dominant_orientation_deg"] = angle
    out["orientation_strength"] = strength
    return out


register_family(
    "spectral", spectral_descriptors, default=True, reference=REFERENCE, descriptors=DESCRIPTORS, any_channel=True,
    description="power spectrum, fractal dimension, autocorrelation (Sal, Str) and orientation",
)
annotate_descriptors(NAMES, resolution_invariant=True,
                     scale_note="physical frequency band of the image at the reference pixel size")
annotate_descriptors(["psd_loglog_slope"], default=False)
