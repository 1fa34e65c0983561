"""Release 0.1.0 compatibility, in one place: what its saved models meant, so they load and
predict as they did (``tests/test_model_compat.py``, fixtures in ``tests/fixtures/release_0.1.0``).

Release 0.1.0 (commit 20cc887) saved models with ``families: None`` and ``config: None``, meaning
its default set (every descriptor of ``paper, areal, spectral, grains, texture``, 98 columns)
computed with its default settings. The default set changed since (resolution-invariant
families, duplicate columns out, robust grain threshold), so ``families=None`` /
:data:`RELEASE_0_1_0` select :data:`RELEASE_0_1_0_COLUMNS` and, without an explicit config,
:data:`RELEASE_0_1_0_SETTINGS` (:meth:`~hybridtmd.descriptors.DescriptorConfig.release_0_1_0`).
Its model manifests (hybrid format 2, fine-tuned format 1) are read by the functions at the end:
:func:`with_saved_families`, :func:`saved_level_flag`, :func:`saved_head`,
:func:`saved_head_selection`, :func:`files_of_finetune_format_1`. This module imports nothing but
the errors, so every stage from the descriptors on may use it. Never edit the lists.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import ModelFileError

#: preset selection: the columns release 0.1.0 computed by default (its models saved ``families: None``)
RELEASE_0_1_0 = "release-0.1.0"
#: the families of release 0.1.0's default set, in its column order; their descriptors named
#: in :data:`RELEASE_0_1_0_COLUMNS` are that release's columns
RELEASE_0_1_0_FAMILIES = ("paper", "areal", "spectral", "grains", "texture")
#: release 0.1.0's descriptor settings (its models saved them as ``config: None``): every image
#: at its own pixel size, plain Otsu grain threshold, fractal dimension unchecked
RELEASE_0_1_0_SETTINGS: dict[str, Any] = {"reference_pixel_nm": None, "grain_threshold": "otsu",
                                          "fractal_range_check": False}

#: the 98 columns of release 0.1.0's default set, in its order
RELEASE_0_1_0_COLUMNS = (
    "paper_rms_roughness",
    "paper_rms_roughness_nm",
    "paper_step_edge_count",
    "paper_step_edge_density_per_um2",
    "paper_defect_density_per_px",
    "paper_defect_density_per_um2",
    "paper_anisotropy",
    "paper_anisotropy_rad",
    "paper_local_variation",
    "paper_local_variation_nm",
    "paper_dog_blob_count",
    "paper_dog_blob_density_per_um2",
    "paper_glcm_contrast",
    "paper_glcm_dissimilarity",
    "paper_glcm_homogeneity",
    "paper_glcm_energy",
    "paper_glcm_correlation",
    "paper_glcm_asm",
    "paper_grain_count",
    "paper_grain_density_per_px",
    "paper_grain_density_per_um2",
    "paper_grain_mean_eq_diameter_px",
    "paper_grain_mean_eq_diameter_nm",
    "paper_domain_count",
    "paper_domain_density_per_px",
    "paper_domain_density_per_um2",
    "paper_domain_mean_area_px",
    "paper_domain_mean_area_nm2",
    "sa_nm",
    "sq_nm",
    "ssk",
    "sku",
    "sp_nm",
    "sv_nm",
    "sz_nm",
    "sdq",
    "sdr_pct",
    "psd_loglog_slope",
    "fractal_dimension",
    "psd_corner_frequency_per_um",
    "psd_peak_wavelength_nm",
    "sal_nm",
    "str",
    "dominant_orientation_deg",
    "orientation_strength",
    "grain_count",
    "grain_density_per_um2",
    "grain_coverage_fraction",
    "grain_threshold_nm",
    "grain_area_mean_nm2",
    "grain_eq_diameter_mean_nm",
    "grain_eq_diameter_std_nm",
    "grain_eq_diameter_skew",
    "grain_height_mean_nm",
    "grain_perimeter_mean_nm",
    "grain_solidity_mean",
    "grain_triangularity_mean",
    "layer_count",
    "layer_spacing_nm",
    "layer_span_monolayers",
    "adlayer_fraction",
    "glcm_contrast_d1px",
    "glcm_dissimilarity_d1px",
    "glcm_homogeneity_d1px",
    "glcm_energy_d1px",
    "glcm_correlation_d1px",
    "glcm_entropy_d1px",
    "glcm_contrast_d2px",
    "glcm_dissimilarity_d2px",
    "glcm_homogeneity_d2px",
    "glcm_energy_d2px",
    "glcm_correlation_d2px",
    "glcm_entropy_d2px",
    "glcm_contrast_d4px",
    "glcm_dissimilarity_d4px",
    "glcm_homogeneity_d4px",
    "glcm_energy_d4px",
    "glcm_correlation_d4px",
    "glcm_entropy_d4px",
    "glcm_contrast_anisotropy_d1px",
    "lbp_p8r1_uniform_fraction",
    "lbp_p8r1_entropy_bits",
    "lbp_p8r1_peak_fraction",
    "lbp_p8r1_flat_or_pit_fraction",
    "lbp_p8r1_edge_fraction",
    "lbp_p8r2_uniform_fraction",
    "lbp_p8r2_entropy_bits",
    "lbp_p8r2_peak_fraction",
    "lbp_p8r2_flat_or_pit_fraction",
    "lbp_p8r2_edge_fraction",
    "gabor_energy_fraction_4px",
    "gabor_energy_fraction_8px",
    "gabor_energy_fraction_16px",
    "gabor_energy_fraction_32px",
    "gabor_anisotropy_4px",
    "gabor_anisotropy_8px",
    "gabor_anisotropy_16px",
    "gabor_anisotropy_32px",
)


# ---- release 0.1.0's model manifests ----------------------------------------------------------


def with_saved_families(settings: dict[str, Any] | None) -> dict[str, Any] | None:
    """Feature settings whose ``families: None`` (release 0.1.0 saved "the defaults at load time")
    name that release's frozen selection instead (:data:`RELEASE_0_1_0`: its columns, and its
    settings when ``config`` is None), so defaults changed since do not change what the model
    computes."""
    descriptors = settings.get("descriptors") if isinstance(settings, dict) else None
    if not isinstance(descriptors, dict) or descriptors.get("families") is not None:
        return settings
    return {**settings, "descriptors": {**descriptors, "families": RELEASE_0_1_0}}


def saved_level_flag(values: dict[str, Any]) -> bool:
    """The saved levelling flag: ``level_images``, or ``level`` in models saved before the
    rename (formats 1-2, release 0.1.0's)."""
    return values["level_images"] if "level_images" in values else values["level"]


def saved_head(manifest: dict[str, Any]) -> str:
    """The head kind of a hybrid manifest; format 1 had XGBoost heads only and no entry."""
    return manifest.get("head", "xgboost")


def saved_head_selection(manifest: dict[str, Any]) -> dict[str, Any]:
    """The recorded head selection, or for models saved before it was recorded (release 0.1.0)
    the head itself with that reason."""
    return manifest.get("head_selection") or {"choice": saved_head(manifest),
                                              "reason": "saved before head selection was recorded"}


def files_of_finetune_format_1(manifest: dict[str, Any], version: int, path: Path,
                               weights_name: str = "model.pt") -> dict[str, Any]:
    """A fine-tuned model's manifest of format 1 (release 0.1.0: ``weights_sha256`` instead of
    ``files``) as later formats list its weights file (``read_manifest``'s ``upgrade``)."""
    if version >= 2 or "files" in manifest:
        return manifest
    if not isinstance(manifest.get("weights_sha256"), str):
        raise ModelFileError(f"{path}: manifest lacks ['weights_sha256']")
    return {**manifest, "files": {weights_name: manifest["weights_sha256"]}}
