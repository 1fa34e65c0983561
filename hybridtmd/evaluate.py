"""Evaluation on folds grouped by sample: images of one sample are never on both sides.

This module will grow into the full evaluation of the hybrid classifier (issue 6); it already
holds the grouped cross-validation loop that every accuracy in hybridtmd comes from.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import accuracy_score, f1_score
from sklearn.model_selection import StratifiedGroupKFold

from .errors import HybridTMDError


class GroupLeakError(HybridTMDError, ValueError):
    """A train/test split puts images of one sample (group) on both sides."""


def check_grouped_split(train: np.ndarray, test: np.ndarray, groups: np.ndarray) -> None:
    """Raise :class:`GroupLeakError` when a sample is in both ``train`` and ``test``."""
    shared = set(groups[train]) & set(groups[test])
    if shared:
        raise GroupLeakError(f"{len(shared)} sample(s) in both train and test, e.g. {sorted(shared)[:3]}")


def grouped_cross_validate(
    make_models: Callable[[int], Mapping[str, Any]],
    X: Any,
    y: np.ndarray,
    groups: np.ndarray,
    *,
    n_splits: int = 5,
    seeds: Iterable[int] = (0,),
) -> pd.DataFrame:
    """Accuracy and macro-F1 of every model on StratifiedGroupKFold(``n_splits``) folds by sample,
    repeated with each shuffling seed.

    ``make_models(seed)`` returns fresh, unfitted models by name. ``X`` is an array or DataFrame.
    Returns one row per (seed, fold, model) with ``classifier, seed, fold, n_test, accuracy,
    macro_f1``; :func:`summarize_folds` gives mean and std.
    """
    y, groups = np.asarray(y), np.asarray(groups)
    take = (lambda idx: X.iloc[idx]) if hasattr(X, "iloc") else (lambda idx: X[idx])
    rows = []
    for seed in seeds:
        cv = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
        for fold, (train, test) in enumerate(cv.split(np.zeros(len(y)), y, groups)):
            check_grouped_split(train, test, groups)
            for name, model in make_models(seed).items():
                pred = model.fit(take(train), y[train]).predict(take(test))
                rows.append({"classifier": name, "seed": seed, "fold": fold, "n_test": len(test),
                             "accuracy": accuracy_score(y[test], pred),
                             "macro_f1": f1_score(y[test], pred, average="macro")})
    return pd.DataFrame(rows)


def summarize_folds(folds: pd.DataFrame) -> pd.DataFrame:
    """Mean and standard deviation over folds of accuracy and macro-F1, per classifier."""
    return folds.groupby("classifier")[["accuracy", "macro_f1"]].agg(["mean", "std"])


def format_summary(folds: pd.DataFrame) -> str:
    """Lines ``name  accuracy m ± s   macro-F1 m ± s`` for printing."""
    width = max(len(n) for n in folds["classifier"].unique())
    return "\n".join(
        f"  {name:<{width}}  accuracy {r[('accuracy', 'mean')]:.3f} ± {r[('accuracy', 'std')]:.3f}   "
        f"macro-F1 {r[('macro_f1', 'mean')]:.3f} ± {r[('macro_f1', 'std')]:.3f}"
        for name, r in summarize_folds(folds).iterrows()
    )
