"""ISO 25178-2 areal height parameters (family ``areal``).

All parameters are computed on the levelled height map ``z`` (nm) relative to its mean plane
(ISO 25178-2:2021, after form removal: here the levelling of :mod:`hybridtmd.preprocess`), over
the whole evaluation area (the image):

=========  ======  ===========================================================================
name       unit    definition (ISO 25178-2 clause 4.1 height, 4.3 hybrid parameters)
=========  ======  ===========================================================================
sa_nm      nm      Sa, arithmetic mean height: mean |z|
sq_nm      nm      Sq, root mean square height: sqrt(mean z²)
ssk        1       Ssk, skewness: mean z³ / Sq³
sku        1       Sku, kurtosis: mean z⁴ / Sq⁴ (3 for a Gaussian surface, 1.5 for a sinusoid)
sp_nm      nm      Sp, maximum peak height: max z
sv_nm      nm      Sv, maximum pit height: |min z|
sz_nm      nm      Sz, maximum height: Sp + Sv
sdq        1       Sdq, root mean square gradient: sqrt(mean (dz/dx)² + (dz/dy)²)
sdr_pct    %       Sdr, developed interfacial area ratio: 100 (mean sqrt(1 + |∇z|²) - 1)
=========  ======  ===========================================================================

Height parameters (Sa ... Sz) use the native image. Slopes (Sdq, Sdr) depend on the sampling
interval - a rough surface is steeper at finer pixels - so they are evaluated on the image at the
reference pixel size (``DescriptorConfig.reference_pixel_nm``, 10 nm: the resampling acts as
ISO 25178-3's S-filter with that nesting index), which makes them resolution-invariant for images
at or finer than the reference. Stencil (``DescriptorConfig.slope_stencil``): ``"central"``
(default) - ``numpy.gradient`` with the pixel sizes, central differences inside and one-sided at
the border; ``"forward"`` - forward differences on the ``(rows-1, cols-1)`` grid, the convention
of SurfaceTopography's ``rms_gradient`` and Gwyddion (cross-checked in the tests). Central
differences average two neighbouring forward slopes, so on surfaces rough at the pixel scale
they read lower (12-50 % on AFM images). Sdr uses the per-pixel gradient of the same stencil,
``mean sqrt(1 + |grad z|²) - 1``, the usual discretisation of ISO 25178-2's integral (Gwyddion
triangulates instead; the two agree to second order in slope).

Other channels (phase, adhesion...): the height parameters are in the channel's unit (Sq of a
phase map in degrees), Sdq in that unit per nm; Sdr needs heights in nm and is NaN otherwise.
"""

from __future__ import annotations

import numpy as np

from .core import Surface
from .registry import DescriptorValues, annotate_descriptors, register_family

ISO_REFERENCE = "ISO 25178-2:2021 Geometrical product specifications (GPS) - Surface texture: Areal - Part 2"

DESCRIPTORS = [
    ("sa_nm", "nm", "ISO 25178 Sa: arithmetic mean height, mean |z - mean z|"),
    ("sq_nm", "nm", "ISO 25178 Sq: root mean square height, sqrt(mean (z - mean z)²)"),
    ("ssk", "1", "ISO 25178 Ssk: skewness of the height distribution, mean z³ / Sq³"),
    ("sku", "1", "ISO 25178 Sku: kurtosis of the height distribution, mean z⁴ / Sq⁴ (Gaussian 3)"),
    ("sp_nm", "nm", "ISO 25178 Sp: maximum peak height above the mean plane"),
    ("sv_nm", "nm", "ISO 25178 Sv: maximum pit depth below the mean plane (absolute value)"),
    ("sz_nm", "nm", "ISO 25178 Sz: maximum height, Sp + Sv"),
    ("sdq", "1", "ISO 25178 Sdq: root mean square surface slope (nm/nm)"),
    ("sdr_pct", "%", "ISO 25178 Sdr: developed interfacial area ratio, extra surface area over projected area"),
]

_SHAPE = ("ssk", "sku")


def areal_parameters(height: np.ndarray, pixel_size_nm: tuple[float, float] = (1.0, 1.0),
                     flat_tol_nm: float = 1e-6, *,
                     gradient: tuple[np.ndarray, np.ndarray] | None = None) -> DescriptorValues:
    """ISO 25178-2 height (Sa, Sq, Ssk, Sku, Sp, Sv, Sz) and hybrid (Sdq, Sdr) parameters.

    Parameters
    ----------
    height : (rows, cols) array
        Levelled heights in nm (form already removed).
    pixel_size_nm : (x, y)
        Pixel size in nm; slopes are dz/dx with x along columns.
    flat_tol_nm : float
        Below this Sq the surface is flat and Ssk, Sku are undefined (NaN with a reason).
    gradient : (dz/dy, dz/dx), optional
        The slopes when already computed or of another stencil or resolution (default
        ``numpy.gradient(height, dy, dx)``; the mean plane does not change slopes).

    Returns
    -------
    DescriptorValues
        ``sa_nm, sq_nm, ssk, sku, sp_nm, sv_nm, sz_nm, sdq, sdr_pct`` (see module table).
    """
    z = np.asarray(height, float)
    z = z - z.mean()
    out = DescriptorValues()
    abs_z = np.abs(z)
    z2 = z * z
    sq = float(np.sqrt(z2.mean()))
    out["sa_nm"] = float(abs_z.mean())
    out["sq_nm"] = sq
    if sq < flat_tol_nm:
        out.undefined(_SHAPE, f"flat surface (Sq = {sq:.2g} nm < {flat_tol_nm:g} nm): skewness/kurtosis undefined")
    else:
        out["ssk"] = float((z2 * z).mean() / sq**3)
        out["sku"] = float((z2 * z2).mean() / sq**4)
    out["sp_nm"] = float(z.max())
    out["sv_nm"] = float(-z.min())
    out["sz_nm"] = out["sp_nm"] + out["sv_nm"]
    gy, gx = np.gradient(z, pixel_size_nm[1], pixel_size_nm[0]) if gradient is None else gradient
    slope2 = gx * gx + gy * gy
    out["sdq"] = float(np.sqrt(slope2.mean()))
    out["sdr_pct"] = float(100.0 * (np.sqrt(1.0 + slope2).mean() - 1.0))
    return out


def areal_descriptors(surface: Surface) -> DescriptorValues:
    """All ``areal`` descriptors of a :class:`Surface`: heights on the native image, slopes at
    the reference pixel size with the configured stencil (module docstring)."""
    out = areal_parameters(surface.height, surface.pixel_size_nm, surface.config.flat_tol_nm,
                           gradient=surface.reference.slope_gradient)
    if surface.z_unit != "nm":
        out.undefined("sdr_pct", f"Sdr needs heights in nm; this channel is in {surface.z_unit}")
    return out


register_family(
    "areal", areal_descriptors, default=True, reference=ISO_REFERENCE, descriptors=DESCRIPTORS, any_channel=True,
    description="ISO 25178-2 areal height and hybrid parameters of the levelled height map",
)
annotate_descriptors(["sa_nm", "sq_nm", "ssk", "sku"], resolution_invariant=True,
                     scale_note="moments of the height distribution: area-averaging to coarser pixels changes them little")
annotate_descriptors(["sp_nm", "sv_nm", "sz_nm"], scale_note=(
    "single-pixel extremes: finer pixels resolve higher peaks, deeper pits and more noise"))
annotate_descriptors(["sdq", "sdr_pct"], resolution_invariant=True,
                     scale_note="slopes at the reference pixel size (an S-filter of that nesting index)")
for _name in ("sa_nm", "sq_nm", "sp_nm", "sv_nm", "sz_nm"):
    annotate_descriptors([_name], z_unit="{z}")
annotate_descriptors(["sdq"], z_unit="{z}/nm")
