"""A classifier's ``manifest.json``: what it stores (:func:`manifest_entries`, :func:`model_card`)
and its schema - types, ranges and consistency with its files - checked at load.

A manifest that passes its digest can still be wrong (written by hand, or by a forger who
recomputed the digest); every value that changes a prediction is checked here before it is used,
and a wrong one is a :class:`~hybridtmd.errors.ModelFileError` naming the manifest and the entry:

* ``classes``: at least two distinct labels, all strings or all integers; ``classes_dtype`` a
  numpy string/integer dtype that holds every label unchanged (``"<U1"`` would truncate them);
* the head's own outputs have exactly as many classes as ``classes``;
* ``n_features_in`` equals the number of ``feature_names`` (distinct strings), the head's input
  width, and the OOD reference's width; ``feature_groups`` name only those columns;
* ``temperature``: None or within :data:`~hybridtmd.model.calibration.TEMPERATURE_RANGE`;
* ``ood_threshold``: None or a finite positive number no larger than the OOD reference's
  diameter (no training image can score above it, so a larger one switches the flag off);
* ``latent_links`` (absent in models saved before them): the ``links__*`` arrays it announces
  are checked by :func:`~hybridtmd.model.links.links_from_arrays`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ModelFileError
from .calibration import TEMPERATURE_RANGE
from .links import links_entry
from .selection import is_head_spec


def _fail(path: Path, entry: str, reason: str) -> ModelFileError:
    return ModelFileError(f"{path}: invalid {entry!r} ({reason})")


def is_number(value: Any) -> bool:
    """A JSON number (not a bool)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_classes(path: Path, manifest: Mapping[str, Any]) -> np.ndarray:
    """The class labels as the array the model predicts, checked (see the module docstring)."""
    classes, dtype_text = manifest["classes"], manifest["classes_dtype"]
    if not isinstance(classes, list) or len(classes) < 2:
        raise _fail(path, "classes", "a list of at least two labels")
    if not (all(isinstance(c, str) for c in classes) or all(isinstance(c, int) and not isinstance(c, bool)
                                                             for c in classes)):
        raise _fail(path, "classes", "labels must be all strings or all integers")
    if len(set(classes)) != len(classes):
        raise _fail(path, "classes", "labels repeat")
    try:
        dtype = np.dtype(dtype_text)
    except (TypeError, ValueError) as exc:
        raise _fail(path, "classes_dtype", f"not a data type: {exc}") from None
    if dtype.kind not in "UiuO":
        raise _fail(path, "classes_dtype", f"{dtype_text!r} is not a string or integer dtype")
    array = np.asarray(classes, dtype=dtype)
    if array.tolist() != classes:
        raise _fail(path, "classes_dtype", f"{dtype_text!r} does not hold the labels unchanged")
    if list(array) != sorted(array):
        raise _fail(path, "classes", "labels must be sorted (the order of the head's outputs)")
    return array


def check_features(path: Path, manifest: Mapping[str, Any]) -> None:
    """``n_features_in``, ``feature_names`` and ``feature_groups`` agree with each other."""
    n, names = manifest["n_features_in"], manifest["feature_names"]
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise _fail(path, "n_features_in", "a positive integer")
    if not isinstance(names, list) or len(names) != n or not all(isinstance(c, str) for c in names):
        raise _fail(path, "feature_names", f"a list of {n} strings")
    if len(set(names)) != n:
        raise _fail(path, "feature_names", "names repeat")
    groups = manifest["feature_groups"]
    if not isinstance(groups, dict) or not all(isinstance(v, list) and set(v) <= set(names) for v in groups.values()):
        raise _fail(path, "feature_groups", "group → list of feature names")


def check_temperature(path: Path, temperature: Any) -> None:
    low, high = TEMPERATURE_RANGE
    if temperature is not None and not (is_number(temperature) and low <= temperature <= high):
        raise _fail(path, "temperature", f"None or a number in [{low}, {high}], got {temperature!r}")


def check_ood(path: Path, threshold: Any, reference: np.ndarray | None, n_features: int) -> None:
    """The threshold against the OOD reference rows (standardised training table)."""
    if threshold is None:
        return
    if not (is_number(threshold) and math.isfinite(threshold) and threshold > 0):
        raise _fail(path, "ood_threshold", f"None or a finite positive number, got {threshold!r}")
    if reference is None:
        return
    if reference.ndim != 2 or reference.shape[1] != n_features or not np.isfinite(reference).all():
        raise _fail(path, "ood_threshold", f"its reference has shape {reference.shape}, not (n, {n_features}) finite")
    # every score is a mean distance between reference rows: at most twice the largest norm
    diameter = 2.0 * float(np.linalg.norm(reference.astype(np.float64), axis=1).max()) if len(reference) else 0.0
    if threshold > diameter * (1 + 1e-6):
        raise _fail(path, "ood_threshold", f"{threshold!r} exceeds the largest possible training score "
                                           f"({diameter:.4g}), which would switch the OOD flag off")


def head_classes(head: Any) -> int | None:
    """How many classes a loaded head outputs (None when it does not say)."""
    if hasattr(head, "classes_"):
        return len(head.classes_)
    n = getattr(head, "n_classes_", None)
    return None if n is None else int(n)


def check_head(path: Path, head: Any, n_classes: int, n_features: int) -> None:
    """The head outputs ``n_classes`` classes from ``n_features`` columns."""
    found = head_classes(head)
    if found is not None and found != n_classes:
        raise _fail(path, "classes", f"{n_classes} labels, but the head outputs {found} classes")
    width = getattr(head, "n_features_in_", None)
    if width is not None and int(width) != n_features:
        raise _fail(path, "n_features_in", f"{n_features}, but the head reads {width} columns")


def is_plain(value: Any) -> bool:
    """A JSON scalar (kept among a head's constructor settings)."""
    return value is None or isinstance(value, (bool, int, float, str))


def manifest_entries(model: Any, head_kind: str, metrics: Mapping[str, Any] | None,
                     saved_params: Sequence[str]) -> dict[str, Any]:
    """The entries a fitted :class:`~hybridtmd.model.HybridClassifier` writes to its manifest:
    the ``saved_params`` (and ``classifier`` when it names heads), features' settings, the head's
    scalar settings, classes, columns, calibration, OOD threshold, training summary, ``metrics``
    and ``head_selection``."""
    params = model.get_params(deep=False)
    return {
        "head": head_kind,
        "params": {k: params[k] for k in saved_params} | (
            {"classifier": params["classifier"]} if is_head_spec(params["classifier"]) else {}),
        "features": None if model.features_ is None else model.features_.to_settings(),
        "classifier_params": {k: v for k, v in model.classifier_.get_params().items() if is_plain(v)},
        "classes": model.classes_.tolist(),
        "classes_dtype": model.classes_.dtype.str,
        "n_features_in": int(model.n_features_in_),
        "feature_names": model.feature_names_,
        "feature_names_from_table": hasattr(model, "feature_names_in_"),
        "feature_groups": model.feature_groups_,
        "temperature": model.temperature_,
        "ood_threshold": model.ood_threshold_,
        "training": model.training_summary_,
        "metrics": dict(metrics or {}),
        "head_selection": model.head_selection_,
        "latent_links": links_entry(getattr(model, "latent_links_", None)),
    }


def model_card(model: Any) -> dict[str, Any]:
    """The summary of a fitted classifier that goes with its predictions (see
    :meth:`~hybridtmd.model.HybridClassifier.model_card`)."""
    return {"head": model.head_selection_.get("choice"), "head_selection": model.head_selection_,
            "classes": [str(c) for c in model.classes_], "n_features": int(model.n_features_in_),
            "feature_groups": {g: len(c) for g, c in model.feature_groups_.items()},
            "training": model.training_summary_, "temperature": model.temperature_,
            "ood_threshold": model.ood_threshold_}
