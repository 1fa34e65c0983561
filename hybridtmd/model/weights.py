"""Row weights of a fit: ``sample_weight`` times the weight of each row's class."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from sklearn.utils.class_weight import compute_sample_weight

from .heads import check_sample_weight


def class_sample_weights(class_weight: str | Mapping[Any, float] | None, classes: np.ndarray, y_enc: np.ndarray,
                         sample_weight: Any, n_rows: int) -> np.ndarray:
    """``sample_weight`` (checked; None: ones) times the ``class_weight`` of each row's class:
    ``"balanced"`` (``n / (n_classes * n_class)``), a dict label → weight, or None (no weighting)."""
    weights = check_sample_weight(sample_weight, n_rows)
    if isinstance(class_weight, Mapping):
        index = {c: i for i, c in enumerate(classes.tolist())}
        unknown = set(class_weight) - set(index)
        if unknown:
            raise ValueError(f"class_weight names classes not in y: {sorted(map(str, unknown))}")
        per_class = {index[c]: w for c, w in class_weight.items()}
        weights = weights * compute_sample_weight(per_class, y_enc)
    elif class_weight == "balanced":
        weights = weights * compute_sample_weight("balanced", y_enc)
    return weights
