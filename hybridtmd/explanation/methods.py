"""The one explanation call for every head: exact TreeSHAP where the head has trees, exact
Shapley values of the probabilities everywhere else.

:func:`explain` picks by head (``method="auto"``):

* the XGBoost head and the stack head: exact TreeSHAP of the margin (log-odds), one value per
  feature (:func:`~hybridtmd.explanation.attributions.tree_shap`);
* any other head (the kernel SVM that ``classifier="auto"`` often picks on embeddings, any
  scikit-learn classifier): exact per-descriptor Shapley values of the probabilities, with the
  ``top`` screened physical descriptors as players and the rest of the physical block, the latent
  block and other columns as one player each
  (:func:`~hybridtmd.explanation.descriptor_shapley.descriptor_shapley`).

``method="group_shapley"`` gives exact Shapley values of the model's feature groups instead
(:func:`~hybridtmd.explanation.shapley.group_shapley`), for any head. Whatever the method, the
result is one type, a :class:`shap.Explanation` subclass whose ``method`` and ``unit`` say how it
was computed and what its values add up to
(:func:`~hybridtmd.explanation.attributions.attribution_type`).
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from ..model import HybridClassifier
from .attributions import attribution, tree_shap
from .descriptor_shapley import descriptor_shapley
from .shapley import group_shapley, has_tree_head

METHODS = ("auto", "treeshap", "descriptor_shapley", "group_shapley")


def chosen_method(model: Any, method: str = "auto") -> str:
    """The method :func:`explain` uses for ``model``: ``method`` itself, or for ``"auto"``
    ``"treeshap"`` (tree heads) else ``"descriptor_shapley"``. ValueError for an unknown method
    and TypeError for TreeSHAP asked of a head without trees."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, not {method!r}")
    if method == "auto":
        return "treeshap" if has_tree_head(model) else "descriptor_shapley"
    return method


def explain(model: HybridClassifier, X: Any, *, method: str = "auto", calibrated: bool = False,
            background: pd.DataFrame | None = None, max_background: int | None = None, top: int = 5,
            random_state: int | None = 0) -> Any:
    """Explain the fitted ``model``'s predictions of ``X`` (images or a feature table), whatever
    its head (module docstring).

    Parameters
    ----------
    method : "auto", "treeshap", "descriptor_shapley" or "group_shapley"
        ``"auto"``: TreeSHAP for the XGBoost and stack heads, per-descriptor Shapley values for
        every other head.
    calibrated : bool
        TreeSHAP only: explain the temperature-scaled logits (values / ``temperature_``). The
        Shapley methods explain :meth:`~hybridtmd.model.HybridClassifier.predict_proba`, which is
        calibrated whenever the model is.
    background, max_background, random_state
        Shapley methods only: the rows standing in for unknown players (default the model's
        training rows, recovered from its OOD reference), how many of them (default 32 for
        descriptors, 64 for groups) and the seed of their sample.
    top : int
        ``"descriptor_shapley"``: physical descriptors that are players of their own.

    Returns
    -------
    Attribution (a shap.Explanation)
        ``method`` and ``unit`` say how it was computed. TreeSHAP: as
        :func:`~hybridtmd.explanation.attributions.tree_shap` (binary heads: one output, the
        positive class's log-odds), values + base values = margin. Shapley methods: ``values``
        (n_images, n_players, n_classes), values + base values = ``predict_proba``; per-descriptor
        values carry the descriptors' values as ``data`` (NaN for the block players).
    """
    chosen = chosen_method(model, method)
    if chosen == "treeshap":
        return tree_shap(model, X, calibrated=calibrated)
    shared = {"background": background, "random_state": random_state}
    if max_background is not None:
        shared["max_background"] = max_background
    if chosen == "group_shapley":
        return attribution(group_shapley(model, X, **shared), chosen)
    return attribution(descriptor_shapley(model, X, top=top, **shared), chosen)
