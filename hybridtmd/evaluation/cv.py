"""The cross-validation engine: every model fitted and scored on identical folds grouped by sample.

Images or tables. ``X`` is a feature table or a sequence of AFM images. With images, a
:class:`~hybridtmd.model.HybridClassifier` whose features are per-image (no embedder PCA) has its
feature table computed once and is then cross-validated on the table; other models (e.g.
:class:`~hybridtmd.baseline.FineTuneClassifier`) receive the images of each fold."""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any, TypeVar

import numpy as np
import pandas as pd
from sklearn.base import clone
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, recall_score

from .._utils.progress import counting_fits, report_fits
from ..model import HybridClassifier
from ..model.columns import is_image_sequence
from ..model.features import resolve_features
from ..model.samples import majority_labels, pool_samples, sample_accuracy
from ..splits import Split, grouped_splits
from .coverage import coverage_scores
from .results import Evaluation

T = TypeVar("T")


def as_models(models: Any) -> dict[str, Any]:
    if isinstance(models, Mapping):
        return dict(models)
    return {type(models).__name__: models}


def take_rows(X: Any, idx: np.ndarray) -> Any:
    if hasattr(X, "iloc"):
        return X.iloc[idx]
    if isinstance(X, np.ndarray):
        return X[idx]
    return [X[i] for i in idx]


def model_inputs(models: dict[str, Any], X: Any) -> dict[str, tuple[Any, Any]]:
    """Each model with the input it is cross-validated on: image-based hybrid classifiers get
    their feature table, computed once (features are per image, so this equals per-fold fitting)."""
    if not is_image_sequence(X):
        return {name: (model, X) for name, model in models.items()}
    out, tables = {}, {}
    for name, model in models.items():
        features = resolve_features(model.features) if isinstance(model, HybridClassifier) else None
        if features is None or not features.is_per_image():
            out[name] = (model, X)
            continue
        key = feature_key(features)
        if key not in tables:
            tables[key] = features.fit_transform(X)
        out[name] = (model, tables[key])
    return out


def feature_key(features: Any) -> str:
    """Identity of a feature transformer's configuration: ``joblib.hash`` of all its parameters,
    nested ones included (a repr elides the middle of long parameter lists)."""
    import joblib

    return joblib.hash(features.get_params(deep=True))


def prepare(models: Any, X: Any, y: Any, groups: Any, cv: Any, n_repeats: int,
             random_state: int) -> tuple[np.ndarray, np.ndarray, list[Split], dict[str, tuple[Any, Any]]]:
    """Labels and groups as arrays, the checked grouped folds, and each model with its input."""
    y, groups = np.asarray(y), np.asarray(groups)
    splits = grouped_splits(y, groups, cv, n_repeats=n_repeats, random_state=random_state)
    return y, groups, splits, model_inputs(as_models(models), X)


def fit_with_groups(model: Any, X: Any, y: np.ndarray, groups: np.ndarray) -> Any:
    """Fit passing ``groups`` to estimators whose ``fit`` takes them (hybrid, fine-tuning)."""
    if "groups" in inspect.signature(model.fit).parameters:
        model.fit(X, y, groups=groups)
    else:
        model.fit(X, y)
    return model


def score_fold(y_true: np.ndarray, y_pred: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Metrics of one test fold, on the classes of ``labels``. Balanced accuracy is the mean
    recall of the classes present in ``y_true`` (what ``balanced_accuracy_score`` computes, without
    its warning for every fold whose predictions name a class its test images lack)."""
    recalls = recall_score(y_true, y_pred, labels=labels, average=None, zero_division=np.nan)
    present = set(y_true.tolist())
    row = {
        "accuracy": accuracy_score(y_true, y_pred),
        "balanced_accuracy": float(np.mean([r for c, r in zip(labels, recalls, strict=True) if c in present])),
        "macro_f1": f1_score(y_true, y_pred, labels=sorted(present), average="macro", zero_division=0.0),
    }
    row.update({f"recall[{c}]": (r if c in present else np.nan) for c, r in zip(labels, recalls, strict=True)})
    return row


def run_splits(
    models: dict[str, tuple[Any, Any]],
    y: np.ndarray,
    groups: np.ndarray,
    splits: list[Split],
    *,
    extra: Mapping[str, Any] | None = None,
    restrict: np.ndarray | None = None,
    train_cap: int | None = None,
    random_state: int = 0,
    n_jobs: int | None = 1,
) -> tuple[list[dict[str, Any]], dict[str, np.ndarray]]:
    """Fit and score every model on every split. ``restrict`` keeps only those images (both
    sides); ``train_cap`` subsamples training images per class. ``n_jobs`` (split, model) fits
    at once (joblib, loky); rows and confusion matrices are those of the serial run, in its order."""
    labels = np.unique(y if restrict is None else y[restrict])
    tasks = []
    for split in splits:
        train, test = split.train, split.test
        if restrict is not None:
            train, test = train[restrict[train]], test[restrict[test]]
        if train_cap is not None:
            rng = np.random.default_rng([random_state, split.repeat, split.fold, train_cap])
            train = cap_per_class(train, y, groups, train_cap, rng)
        tasks += [(name, model, X, split, train, test) for name, (model, X) in models.items()]
    rows, confusion = [], {name: np.zeros((len(labels), len(labels)), dtype=int) for name in models}
    for (name, *_), (row, counts) in zip(tasks, map_fits(scored_fit, tasks, y, groups, labels, extra, n_jobs=n_jobs),
                                         strict=True):
        confusion[name] += counts
        rows.append(row)
    return rows, {n: confusion_frame(m, labels) for n, m in confusion.items()}


def scored_fit(task: tuple[Any, ...], y: np.ndarray, groups: np.ndarray, labels: np.ndarray,
               extra: Mapping[str, Any] | None) -> tuple[dict[str, Any], np.ndarray]:
    """One model fitted on one split: its fold row and confusion counts."""
    name, model, X, split, train, test = task
    fitted, pred, proba, seconds = fit_predict(model, X, y, groups, train, test)
    scores = score_fold(y[test], pred, labels) | sample_scores(fitted.classes_, y[test], groups[test], pred, proba) \
        | coverage_scores(fitted, proba, y[test])
    row = fold_row(name, extra, split, train, test, scores, seconds) | reported_flops(fitted, len(test)) \
        | training_record(fitted)
    return row, confusion_matrix(y[test], pred, labels=labels)


def map_fits(function: Callable[..., T], tasks: list[Any], *args: Any, n_jobs: int | None = 1,
             per_task: int = 1, backend: str = "loky") -> Iterator[T]:
    """``function(task, *args)`` of every task, in order: here one after the other, or ``n_jobs``
    at once with joblib's ``backend`` (loky processes: faster than threads for the hybrid's heads
    on 2 cores), where the :func:`counting_fits` listener does not reach: then each finished task
    is counted here as ``per_task`` fits."""
    if n_jobs in (None, 1) or len(tasks) < 2:
        yield from (function(task, *args) for task in tasks)
        return
    from joblib import Parallel, delayed

    parallel = Parallel(n_jobs=n_jobs, backend=backend, return_as="generator")
    for result in parallel(delayed(function)(t, *args) for t in tasks):
        report_fits(per_task)
        yield result


def continues(model: Any) -> bool:
    """Whether ``model`` learns new classes by ``fit_continue`` (the fine-tuning baseline; a
    :class:`~hybridtmd.model.HybridClassifier` whose head can add classes, ``can_add_classes``)."""
    can_add = getattr(model, "can_add_classes", None)
    return hasattr(model, "fit_continue") and (can_add is None or bool(can_add()))


def fit_predict(model: Any, X: Any, y: np.ndarray, groups: np.ndarray, train: np.ndarray, test: np.ndarray,
                previous: Any = None) -> tuple[Any, np.ndarray, np.ndarray | None, tuple[float, float]]:
    """Fit a clone of ``model`` on ``train`` (or continue ``previous`` when it has
    ``fit_continue``), predict ``test`` (:func:`predict_test`); returns the fitted model, its
    labels, its probabilities (None without ``predict_proba``) and (fit, predict) seconds."""
    start = time.perf_counter()
    if previous is not None and continues(previous):
        fitted = previous
        fitted.fit_continue(take_rows(X, train), y[train], groups=groups[train])
    else:
        fitted = fit_with_groups(clone(model), take_rows(X, train), y[train], groups[train])
    fit_seconds = time.perf_counter() - start
    report_fits()
    start = time.perf_counter()
    pred, proba = predict_test(fitted, take_rows(X, test))
    return fitted, pred, proba, (fit_seconds, time.perf_counter() - start)


def predict_test(fitted: Any, X_test: Any) -> tuple[np.ndarray, np.ndarray | None]:
    """(labels, probabilities or None) of the test rows, their inputs read once: every score of
    a fold (image and sample accuracy, conformal coverage) is derived from these. A
    :class:`~hybridtmd.model.HybridClassifier`'s features are computed once
    (``transform_features``), then its head gives the probabilities (one ``predict_proba``) and
    its decision on that table (its own ``predict``: an SVM head votes on its decision values,
    which need not be the argmax of its Platt probabilities)."""
    if isinstance(fitted, HybridClassifier):
        X_test = fitted.transform_features(X_test)
    proba = np.asarray(fitted.predict_proba(X_test)) if hasattr(fitted, "predict_proba") else None
    return np.asarray(fitted.predict(X_test)), proba


def sample_scores(classes: Any, y_test: np.ndarray, groups_test: np.ndarray, pred: np.ndarray,
                  proba: np.ndarray | None) -> dict[str, float]:
    """Sample-level accuracy of one test fold: the images of each sample decided together
    (:func:`hybridtmd.model.samples.pool_samples`, mean log-probability, of the fold's
    probabilities ``proba``, columns in ``classes`` order) when the model has them, else by
    majority vote of its image labels (ties: first in sorted order)."""
    if proba is not None:
        verdicts = pool_samples(proba, groups_test, classes)
    else:
        verdicts = majority_labels(pred, groups_test).to_frame("label")
    return {"sample_accuracy": sample_accuracy(y_test, groups_test, verdicts), "n_test_samples": len(verdicts)}


def reported_flops(fitted: Any, n_test: int) -> dict[str, float]:
    """FLOPs a fitted model reports about itself (the fine-tuning baseline counts them)."""
    out = {}
    if hasattr(fitted, "fit_flops_"):
        out["fit_flops"] = float(fitted.fit_flops_)
    if hasattr(fitted, "flops_per_image_"):
        out["predict_flops"] = float(fitted.flops_per_image_) * n_test
    return out


def training_record(fitted: Any) -> dict[str, Any]:
    """What a fitted model says about its own training: the head its inner grouped CV chose
    (``head``, for :class:`~hybridtmd.model.HybridClassifier`), the backbone it actually ran, the
    epoch whose weights it kept and its per-epoch curve (JSON), for models that record them (the
    fine-tuning baseline)."""
    out: dict[str, Any] = {}
    selection = getattr(fitted, "head_selection_", None)
    if isinstance(selection, Mapping) and "choice" in selection:
        out["head"] = str(selection["choice"])
    if hasattr(fitted, "backbone_used_"):
        out["backbone"] = fitted.backbone_used_
    if getattr(fitted, "best_epoch_", None):
        out["kept_epoch"] = int(fitted.best_epoch_)
    if getattr(fitted, "history_", None):
        import json

        out["history"] = json.dumps(fitted.history_)
    return out


def fold_row(name: str, extra: Mapping[str, Any] | None, split: Split, train: np.ndarray, test: np.ndarray,
         scores: Mapping[str, float], seconds: tuple[float, float]) -> dict[str, Any]:
    return {"model": name, **(extra or {}), "repeat": split.repeat, "fold": split.fold, "n_train": len(train),
            "n_test": len(test), **scores, "fit_seconds": seconds[0], "predict_seconds": seconds[1]}


def confusion_frame(counts: np.ndarray, labels: np.ndarray) -> pd.DataFrame:
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
    n_jobs: int | None = 1,
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
    n_jobs : int
        Folds fitted at once (joblib processes); the result is the serial one.
    """
    return evaluate_inputs(model_inputs(as_models(models), X), y, groups, cv=cv, n_repeats=n_repeats,
                           random_state=random_state, n_jobs=n_jobs)


def evaluate_inputs(inputs: Mapping[str, tuple[Any, Any]], y: Any, groups: Any, *, cv: Any = None,
                    n_repeats: int = 1, random_state: int = 0, n_jobs: int | None = 1) -> Evaluation:
    """Like :func:`evaluate`, but each model comes with its own input: ``{name: (model, X)}``
    where ``X`` is a table (e.g. a column subset) or the images, all rows in the same order. All
    models see identical folds; this is how :func:`ablation` and ``hybridtmd compare`` put the
    hybrid and the fine-tuned CNN side by side."""
    y, groups = np.asarray(y), np.asarray(groups)
    splits = grouped_splits(y, groups, cv, n_repeats=n_repeats, random_state=random_state)
    rows, confusion = run_splits(dict(inputs), y, groups, splits, random_state=random_state, n_jobs=n_jobs)
    return Evaluation(pd.DataFrame(rows), confusion)


__all__ = ["cap_per_class", "counting_fits", "evaluate", "evaluate_inputs", "feature_key", "predict_test",
           "report_fits", "sample_scores"]
