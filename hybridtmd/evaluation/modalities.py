"""The paper's evaluation modalities (Moses & Reinhart, MLST 2025): variations of the training side
only, on the folds of :func:`~hybridtmd.evaluation.evaluate`; test folds are never altered.

* :func:`evaluate_low_data` - training images capped per class.
* :func:`evaluate_sequential` - classes added one at a time (2 → 3 → 4 → 5).
* :func:`evaluate_multilabel` - one binary target per element (Mo, W, S, Se).
* :func:`ablation` - descriptors-only vs embeddings-only vs hybrid on one feature table."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import confusion_matrix

from ..model import LATENT_PREFIX, PHYS_PREFIX
from .cv import confusion_frame, evaluate_inputs, fit_predict, fold_row, prepare, run_splits, score_fold
from .results import Evaluation


def evaluate_low_data(models: Any, X: Any, y: Any, groups: Any, *, caps: Iterable[int] = (64, 32, 16, 8),
                      cv: Any = None, n_repeats: int = 1, random_state: int = 0) -> Evaluation:
    """The paper's low-data modality: the same folds as :func:`evaluate`, training images capped
    at each of ``caps`` per class (:func:`cap_per_class`); test folds untouched. Adds a ``cap``
    column."""
    y, groups, splits, inputs = prepare(models, X, y, groups, cv, n_repeats, random_state)
    rows, confusion = [], {}
    for cap in caps:
        r, confusion = run_splits(inputs, y, groups, splits, extra={"cap": int(cap)}, train_cap=int(cap),
                            random_state=random_state)
        rows += r
    return Evaluation(pd.DataFrame(rows), confusion, keys=["model", "cap"])


def evaluate_sequential(models: Any, X: Any, y: Any, groups: Any, *, class_order: Sequence[Any] | None = None,
                        cv: Any = None, n_repeats: int = 1, random_state: int = 0) -> Evaluation:
    """The paper's sequential modality: classes added one at a time, 2 → 3 → ... → all.

    Stage ``k`` trains on the training images of the first ``k`` classes of ``class_order``
    (default: most frequent first) and tests on the test images of those classes; folds are the
    same at every stage. A model with ``fit_continue`` (the fine-tuning baseline) continues from
    its previous stage's weights, as in the paper; the others are refitted from scratch at every
    stage (XGBoost cannot add classes to a trained multi-class booster; the hybrid refits in
    seconds). Adds an ``n_classes`` column.
    """
    y, groups = np.asarray(y), np.asarray(groups)
    order = list(class_order) if class_order is not None else list(pd.Series(y).value_counts().index)
    if set(order) != set(np.unique(y)) or len(order) != len(set(order)):
        raise ValueError(f"class_order must list every class once; classes: {sorted(map(str, np.unique(y)))}")
    y, groups, splits, inputs = prepare(models, X, y, groups, cv, n_repeats, random_state)
    labels = np.asarray(order)
    rows, confusion = [], {}
    for name, (model, data) in inputs.items():
        confusion[name] = np.zeros((len(labels), len(labels)), dtype=int)
        for split in splits:
            fitted = None
            for k in range(2, len(order) + 1):
                keep = np.isin(y, order[:k])
                train, test = split.train[keep[split.train]], split.test[keep[split.test]]
                fitted, pred, seconds = fit_predict(model, data, y, groups, train, test, previous=fitted)
                if k == len(order):
                    confusion[name] += confusion_matrix(y[test], pred, labels=labels)
                rows.append(fold_row(name, {"n_classes": k}, split, train, test,
                                 score_fold(y[test], pred, labels[:k]), seconds))
    frames = {n: confusion_frame(m, labels) for n, m in confusion.items()}
    return Evaluation(pd.DataFrame(rows), frames, keys=["model", "n_classes"])


ELEMENT_PATTERN = re.compile(r"([A-Z][a-z]?)")


def element_targets(labels: Sequence[str], elements: Sequence[str] | None = None) -> pd.DataFrame:
    """One boolean column per chemical element present in each material name.

    ``MoS2`` → Mo, S; ``Mo-WSe2`` (an alloy) → Mo, W, Se. ``elements`` fixes the columns
    (default: every element found, in order of first appearance).
    """
    found = [ELEMENT_PATTERN.findall(str(label)) for label in labels]
    columns = list(elements) if elements is not None else list(dict.fromkeys(e for f in found for e in f))
    return pd.DataFrame([[e in f for e in columns] for f in found], columns=columns, dtype=bool)


def evaluate_multilabel(models: Any, X: Any, y: Any, groups: Any, *, cv: Any = None, n_repeats: int = 1,
                        random_state: int = 0) -> Evaluation:
    """The paper's multilabel modality: predict which elements (Mo, W, S, Se) a film contains.

    Folds are stratified by material (the same folds as :func:`evaluate`). Each element gets its
    own binary model (a clone; one-vs-rest as ``MultiOutputClassifier``), an element present or
    absent in every training image is predicted constant. Reports Hamming accuracy (fraction of
    correct element decisions), subset accuracy (all elements right) and per-element accuracy.
    """
    y, groups, splits, inputs = prepare(models, X, y, groups, cv, n_repeats, random_state)
    targets = element_targets(y)
    rows = []
    for name, (model, data) in inputs.items():
        for split in splits:
            pred = np.zeros((len(split.test), targets.shape[1]), dtype=bool)
            seconds = np.zeros(2)
            for j, element in enumerate(targets.columns):
                t = targets[element].to_numpy()
                if len(np.unique(t[split.train])) < 2:
                    pred[:, j] = t[split.train][0]
                    continue
                _, pred_j, took = fit_predict(model, data, t, groups, split.train, split.test)
                pred[:, j] = pred_j.astype(bool)
                seconds += took
            truth = targets.to_numpy()[split.test]
            scores = {"hamming_accuracy": float((pred == truth).mean()),
                      "subset_accuracy": float((pred == truth).all(axis=1).mean()),
                      **{f"accuracy[{e}]": float((pred[:, j] == truth[:, j]).mean())
                         for j, e in enumerate(targets.columns)}}
            rows.append(fold_row(name, None, split, split.train, split.test, scores, tuple(seconds)))
    return Evaluation(pd.DataFrame(rows))


def ablation(model: Any, table: pd.DataFrame, y: Any, groups: Any, *, cv: Any = None, n_repeats: int = 1,
             random_state: int = 0) -> Evaluation:
    """Descriptors only vs embeddings only vs hybrid: ``model`` on the ``phys__*`` columns, the
    ``latent__*`` columns and all of them, on identical folds. Rows are named ``descriptors``,
    ``embeddings`` and ``hybrid`` (a half missing from the table is left out)."""
    columns = [str(c) for c in table.columns]
    variants = {
        "descriptors": [c for c in columns if c.startswith(PHYS_PREFIX)],
        "embeddings": [c for c in columns if c.startswith(LATENT_PREFIX)],
        "hybrid": columns,
    }
    inputs = {name: (model, table[cols]) for name, cols in variants.items() if cols}
    return evaluate_inputs(inputs, y, groups, cv=cv, n_repeats=n_repeats, random_state=random_state)


__all__ = ["ablation", "element_targets", "evaluate_low_data", "evaluate_multilabel",
           "evaluate_sequential"]
