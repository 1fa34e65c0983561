"""The physical story per class, in words generated from SHAP dependence.

For class ``k`` and a physical descriptor ``x``, the dependence plot is the SHAP value of ``x``
for class ``k`` against the value of ``x`` over the explained images. The sentence "higher
``x`` (unit) → k" is written only when that dependence is **monotone enough**: Spearman's ρ
between the descriptor's values and its SHAP values is at least ``min_rho`` in magnitude
(default 0.6: the ranks of value and push agree for most images), computed on at least
``min_images`` images with a non-constant descriptor. ρ > 0 reads "higher x → k", ρ < 0
"lower x → k". Descriptors are taken in the order of their mean |SHAP| for the class; a class
whose important descriptors act non-monotonically gets no sentence rather than a wrong one.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pandas as pd

from ..model import PHYS_PREFIX, feature_units
from .attributions import per_class
from .names import format_unit

STORY_COLUMNS = ["class", "descriptor", "direction", "spearman_rho", "mean_abs_shap", "class_median", "other_median",
                 "unit", "sentence"]


def _readable(column: str) -> str:
    return column[len(PHYS_PREFIX):].replace("_", " ")


def _dependence_rho(values: np.ndarray, shap_values: np.ndarray) -> float:
    from scipy.stats import ConstantInputWarning, spearmanr

    finite = np.isfinite(values)
    if finite.sum() < 3:
        return np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConstantInputWarning)
        return float(spearmanr(values[finite], shap_values[finite]).statistic)


def class_stories(explanation: Any, predicted: np.ndarray | None = None, *, min_rho: float = 0.6, top: int = 3,
                  candidates: int = 10, min_images: int = 8) -> pd.DataFrame:
    """Per class, up to ``top`` monotone physical drivers (module docstring) with a sentence.

    ``explanation`` is per-feature TreeSHAP (:func:`~hybridtmd.explanation.explain`) or, for
    heads without trees, :func:`~hybridtmd.explanation.descriptor_shapley` (only its
    descriptor players are read; the block players have no value to plot against); the first
    ``candidates`` physical descriptors by mean |SHAP| of each class are tested. ``predicted``
    (class index per image) adds the class's median value and the other images' median to the
    sentence. Returns one row per sentence (columns :data:`STORY_COLUMNS`).
    """
    values, _, classes = per_class(explanation)
    names = [str(f) for f in explanation.feature_names]
    data = np.asarray(explanation.data, dtype=np.float64)
    physical = [j for j, f in enumerate(names) if f.startswith(PHYS_PREFIX)]
    units = feature_units(names)
    rows = []
    if len(data) < min_images or not physical:
        return pd.DataFrame(rows, columns=STORY_COLUMNS)
    for k, cls in enumerate(classes):
        importance = np.abs(values[:, physical, k]).mean(axis=0)
        kept = 0
        for j in np.asarray(physical)[np.argsort(-importance, kind="stable")][:candidates]:
            rho = _dependence_rho(data[:, j], values[:, j, k])
            if not np.isfinite(rho) or abs(rho) < min_rho:
                continue
            unit = format_unit(units[names[j]])
            direction = "higher" if rho > 0 else "lower"
            inside = predicted == k if predicted is not None else np.zeros(len(data), bool)
            medians = [float(np.nanmedian(data[m, j])) if m.any() else np.nan for m in (inside, ~inside)]
            context = (f" (median {medians[0]:.3g} vs {medians[1]:.3g} {unit} elsewhere)".replace("  ", " ")
                       if predicted is not None and np.isfinite(medians).all() else "")
            sentence = (f"{direction} {_readable(names[j])}" + (f" ({unit})" if unit else "") + f" → {cls}"
                        + context + f"; SHAP dependence ρ = {rho:+.2f}")
            rows.append({"class": cls, "descriptor": names[j], "direction": direction, "spearman_rho": rho,
                         "mean_abs_shap": float(np.abs(values[:, j, k]).mean()), "class_median": medians[0],
                         "other_median": medians[1], "unit": unit, "sentence": sentence})
            kept += 1
            if kept == top:
                break
    return pd.DataFrame(rows, columns=STORY_COLUMNS)
