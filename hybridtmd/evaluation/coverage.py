"""Empirical coverage of conformal prediction sets on a test fold (models fitted with ``conformal``)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..model.conformal import ConformalError

#: the alpha at which ``evaluate`` measures coverage (sets that should hold the true class 90% of the time)
COVERAGE_ALPHA = 0.1


def coverage_scores(fitted: Any, proba: np.ndarray | None, y_test: np.ndarray) -> dict[str, float]:
    """``coverage`` (fraction of test images whose set at :data:`COVERAGE_ALPHA` holds the true
    class), ``coverage[<class>]`` per true class and ``mean_set_size``, the sets made from the
    fold's test probabilities ``proba`` (``fitted.predict_proba``, computed once per fold) by the
    model's calibration; NaN when the fold's model had too few calibration images for that alpha;
    empty for a model without conformal sets."""
    calibration = getattr(fitted, "conformal_", None)
    if calibration is None or proba is None:
        return {}
    try:
        sets = calibration.image_sets(proba, COVERAGE_ALPHA, fitted.classes_)
    except ConformalError:
        return {"coverage": float("nan"), "mean_set_size": float("nan")}
    column = {c: j for j, c in enumerate(fitted.classes_.tolist())}
    y_test = np.asarray(y_test)
    hit = np.array([label in column and bool(sets[i, column[label]]) for i, label in enumerate(y_test.tolist())])
    out = {"coverage": float(hit.mean()), "mean_set_size": float(sets.sum(axis=1).mean())}
    for label in np.unique(y_test):
        out[f"coverage[{label}]"] = float(hit[y_test == label].mean())
    return out
