"""Split points of XGBoost heads midway between training values: the same answer on every CPU.

XGBoost's ``hist`` method cuts each feature at values of the training data, and a row goes left
when ``value < cut``: every training image whose value *is* a cut sits exactly on a split. The
frozen-CNN embeddings of one image differ between CPUs by up to ~7e-6 (oneDNN picks its
convolution kernels, and so its summation order, by instruction set: SSE4.1, AVX2, AVX-512), so
on another CPU such an image falls on the other side of the split, and a tree head's
probabilities for its own training images moved by up to 0.17 (measured on the bundled set;
``benchmarks/bench_portability.py``).

:func:`centre_splits` moves every split point of a fitted model to the midpoint between the
largest training value below it and the cut itself (XGBoost's ``exact`` method and
scikit-learn's trees place splits there too). No training row changes side, so the fitted model
is the same function on its training data, and every training value is now half the gap to its
neighbouring training value away from the nearest split, out of reach of the cross-CPU noise
(after centring, no probability of the bundled set differed between kernels). Images not used
for training sit on a split only by chance: none did in the measurements.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np

from .ood import STATE_ARRAYS


def is_xgboost(head: Any) -> bool:
    """Whether ``head`` is an XGBoost scikit-learn model (``XGBClassifier`` and its kin)."""
    from xgboost import XGBModel

    return isinstance(head, XGBModel)


def centre_splits(head: Any, X: Any, *, tolerance: np.ndarray | float = 0.0) -> int:
    """Move each numerical split of the fitted XGBoost model ``head`` (an ``XGBClassifier`` or a
    ``Booster``) midway between the training values either side of it; returns how many moved.

    ``X`` holds the rows the model was trained on, in the columns it saw (NaN = missing; the
    comparison is on the float32 values XGBoost uses). A value within ``tolerance`` (per column,
    or one number) of a split counts as on it - for training rows recovered approximately, e.g.
    from a saved model's standardised reference. A split with no training value below it, or no
    float32 strictly between the two, stays where it is. Leaf values, missing-value directions
    and categorical splits are untouched, so every training row takes the same path as before.
    """
    from xgboost import Booster

    if not (isinstance(head, Booster) or is_xgboost(head)):
        raise TypeError(f"centre_splits needs a fitted XGBoost model, not {type(head).__name__}")
    booster = head if isinstance(head, Booster) else head.get_booster()
    values = np.asarray(X, dtype=np.float32)
    tol = np.broadcast_to(np.asarray(tolerance, dtype=np.float64), (values.shape[1],))
    columns = [np.unique(col[~np.isnan(col)]) for col in values.T]  # sorted float32: searchsorted per split
    model = json.loads(bytes(booster.save_raw(raw_format="json")))
    moved = 0
    for tree in model["learner"]["gradient_booster"]["model"]["trees"]:
        conditions = tree["split_conditions"]
        split_types = tree.get("split_type", [0] * len(conditions))
        for node, (left, feature) in enumerate(zip(tree["left_children"], tree["split_indices"], strict=True)):
            if left == -1 or split_types[node] != 0 or feature >= len(columns):
                continue  # a leaf (its "condition" is the leaf value), a categorical split, a column not given
            cut = float(np.float32(conditions[node]))
            n_below = int(np.searchsorted(columns[feature], cut - tol[feature], side="left"))
            if not n_below:
                continue
            below = float(columns[feature][n_below - 1])  # the largest training value left of the split
            middle = np.float32((below + cut) / 2)
            if below < middle < cut:
                conditions[node] = float(middle)
                moved += 1
    booster.load_model(bytearray(json.dumps(model).encode()))
    return moved


#: the first model format whose XGBoost split points :func:`centre_splits` placed
CENTRED_SINCE = 5
#: a recovered training value this close to a split, relative to its column's spread, is on it
#: (the saved reference is float32: ~6e-8 relative error)
RECOVERY_TOLERANCE = 1e-6


def centre_saved_splits(head: Any, arrays: Mapping[str, np.ndarray], prefix: str, source: Any) -> bool:
    """Centre the splits of an XGBoost ``head`` read from a model saved before format
    :data:`CENTRED_SINCE`, from the training rows that its OOD reference recovers (the model's
    ``arrays`` named ``prefix`` + ``reference``, ``center``, ``scale``: the standardised rows of
    :class:`~hybridtmd.model.ood.NearestNeighborOOD`); returns whether it did. The training
    images then take the paths they took when the model was saved, on any CPU. Without a
    reference (``ood_neighbors=None``), or for the stack head, a warning naming ``source`` says
    the old model keeps its CPU-dependent splits."""

    if not is_xgboost(head):
        if hasattr(head, "get_booster"):  # the stack: its trees see normalised columns the reference cannot give
            warnings.warn(f"{source}: saved before split points were centred (model format {CENTRED_SINCE}); its "
                          "training images' probabilities can differ between CPU types: refit it "
                          "(docs/reproducibility.md)", UserWarning, stacklevel=3)
        return False
    if any(prefix + name not in arrays for name in STATE_ARRAYS):
        warnings.warn(f"{source}: saved before split points were centred (model format {CENTRED_SINCE}) and without "
                      "an OOD reference to centre them from: its training images' probabilities can differ between "
                      "CPU types: refit it (docs/reproducibility.md)", UserWarning, stacklevel=3)
        return False
    center = np.asarray(arrays[prefix + "center"], np.float64)
    rows = np.asarray(arrays[prefix + "reference"], np.float64) * np.asarray(arrays[prefix + "scale"], np.float64)
    rows += center  # the standardisation undone: the training values to ~6e-8, missing ones at the median
    spread = np.max(np.abs(rows - center), axis=0, initial=0.0)
    centre_splits(head, rows, tolerance=RECOVERY_TOLERANCE * spread)
    return True
