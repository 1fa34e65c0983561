"""The physical story per class, in words generated from SHAP dependence.

For class ``k`` and a physical descriptor ``x``, the dependence plot is the SHAP value of ``x``
for class ``k`` against the value of ``x`` over the explained images. The sentence "higher
``x`` (unit) → k" is written only when that dependence is **monotone enough**: Spearman's ρ
between the descriptor's values and its SHAP values is at least ``min_rho`` in magnitude
(default 0.6: the ranks of value and push agree for most images), computed on at least
``min_images`` images with a non-constant descriptor. ρ > 0 reads "higher x → k", ρ < 0
"lower x → k". Descriptors are taken in the order of their mean |SHAP| for the class; a class
whose important descriptors act non-monotonically gets no sentence rather than a wrong one.
With the predicted classes, a sentence quotes the median of the images predicted as the class
against the other images'; when the medians run the other way than the dependence, it says both
facts plainly rather than one claim that contradicts itself.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from ..model import PHYS_PREFIX, feature_units
from .attributions import per_class
from .names import format_unit

STORY_COLUMNS = ["class", "descriptor", "direction", "spearman_rho", "mean_abs_shap", "class_median", "other_median",
                 "medians_agree", "unit", "sentence"]


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


def _outputs(explanation: Any, classes: Sequence[str] | None) -> list[tuple[int, str, int, float]]:
    """(index into ``predicted``, class name, output column, sign of its values) of every class
    the explanation speaks for. A binary explanation has one output, the positive class ``classes[1]`` (index 1);
    its other class's values are the negated ones, and it is named only when ``classes`` is given."""
    _, _, names = per_class(explanation)
    if np.ndim(explanation.values) == 3:
        return [(k, name, k, 1.0) for k, name in enumerate(names)]
    positive = [(1, names[0], 0, 1.0)]
    return positive + ([(0, str(classes[0]), 0, -1.0)] if classes is not None and len(classes) == 2 else [])


def _sentence(cls: str, descriptor: str, unit: str, rho: float, medians: list[float] | None) -> tuple[str, Any]:
    """The sentence of one driver and whether the medians agree with its direction (None when
    there are no medians). When they do not (a push towards the class by higher values while the
    class's images have the lower median, which a dependence conditional on other features can
    give), the sentence states both facts instead of joining them into one claim."""
    direction = "higher" if rho > 0 else "lower"
    named = f"{direction} {_readable(descriptor)}" + (f" ({unit})" if unit else "")
    dependence = f"SHAP dependence ρ = {rho:+.2f}"
    if medians is None:
        return f"{named} → {cls}; {dependence}", None
    spread = f"{medians[0]:.3g} vs {medians[1]:.3g}" + (f" {unit}" if unit else "")
    agree = bool((medians[0] - medians[1]) * rho >= 0)
    if agree:
        return f"{named} → {cls} (median {spread} elsewhere); {dependence}", True
    lower = "lower" if medians[0] < medians[1] else "higher"
    return (f"{named} pushes towards {cls} ({dependence}), yet the images predicted {cls} have the {lower} median "
            f"({spread} elsewhere)"), False


def class_stories(explanation: Any, predicted: np.ndarray | None = None, *, classes: Sequence[str] | None = None,
                  min_rho: float = 0.6, top: int = 3, candidates: int = 10, min_images: int = 8) -> pd.DataFrame:
    """Per class, up to ``top`` monotone physical drivers (module docstring) with a sentence.

    ``explanation`` is per-feature TreeSHAP (:func:`~hybridtmd.explanation.explain`) or, for
    heads without trees, :func:`~hybridtmd.explanation.descriptor_shapley` (only its
    descriptor players are read; the block players have no value to plot against); the first
    ``candidates`` physical descriptors by mean |SHAP| of each class are tested. ``predicted``
    (class index per image, into the model's ``classes_``) adds the median value of the images
    predicted as the class and the other images' median; ``classes`` (the model's classes) names
    the negative class of a binary explanation, which then gets its sentences too (its values are
    the positive class's negated). A sentence whose medians run against its direction says both
    facts (``medians_agree`` False). Returns one row per sentence (columns :data:`STORY_COLUMNS`).
    """
    values, _, _ = per_class(explanation)
    names = [str(f) for f in explanation.feature_names]
    data = np.asarray(explanation.data, dtype=np.float64)
    physical = [j for j, f in enumerate(names) if f.startswith(PHYS_PREFIX)]
    units = feature_units(names)
    rows = []
    if len(data) < min_images or not physical:
        return pd.DataFrame(rows, columns=STORY_COLUMNS)
    for index, cls, column, sign in _outputs(explanation, classes):
        class_values = sign * values[:, :, column]
        inside = None if predicted is None else np.asarray(predicted) == index
        importance = np.abs(class_values[:, physical]).mean(axis=0)
        kept = 0
        for j in np.asarray(physical)[np.argsort(-importance, kind="stable")][:candidates]:
            rho = _dependence_rho(data[:, j], class_values[:, j])
            if not np.isfinite(rho) or abs(rho) < min_rho:
                continue
            unit = format_unit(units[names[j]])
            medians = (None if inside is None else
                       [float(np.nanmedian(data[m, j])) if m.any() else np.nan for m in (inside, ~inside)])
            known = medians if medians is not None and np.isfinite(medians).all() else None
            sentence, agree = _sentence(cls, names[j], unit, rho, known)
            rows.append({"class": cls, "descriptor": names[j], "direction": "higher" if rho > 0 else "lower",
                         "spearman_rho": rho, "mean_abs_shap": float(np.abs(class_values[:, j]).mean()),
                         "class_median": np.nan if medians is None else medians[0],
                         "other_median": np.nan if medians is None else medians[1], "medians_agree": agree,
                         "unit": unit, "sentence": sentence})
            kept += 1
            if kept == top:
                break
    return pd.DataFrame(rows, columns=STORY_COLUMNS)
