"""Exact TreeSHAP values of the XGBoost head and the per-class views of them.

:func:`tree_shap` gives exact TreeSHAP values (Lundberg et al., "From local explanations to global
understanding with explainable AI for trees", Nat. Mach. Intell. 2, 56-67, 2020) of the XGBoost
head, computed by XGBoost itself (``pred_contribs=True``), as a :class:`shap.Explanation`. They
explain the **raw margin** (log-odds): for image ``i`` and class ``k``,
``values[i, :, k].sum() + base_values[i, k]`` is the margin XGBoost's softmax turns into
probabilities. :func:`~hybridtmd.explanation.explain` calls it for tree heads and explains every
other head by exact Shapley values (:mod:`.methods`).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from ..model import HybridClassifier, StackHead

#: what each explanation method's values are in
UNITS = {"treeshap": "margin (log-odds)", "descriptor_shapley": "probability", "group_shapley": "probability"}


def attribution(explanation: Any, method: str) -> Any:
    """``explanation`` (a shap.Explanation) as an ``Attribution`` saying it came from ``method``."""
    return attribution_type()(explanation.values, base_values=explanation.base_values, data=explanation.data,
                              feature_names=list(explanation.feature_names), output_names=explanation.output_names,
                              compute_time=explanation.compute_time, method=method)


@functools.cache
def attribution_type() -> type:
    """The class ``Attribution`` (also this module's attribute of that name), built on first use
    so that importing the package imports no shap."""
    import shap

    class Attribution(shap.Explanation):
        """A :class:`shap.Explanation` (every ``shap.plots.*`` function takes it, slices of it
        included) that says how it was computed: ``method`` (``"treeshap"``,
        ``"descriptor_shapley"`` or ``"group_shapley"``) and ``unit`` (what the values add up to:
        ``"margin (log-odds)"`` or ``"probability"``). Both survive slicing and copying."""

        def __init__(self, *args: Any, method: str, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.method, self.unit = method, UNITS[method]

        def __copy__(self) -> Any:
            copied = super().__copy__()
            copied.__class__, copied.method, copied.unit = type(self), self.method, self.unit
            return copied

    Attribution.__qualname__ = "Attribution"  # pickled by name: this module's attribute finds it
    return Attribution


def __getattr__(name: str) -> Any:
    if name == "Attribution":
        return attribution_type()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def tree_shap(model: HybridClassifier, X: Any, *, calibrated: bool = False) -> Any:
    """Exact TreeSHAP values of ``model`` for images or a feature table ``X``.

    Parameters
    ----------
    model : HybridClassifier
        Fitted, with an XGBoost head (the default).
    X : sequence of AFMImage or feature table
        What :meth:`HybridClassifier.predict` accepts.
    calibrated : bool
        Explain the temperature-scaled logits instead of the raw margin. Temperature scaling
        divides the margins by ``T`` (softmax(margin / T) are the calibrated probabilities), and
        SHAP values are linear in the model output, so this divides values and base values by
        ``model.temperature_``; rankings and signs are unchanged. No-op without calibration.

    Returns
    -------
    shap.Explanation
        Multiclass: ``values`` (n_images, n_features, n_classes) and ``base_values``
        (n_images, n_classes), ``output_names`` the class labels, like shap's multi-output
        explanations. Binary (XGBoost has one margin, the log-odds of ``classes_[1]``):
        ``values`` (n_images, n_features), ``base_values`` (n_images,), ``output_names`` the
        positive class; the other class's log-odds are the negated values.
        ``data`` is the feature table the model saw, ``feature_names`` its raw column names
        (``phys__...``, ``latent__...``); :func:`~hybridtmd.explanation.display_names` gives
        names with units.
        Additivity: ``values.sum(axis=1) + base_values`` equals
        ``model.classifier_.predict(table, output_margin=True)`` up to float32 rounding.
    """
    import xgboost

    booster, head_table = tree_head(model)
    start = time.perf_counter()
    table = model.transform_features(X)
    data = head_table(table.to_numpy(dtype=np.float64))
    names = list(getattr(model, "head_feature_names_", table.columns))
    # the head was fitted on a bare array: no feature names, so none are checked here either
    contribs = booster.predict(xgboost.DMatrix(data, missing=np.nan, feature_names=None), pred_contribs=True,
                               validate_features=False).astype(np.float64)
    classes = [str(c) for c in model.classes_]
    if contribs.ndim == 3:  # (n, classes, features + bias) -> shap's (n, features, classes)
        values, base = np.moveaxis(contribs[:, :, :-1], 1, 2), contribs[:, :, -1]
        output_names: Any = classes
    else:
        values, base, output_names = contribs[:, :-1], contribs[:, -1], classes[-1]
    temperature = getattr(model, "temperature_", None)
    if calibrated and temperature:
        values, base = values / temperature, base / temperature
    return attribution_type()(values=values, base_values=base, data=data, feature_names=names,
                              output_names=output_names, compute_time=time.perf_counter() - start, method="treeshap")


def tree_head(model: HybridClassifier) -> tuple[Any, Callable[[np.ndarray], np.ndarray]]:
    """The XGBoost booster of ``model``'s head and the map from the model's feature table to the
    table its trees see: the identity for the XGBoost head; for the stack head its
    :meth:`~hybridtmd.model.StackHead.transform` (normalised embedding + out-of-fold-trained SVM
    probabilities ``latent_svm__p_<class>``). TypeError for a head without trees."""
    from sklearn.utils.validation import check_is_fitted
    from xgboost import XGBClassifier

    check_is_fitted(model, "classifier_")
    head = model.classifier_
    if isinstance(head, XGBClassifier):
        return head.get_booster(), lambda table: table
    if isinstance(head, StackHead):
        return head.get_booster(), head.transform
    raise TypeError(f"exact TreeSHAP needs the XGBoost head (or the stack, whose trees are XGBoost), not "
                    f"{type(head).__name__}; "
                    "hybridtmd.explanation.explain explains any head (exact Shapley values for heads without trees)")


def per_class(explanation: Any) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(values (n, f, k), base values (n, k), class names) of a binary or multiclass Explanation.

    A binary explanation has one output (the positive class's log-odds): ``k = 1``.
    """
    values = np.asarray(explanation.values, dtype=np.float64)
    base = np.asarray(explanation.base_values, dtype=np.float64)
    names = explanation.output_names
    if values.ndim == 3:
        names = [str(c) for c in names] if names is not None else [str(k) for k in range(values.shape[2])]
        return values, base.reshape(len(values), -1), names
    if values.ndim == 2:
        return values[:, :, None], base.reshape(-1, 1), [str(names) if names is not None else "output"]
    raise ValueError(f"expected the Explanation of several images (2-D or 3-D values), got shape {values.shape}")


def class_index(explanation: Any, class_: int | str | None) -> int:
    """Output index of ``class_`` (an index, negative ones included, or a label; ``None`` is 0).

    Raises IndexError for an index out of range and KeyError for an unknown label.
    """
    _, _, names = per_class(explanation)
    if class_ is None:
        return 0
    if isinstance(class_, (int, np.integer)) and not isinstance(class_, bool):
        if not -len(names) <= class_ < len(names):
            raise IndexError(f"class index {class_} out of range for {len(names)} output(s)")
        return int(class_) % len(names)
    if str(class_) not in names:
        raise KeyError(f"unknown class {class_!r}; the explanation has {names}")
    return names.index(str(class_))


def class_name(explanation: Any, class_: int | str | None) -> str:
    """Label of the output :func:`class_index` selects."""
    return per_class(explanation)[2][class_index(explanation, class_)]


def class_explanation(explanation: Any, class_: int | str | None = None) -> Any:
    """The 2-D Explanation of one class (index or label), for ``shap.plots.*``.

    For a binary explanation (one output) it is the explanation itself.
    """
    if np.ndim(explanation.values) == 2:
        class_index(explanation, class_)  # still validates the name
        return explanation
    return explanation[:, :, class_index(explanation, class_)]


def margins(explanation: Any) -> np.ndarray:
    """Model output each explanation adds up to, (n_images, n_classes): values + base values."""
    values, base, _ = per_class(explanation)
    return values.sum(axis=1) + base


def predicted_class_index(explanation: Any) -> np.ndarray:
    """Index of the predicted class of each image, from the explained margins (binary: 0 when
    the margin of the positive class is below 0, else 1)."""
    m = margins(explanation)
    return (m[:, 0] > 0).astype(int) if np.ndim(explanation.values) == 2 else m.argmax(axis=1)


def feature_frame(explanation: Any) -> pd.DataFrame:
    """The explained feature table (``explanation.data``) with its column names."""
    return pd.DataFrame(np.asarray(explanation.data, dtype=np.float64), columns=list(explanation.feature_names))
