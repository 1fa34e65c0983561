"""Evaluation on folds grouped by sample: images of one sample are never on both sides.

Every accuracy hybridtmd reports comes from here. One engine runs any number of models on
*identical* folds (``StratifiedGroupKFold`` by sample, repeated with different shuffles) and
records, per fold: accuracy, balanced accuracy, macro-F1, recall of every class, the confusion
matrix, and fit/predict wall time. The paper's modalities (Moses & Reinhart, MLST 2025) are
variations of the training side only; test folds are never altered:

* :func:`evaluate` - all classes, full training folds.
* :func:`evaluate_low_data` - training images capped at 64/32/16/8 per class.
* :func:`evaluate_sequential` - classes added one at a time (2 → 3 → 4 → 5).
* :func:`evaluate_multilabel` - one binary target per element (Mo, W, S, Se).
* :func:`ablation` - descriptors-only vs embeddings-only vs hybrid on one feature table.

Images or tables. ``X`` is a feature table or a sequence of AFM images. With images, a
:class:`~hybridtmd.model.HybridClassifier` whose features are per-image (no embedder PCA) has its
feature table computed once and is then cross-validated on the table; other models (e.g.
:class:`~hybridtmd.baseline.FineTuneClassifier`) receive the images of each fold.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import clone
from sklearn.metrics import accuracy_score, balanced_accuracy_score, confusion_matrix, f1_score, recall_score

from .splits import GroupLeakError, Split, check_grouped_split, grouped_splits, split_limit

#: Per-fold metric columns summarised by :meth:`Evaluation.summary`, besides ``recall[<class>]``.
METRICS = ("accuracy", "balanced_accuracy", "macro_f1", "fit_seconds", "predict_seconds", "fit_flops",
           "predict_flops")
MULTILABEL_METRICS = ("hamming_accuracy", "subset_accuracy", "fit_seconds", "predict_seconds")


@dataclass
class Evaluation:
    """Result of an evaluation: one row per (model, [modality setting], repeat, fold).

    Attributes
    ----------
    folds : DataFrame
        ``model, repeat, fold, n_train, n_test`` + metrics (+ ``cap`` / ``n_classes`` for the
        low-data / sequential modalities).
    confusion : dict
        model name → confusion matrix (DataFrame, true × predicted) summed over every fold of
        every repeat (for the last setting of a modality).
    keys : list of str
        Columns that identify a configuration (``model`` and any modality column).
    """

    folds: pd.DataFrame
    confusion: dict[str, pd.DataFrame] = field(default_factory=dict)
    keys: list[str] = field(default_factory=lambda: ["model"])

    def metric_columns(self) -> list[str]:
        return [c for c in self.folds.columns
                if c in METRICS or c in MULTILABEL_METRICS or c.startswith(("recall[", "accuracy["))]

    def summary(self) -> pd.DataFrame:
        """Mean and standard deviation over folds (and repeats) of every metric per configuration."""
        return self.folds.groupby(self.keys, sort=False)[self.metric_columns()].agg(["mean", "std"])

    def format(self, metrics: Sequence[str] = ("accuracy", "macro_f1")) -> str:
        """Lines ``<config>  accuracy m ± s  macro_f1 m ± s`` for printing."""
        summary = self.summary()
        labels = [" ".join(f"{v}" for v in (idx if isinstance(idx, tuple) else (idx,))) for idx in summary.index]
        width = max(map(len, labels))
        return "\n".join(
            f"  {label:<{width}}  " + "   ".join(
                f"{m} {row[(m, 'mean')]:.3f} ± {row[(m, 'std')]:.3f}" for m in metrics if (m, "mean") in row)
            for label, (_, row) in zip(labels, summary.iterrows(), strict=True))

    def to_markdown(self, metrics: Sequence[str] = ("accuracy", "balanced_accuracy", "macro_f1",
                                                    "fit_seconds")) -> str:
        """A Markdown table of ``mean ± std`` per configuration (for reports and README)."""
        summary = self.summary()
        metrics = [m for m in metrics if (m, "mean") in summary.columns]
        head = "| " + " | ".join(self.keys + metrics) + " |"
        rule = "|" + "---|" * (len(self.keys) + len(metrics))
        rows = []
        for idx, row in summary.iterrows():
            idx = idx if isinstance(idx, tuple) else (idx,)
            cells = [str(v) for v in idx] + [_mean_std(m, row[(m, "mean")], row[(m, "std")]) for m in metrics]
            rows.append("| " + " | ".join(cells) + " |")
        return "\n".join([head, rule, *rows])


def _mean_std(metric: str, mean: float, std: float) -> str:
    """``mean ± std`` in the metric's natural unit: GFLOP for FLOPs, 2 decimals for seconds."""
    if metric.endswith("flops"):
        return f"{mean / 1e9:.1f} ± {std / 1e9:.1f} GFLOP"
    if metric.endswith("seconds"):
        return f"{mean:.2f} ± {std:.2f}"
    return f"{mean:.3f} ± {std:.3f}"


# ---- the engine -------------------------------------------------------------------------------


def _as_models(models: Any) -> dict[str, Any]:
    if isinstance(models, Mapping):
        return dict(models)
    return {type(models).__name__: models}


def _take(X: Any, idx: np.ndarray) -> Any:
    if hasattr(X, "iloc"):
        return X.iloc[idx]
    if isinstance(X, np.ndarray):
        return X[idx]
    return [X[i] for i in idx]


def _model_inputs(models: dict[str, Any], X: Any) -> dict[str, tuple[Any, Any]]:
    """Each model with the input it is cross-validated on: image-based hybrid classifiers get
    their feature table, computed once (features are per image, so this equals per-fold fitting)."""
    from .model import HybridClassifier, is_image_sequence, resolve_features

    if not is_image_sequence(X):
        return {name: (model, X) for name, model in models.items()}
    out, tables = {}, {}
    for name, model in models.items():
        features = resolve_features(model.features) if isinstance(model, HybridClassifier) else None
        if features is None or not features.is_per_image():
            out[name] = (model, X)
            continue
        key = repr(features)
        if key not in tables:
            tables[key] = features.fit_transform(X)
        out[name] = (model, tables[key])
    return out


def _prepare(models: Any, X: Any, y: Any, groups: Any, cv: Any, n_repeats: int,
             random_state: int) -> tuple[np.ndarray, np.ndarray, list[Split], dict[str, tuple[Any, Any]]]:
    """Labels and groups as arrays, the checked grouped folds, and each model with its input."""
    y, groups = np.asarray(y), np.asarray(groups)
    splits = grouped_splits(y, groups, cv, n_repeats=n_repeats, random_state=random_state)
    return y, groups, splits, _model_inputs(_as_models(models), X)


def _fit(model: Any, X: Any, y: np.ndarray, groups: np.ndarray) -> Any:
    """Fit passing ``groups`` to estimators whose ``fit`` takes them (hybrid, fine-tuning)."""
    import inspect

    if "groups" in inspect.signature(model.fit).parameters:
        model.fit(X, y, groups=groups)
    else:
        model.fit(X, y)
    return model


def _score_fold(y_true: np.ndarray, y_pred: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    recalls = recall_score(y_true, y_pred, labels=labels, average=None, zero_division=np.nan)
    present = set(y_true.tolist())
    row = {
        "accuracy": accuracy_score(y_true, y_pred),
        "balanced_accuracy": balanced_accuracy_score(y_true, y_pred),
        "macro_f1": f1_score(y_true, y_pred, labels=sorted(present), average="macro", zero_division=0.0),
    }
    row.update({f"recall[{c}]": (r if c in present else np.nan) for c, r in zip(labels, recalls, strict=True)})
    return row


def _run(
    models: dict[str, tuple[Any, Any]],
    y: np.ndarray,
    groups: np.ndarray,
    splits: list[Split],
    *,
    extra: Mapping[str, Any] | None = None,
    restrict: np.ndarray | None = None,
    train_cap: int | None = None,
    random_state: int = 0,
) -> tuple[list[dict[str, Any]], dict[str, np.ndarray]]:
    """Fit and score every model on every split. ``restrict`` keeps only those images (both
    sides); ``train_cap`` subsamples training images per class."""
    labels = np.unique(y if restrict is None else y[restrict])
    rows, confusion = [], {name: np.zeros((len(labels), len(labels)), dtype=int) for name in models}
    for split in splits:
        train, test = split.train, split.test
        if restrict is not None:
            train, test = train[restrict[train]], test[restrict[test]]
        if train_cap is not None:
            rng = np.random.default_rng([random_state, split.repeat, split.fold, train_cap])
            train = cap_per_class(train, y, groups, train_cap, rng)
        for name, (model, X) in models.items():
            fitted, pred, seconds = _fit_predict(model, X, y, groups, train, test)
            confusion[name] += confusion_matrix(y[test], pred, labels=labels)
            rows.append(_row(name, extra, split, train, test, _score_fold(y[test], pred, labels), seconds)
                        | _compute(fitted, len(test)))
    return rows, {n: _confusion_frame(m, labels) for n, m in confusion.items()}


def _fit_predict(model: Any, X: Any, y: np.ndarray, groups: np.ndarray, train: np.ndarray, test: np.ndarray,
                 previous: Any = None) -> tuple[Any, np.ndarray, tuple[float, float]]:
    """Fit a clone of ``model`` on ``train`` (or continue ``previous`` when it has
    ``fit_continue``), predict ``test``; returns the fitted model, predictions, (fit, predict) s."""
    start = time.perf_counter()
    if previous is not None and hasattr(previous, "fit_continue"):
        fitted = previous
        fitted.fit_continue(_take(X, train), y[train], groups=groups[train])
    else:
        fitted = _fit(clone(model), _take(X, train), y[train], groups[train])
    fit_seconds = time.perf_counter() - start
    start = time.perf_counter()
    pred = np.asarray(fitted.predict(_take(X, test)))
    return fitted, pred, (fit_seconds, time.perf_counter() - start)


def _compute(fitted: Any, n_test: int) -> dict[str, float]:
    """FLOPs a fitted model reports about itself (the fine-tuning baseline counts them)."""
    out = {}
    if hasattr(fitted, "fit_flops_"):
        out["fit_flops"] = float(fitted.fit_flops_)
    if hasattr(fitted, "flops_per_image_"):
        out["predict_flops"] = float(fitted.flops_per_image_) * n_test
    return out


def _row(name: str, extra: Mapping[str, Any] | None, split: Split, train: np.ndarray, test: np.ndarray,
         scores: Mapping[str, float], seconds: tuple[float, float]) -> dict[str, Any]:
    return {"model": name, **(extra or {}), "repeat": split.repeat, "fold": split.fold, "n_train": len(train),
            "n_test": len(test), **scores, "fit_seconds": seconds[0], "predict_seconds": seconds[1]}


def _confusion_frame(counts: np.ndarray, labels: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame(counts, index=pd.Index(labels, name="true"), columns=pd.Index(labels, name="predicted"))


def cap_per_class(train: np.ndarray, y: np.ndarray, groups: np.ndarray, cap: int,
                  rng: np.random.Generator) -> np.ndarray:
    """At most ``cap`` training images per class, taken whole sample by whole sample in random
    order (the last sample is cut to fit), so a low-data model sees as few *samples* as it would
    in practice. Classes with fewer images keep all of them."""
    keep = []
    for label in np.unique(y[train]):
        idx = train[y[train] == label]
        if len(idx) <= cap:
            keep.append(idx)
            continue
        samples = rng.permutation(np.unique(groups[idx]))
        ordered = np.concatenate([idx[groups[idx] == s] for s in samples])
        keep.append(ordered[:cap])
    return np.sort(np.concatenate(keep))


def evaluate(
    models: Any,
    X: Any,
    y: Any,
    groups: Any,
    *,
    cv: Any = None,
    n_repeats: int = 1,
    random_state: int = 0,
) -> Evaluation:
    """Cross-validate one model (or a dict name → model) on folds grouped by sample.

    Parameters
    ----------
    models : estimator or dict
        Unfitted scikit-learn classifiers (cloned per fold). Estimators whose ``fit`` takes
        ``groups`` receive the training groups (for their own grouped inner splits).
    X : feature table or sequence of AFMImage
    y, groups : array-like
        Labels and sample ids, one per image.
    cv : splitter, optional
        Default ``StratifiedGroupKFold(5, shuffle=True)``. Any splitter is checked for leaks.
    n_repeats, random_state :
        Repeat ``r`` shuffles with ``random_state + r``.
    """
    return evaluate_inputs(_model_inputs(_as_models(models), X), y, groups, cv=cv, n_repeats=n_repeats,
                           random_state=random_state)


def evaluate_low_data(models: Any, X: Any, y: Any, groups: Any, *, caps: Iterable[int] = (64, 32, 16, 8),
                      cv: Any = None, n_repeats: int = 1, random_state: int = 0) -> Evaluation:
    """The paper's low-data modality: the same folds as :func:`evaluate`, training images capped
    at each of ``caps`` per class (:func:`cap_per_class`); test folds untouched. Adds a ``cap``
    column."""
    y, groups, splits, inputs = _prepare(models, X, y, groups, cv, n_repeats, random_state)
    rows, confusion = [], {}
    for cap in caps:
        r, confusion = _run(inputs, y, groups, splits, extra={"cap": int(cap)}, train_cap=int(cap),
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
    y, groups, splits, inputs = _prepare(models, X, y, groups, cv, n_repeats, random_state)
    labels = np.asarray(order)
    rows, confusion = [], {}
    for name, (model, data) in inputs.items():
        confusion[name] = np.zeros((len(labels), len(labels)), dtype=int)
        for split in splits:
            fitted = None
            for k in range(2, len(order) + 1):
                keep = np.isin(y, order[:k])
                train, test = split.train[keep[split.train]], split.test[keep[split.test]]
                fitted, pred, seconds = _fit_predict(model, data, y, groups, train, test, previous=fitted)
                if k == len(order):
                    confusion[name] += confusion_matrix(y[test], pred, labels=labels)
                rows.append(_row(name, {"n_classes": k}, split, train, test,
                                 _score_fold(y[test], pred, labels[:k]), seconds))
    frames = {n: _confusion_frame(m, labels) for n, m in confusion.items()}
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
    y, groups, splits, inputs = _prepare(models, X, y, groups, cv, n_repeats, random_state)
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
                _, pred_j, took = _fit_predict(model, data, t, groups, split.train, split.test)
                pred[:, j] = pred_j.astype(bool)
                seconds += took
            truth = targets.to_numpy()[split.test]
            scores = {"hamming_accuracy": float((pred == truth).mean()),
                      "subset_accuracy": float((pred == truth).all(axis=1).mean()),
                      **{f"accuracy[{e}]": float((pred[:, j] == truth[:, j]).mean())
                         for j, e in enumerate(targets.columns)}}
            rows.append(_row(name, None, split, split.train, split.test, scores, tuple(seconds)))
    return Evaluation(pd.DataFrame(rows))


def ablation(model: Any, table: pd.DataFrame, y: Any, groups: Any, *, cv: Any = None, n_repeats: int = 1,
             random_state: int = 0) -> Evaluation:
    """Descriptors only vs embeddings only vs hybrid: ``model`` on the ``phys__*`` columns, the
    ``latent__*`` columns and all of them, on identical folds. Rows are named ``descriptors``,
    ``embeddings`` and ``hybrid`` (a half missing from the table is left out)."""
    from .model import LATENT_PREFIX, PHYS_PREFIX

    columns = [str(c) for c in table.columns]
    variants = {
        "descriptors": [c for c in columns if c.startswith(PHYS_PREFIX)],
        "embeddings": [c for c in columns if c.startswith(LATENT_PREFIX)],
        "hybrid": columns,
    }
    inputs = {name: (model, table[cols]) for name, cols in variants.items() if cols}
    return evaluate_inputs(inputs, y, groups, cv=cv, n_repeats=n_repeats, random_state=random_state)


def evaluate_inputs(inputs: Mapping[str, tuple[Any, Any]], y: Any, groups: Any, *, cv: Any = None,
                    n_repeats: int = 1, random_state: int = 0) -> Evaluation:
    """Like :func:`evaluate`, but each model comes with its own input: ``{name: (model, X)}``
    where ``X`` is a table (e.g. a column subset) or the images, all rows in the same order. All
    models see identical folds; this is how :func:`ablation` and ``hybridtmd compare`` put the
    hybrid and the fine-tuned CNN side by side."""
    y, groups = np.asarray(y), np.asarray(groups)
    splits = grouped_splits(y, groups, cv, n_repeats=n_repeats, random_state=random_state)
    rows, confusion = _run(dict(inputs), y, groups, splits, random_state=random_state)
    return Evaluation(pd.DataFrame(rows), confusion)


def plot_evaluation(evaluation: Evaluation, metric: str = "accuracy", ax: Any = None) -> Any:
    """Bar chart of ``metric`` (mean ± std over folds) per configuration; returns the Axes."""
    import matplotlib.pyplot as plt

    summary = evaluation.summary()[metric]
    if ax is None:
        _, ax = plt.subplots(figsize=(1.2 + 1.1 * len(summary), 3.2), layout="constrained")
    labels = [" ".join(map(str, i)) if isinstance(i, tuple) else str(i) for i in summary.index]
    ax.bar(labels, summary["mean"], yerr=summary["std"], capsize=4, color="tab:blue", alpha=0.8)
    ax.set_ylabel(f"{metric.replace('_', ' ')} (mean ± std over folds)")
    ax.set_ylim(0, 1)
    ax.tick_params(axis="x", rotation=20)
    return ax


def plot_confusion(confusion: pd.DataFrame, ax: Any = None, title: str | None = None) -> Any:
    """Row-normalised confusion matrix (recall per true class) with counts; returns the Axes."""
    import matplotlib.pyplot as plt

    counts = confusion.to_numpy()
    rates = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    if ax is None:
        _, ax = plt.subplots(figsize=(1.2 + 0.9 * len(confusion), 1.0 + 0.9 * len(confusion)), layout="constrained")
    ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(confusion)), [str(c) for c in confusion.columns], rotation=30)
    ax.set_yticks(range(len(confusion)), [str(c) for c in confusion.index])
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for (i, j), n in np.ndenumerate(counts):
        ax.text(j, i, f"{n}\n{rates[i, j]:.2f}", ha="center", va="center", fontsize=8,
                color="white" if rates[i, j] > 0.5 else "black")
    if title:
        ax.set_title(title)
    return ax


__all__ = [
    "Evaluation",
    "GroupLeakError",
    "Split",
    "ablation",
    "cap_per_class",
    "check_grouped_split",
    "element_targets",
    "evaluate",
    "evaluate_inputs",
    "evaluate_low_data",
    "evaluate_multilabel",
    "evaluate_sequential",
    "grouped_splits",
    "plot_confusion",
    "plot_evaluation",
    "split_limit",
]
