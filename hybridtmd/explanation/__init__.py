"""Explanations of the hybrid classifier: which physical characteristics drove a prediction.

SHAP values for every head (:mod:`.methods`, :mod:`.attributions`)
    :func:`explain` explains any head and returns one type, a :class:`shap.Explanation` whose
    ``method`` and ``unit`` say how: for the XGBoost and stack heads exact TreeSHAP values
    (:func:`tree_shap`; Lundberg et al., "From local explanations to global understanding with
    explainable AI for trees", Nat. Mach. Intell. 2, 56-67, 2020), computed by XGBoost itself
    (``pred_contribs=True``), of the **raw margin** (log-odds): for image ``i`` and class ``k``,
    ``values[i, :, k].sum() + base_values[i, k]`` is the margin XGBoost's softmax turns into
    probabilities; for every other head exact per-descriptor Shapley values of the probabilities
    (:func:`descriptor_shapley`). Every ``shap.plots.*`` function works on a per-class slice
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

Group attribution for every head (:mod:`.shapley`)
    :func:`group_explanation`: exact TreeSHAP summed over the feature groups for an XGBoost head,
    exact group Shapley values (all ``2**g`` coalitions, interventional background of training
    rows; :func:`group_shapley`) of the probabilities for any other head (kernel SVM, stacks, any
    scikit-learn classifier). Both add up exactly to the explained output.
    :func:`descriptor_shapley` (:mod:`.descriptor_shapley`) gives those heads per-descriptor
    values: exact Shapley values of a game whose players are the top screened descriptors, the
    rest of the physical block and the latent block.

Evidence and stories (:mod:`.evidence`, :mod:`.story`, :func:`latent_correlates`)
    The nearest training images of the predicted and runner-up class; per-class sentences from
    monotone SHAP dependences; the strongest physical correlate of every latent dimension
    (:func:`latent_correlates`, computed at fit and stored by the model as ``latent_links_``),
    which :func:`latent_label` appends to its name wherever it is shown; :mod:`.overlays` finds
    every latent name a report figure draws and maps it.

Held-out explanations (:mod:`.explained`)
    :func:`explain_held_out` predicts and explains every image by an out-of-fold model (folds
    grouped by sample); the reporting stage writes them as one self-contained ``report.html``
    (:func:`hybridtmd.reporting.write_held_out_report`, :func:`hybridtmd.reporting.write_report`).
"""

from __future__ import annotations

from ..model import latent_correlates
from .cards import plot_drill_down, plot_group_waterfall, plot_latent_overlays, plot_nearest
from .descriptor_shapley import descriptor_shapley, screen_descriptors
from .evidence import nearest_examples
from .explained import ExplainedSet, explain_held_out, explain_set
from .figures import (
    plot_beeswarm,
    plot_correlation_heatmap,
    plot_group_attribution,
    plot_group_shares,
    plot_image_explanation,
    plot_pca_scatter,
    plot_top_features,
    plot_waterfall,
)
from .groups import GroupAttribution, feature_importance, group_attributions
from .methods import explain
from .shapley import GroupExplanation, group_explanation, group_shapley
from .stats import (
    PAPER_FEATURES,
    LatentLinks,
    LatentPCA,
    correlation_table,
    latent_label,
    latent_pca_correlation,
    latent_physical_links,
)
from .story import class_stories

__all__ = [
    "ExplainedSet",
    "GroupAttribution",
    "GroupExplanation",
    "LatentLinks",
    "LatentPCA",
    "PAPER_FEATURES",
    "class_stories",
    "correlation_table",
    "descriptor_shapley",
    "explain",
    "explain_held_out",
    "explain_set",
    "feature_importance",
    "group_attributions",
    "group_explanation",
    "group_shapley",
    "latent_correlates",
    "latent_label",
    "latent_pca_correlation",
    "latent_physical_links",
    "nearest_examples",
    "plot_beeswarm",
    "plot_correlation_heatmap",
    "plot_drill_down",
    "plot_group_attribution",
    "plot_group_shares",
    "plot_group_waterfall",
    "plot_image_explanation",
    "plot_latent_overlays",
    "plot_nearest",
    "plot_pca_scatter",
    "plot_top_features",
    "plot_waterfall",
    "screen_descriptors",
]
