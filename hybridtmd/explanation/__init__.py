"""Explanations of the hybrid classifier: which physical characteristics drove a prediction.

SHAP values (:mod:`.attributions`)
    :func:`explain` gives exact TreeSHAP values (Lundberg et al., "From local explanations to
    global understanding with explainable AI for trees", Nat. Mach. Intell. 2, 56-67, 2020) of
    the XGBoost head, computed by XGBoost itself (``pred_contribs=True``), as a
    :class:`shap.Explanation`. They explain the **raw margin** (log-odds): for image ``i`` and
    class ``k``, ``values[i, :, k].sum() + base_values[i, k]`` is the margin XGBoost's softmax
    turns into probabilities. Every ``shap.plots.*`` function works on a per-class slice
    (``explanation[:, :, k]`` or :func:`class_explanation`).

Names with units (:mod:`.names`)
    :func:`display_names` turns ``phys__grain_density_per_um2`` into
    ``grain_density_per_um2 [µm⁻²]`` for figures and tables.

Grouped attribution (:mod:`.groups`)
    :func:`group_attributions` sums |SHAP| and signed SHAP over the model's feature groups
    (descriptor families ``paper``, ``areal``, ``spectral``, ``grains``, ``texture`` and the CNN
    ``latent`` block), per image and globally, and gives the share of the attribution carried by
    physical vs latent features for each class.

Latent dimensions made physical (:mod:`.stats`)
    :func:`latent_physical_links` correlates the latent dimensions that drive each class with
    every physical descriptor (Pearson and Spearman, Benjamini-Hochberg FDR) and words the
    strongest link ("latent__0412 (top driver for WSe2) tracks grain_density_per_um2, ρ=0.71").
    :func:`latent_pca_correlation` reproduces the paper's analysis (Moses & Reinhart, Mach. Learn.:
    Sci. Technol. 5 045081, 2025) on the principal components of the latent block.

Figures (:mod:`.figures`; matplotlib, each function returns a ``Figure``) and
:func:`write_report` (:mod:`.report`), which writes them as PNG files plus one self-contained
HTML report with the images embedded.
"""

from __future__ import annotations

from .attributions import class_explanation, explain, margins, predicted_class_index
from .figures import (
    plot_beeswarm,
    plot_correlation_heatmap,
    plot_group_attribution,
    plot_image_explanation,
    plot_pca_scatter,
    plot_top_features,
    plot_waterfall,
)
from .groups import GroupAttribution, block_of, feature_importance, group_attributions
from .names import display_names, format_unit, with_display_names
from .report import write_report
from .stats import (
    PAPER_FEATURES,
    LatentLinks,
    LatentPCA,
    correlation_table,
    latent_drivers,
    latent_pca_correlation,
    latent_physical_links,
)

__all__ = [
    "PAPER_FEATURES",
    "GroupAttribution",
    "LatentLinks",
    "LatentPCA",
    "block_of",
    "class_explanation",
    "correlation_table",
    "display_names",
    "explain",
    "feature_importance",
    "format_unit",
    "group_attributions",
    "latent_drivers",
    "latent_pca_correlation",
    "latent_physical_links",
    "margins",
    "plot_beeswarm",
    "plot_correlation_heatmap",
    "plot_group_attribution",
    "plot_image_explanation",
    "plot_pca_scatter",
    "plot_top_features",
    "plot_waterfall",
    "predicted_class_index",
    "with_display_names",
    "write_report",
]
