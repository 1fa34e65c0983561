"""Choosing the head: ``classifier="auto"`` or a list of heads, by inner grouped CV on training data.

Each candidate head is fitted on the training side of ``StratifiedGroupKFold`` inner folds of the
*training* images (grouped by sample, :func:`~hybridtmd.splits.inner_grouped_splits`) and scored
on the inner test side; the head with the highest mean inner score wins (ties: the earlier
candidate). The score is accuracy when the classes are about equally frequent, and **balanced
accuracy** (the mean of the per-class recalls) when the largest class has more than
:data:`IMBALANCE_RATIO` times the images of the smallest: a material just added with 8 images
weighs 1 % of an inner test side, so accuracy would not notice a head that never predicts it.
Nothing outside the training data is seen, so an outer test fold stays untouched (nested
cross-validation; Cawley & Talbot, *JMLR* 11, 2010). The SVM fitted in an inner
fold is shared by the SVM head and the stack head when both would fit the same SVM on the same
columns, which makes ``auto`` cost little more than fitting its candidates on every inner fold.

The named heads:

* ``"xgboost"`` - :func:`~hybridtmd.model.heads.default_head`;
* ``"svm"`` - :class:`~hybridtmd.model.heads.KernelSVMHead` (its ``latent__`` columns power + L2
  normalised as one block);
* ``"stack"`` - :class:`~hybridtmd.model.stack.StackHead` (XGBoost on descriptors + normalised
  embedding + out-of-fold SVM probabilities); only for tables with ``latent__`` columns;
* ``"discriminant"`` - :class:`~hybridtmd.model.discriminant.DiscriminantHead` (shrinkage linear
  discriminant, priors from the class weights: learns a class from a few images).
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.base import clone
from sklearn.utils.validation import has_fit_parameter

from ..splits import fold_shortfall, inner_grouped_splits
from .discriminant import DiscriminantHead
from .heads import KernelSVMHead, default_head
from .split_points import centre_splits, is_xgboost
from .stack import StackHead, latent_indices

#: the heads a name may stand for, and the candidates of ``classifier="auto"``
HEAD_NAMES = ("xgboost", "svm", "stack", "discriminant")
#: the strings ``classifier`` accepts
HEAD_CHOICES = ("auto", *HEAD_NAMES)
#: largest / smallest class size above which ``auto`` scores heads by balanced accuracy
IMBALANCE_RATIO = 1.5


def is_head_spec(value: Any) -> bool:
    """A head given by name (``"auto"``, a :data:`HEAD_NAMES` entry or a list of them): saved
    in a manifest's params, so refitting a loaded model chooses the same way."""
    return (isinstance(value, str) and value in HEAD_CHOICES) or (
        isinstance(value, list) and bool(value) and all(isinstance(v, str) and v in HEAD_NAMES for v in value))


def is_head_list(value: Any) -> bool:
    """A non-empty list of head names (:data:`HEAD_NAMES`) or estimators: the candidates of a selection."""
    return isinstance(value, list) and len(value) > 0 and all(
        (isinstance(v, str) and v in HEAD_NAMES) or hasattr(v, "fit") for v in value)


def named_head(name: str, feature_names: Sequence[str], random_state: int | None, n_jobs: int | None) -> Any:
    """The unfitted head ``name`` (one of :data:`HEAD_NAMES`) for a table with ``feature_names``."""
    latent = latent_indices(feature_names)
    if name == "xgboost":
        return default_head(random_state, n_jobs)
    if name == "svm":  # power + L2 normalisation belongs to the embedding block only
        return KernelSVMHead(l2_normalize=tuple(latent) or None, random_state=random_state)
    if name == "stack":
        if not latent:
            raise ValueError("the stack head needs embedding columns (latent__*); this table has none")
        return StackHead(latent_columns=None if len(latent) == len(feature_names) else tuple(latent),
                         random_state=random_state, n_jobs=n_jobs)
    if name == "discriminant":
        return DiscriminantHead(l2_normalize=tuple(latent) or None)
    raise ValueError(f"unknown head {name!r}; expected one of {', '.join(HEAD_NAMES)} or an estimator")


def candidate_heads(classifier: Any, feature_names: Sequence[str], random_state: int | None,
                    n_jobs: int | None) -> dict[str, Any]:
    """Name → unfitted head of every candidate: ``"auto"`` is XGBoost, the SVM, (with
    embedding columns) the stack and the discriminant; a list names heads or gives estimators (named by their class,
    numbered when repeated)."""
    if isinstance(classifier, str):  # "auto"
        names = [n for n in HEAD_NAMES if n != "stack" or latent_indices(feature_names)]
        return {n: named_head(n, feature_names, random_state, n_jobs) for n in names}
    heads: dict[str, Any] = {}
    for entry in classifier:
        name = entry if isinstance(entry, str) else type(entry).__name__
        unique, k = name, 2
        while unique in heads:
            unique, k = f"{name}_{k}", k + 1
        heads[unique] = named_head(entry, feature_names, random_state, n_jobs) if isinstance(entry, str) \
            else clone(entry)
    return heads


def fit_head(head: Any, X: np.ndarray, y: np.ndarray, weights: np.ndarray, groups: np.ndarray,
             stacklevel: int = 2) -> Any:
    """Fit ``head`` with the sample weights and groups it accepts (a warning, placed
    ``stacklevel`` frames up, when it takes no weights but they are not all equal). An XGBoost
    head's split points are then moved off the training values (:func:`.split_points.centre_splits`:
    the same predictions on every CPU)."""
    extra = {"groups": groups} if has_fit_parameter(head, "groups") else {}
    if has_fit_parameter(head, "sample_weight"):
        head.fit(X, y, sample_weight=weights, **extra)
    else:
        if not np.allclose(weights, weights[0]):
            warnings.warn(f"{type(head).__name__} takes no sample_weight: class/sample weights ignored",
                          UserWarning, stacklevel=stacklevel + 1)
        head.fit(X, y, **extra)
    if is_xgboost(head):
        centre_splits(head, X)
    return head


def _svm_key(svm: KernelSVMHead, columns: np.ndarray, n_features: int) -> tuple:
    """What determines an SVM fit on ``X[:, columns]``: its settings and the columns it sees,
    with its L2 block in the coordinates of the whole table."""
    params = svm.get_params()
    l2 = params.pop("l2_normalize")
    block = columns if isinstance(l2, str) else (np.zeros(0, int) if l2 is None else columns[np.asarray(l2, int)])
    return (tuple(columns.tolist()), tuple(np.unique(block).tolist()), repr(sorted(params.items())), n_features)


def _fit_in_fold(head: Any, X: np.ndarray, y: np.ndarray, weights: np.ndarray, groups: np.ndarray,
                 svms: dict[tuple, KernelSVMHead]) -> Any:
    """Fit ``head`` on one inner fold's training rows, reusing an SVM of ``svms`` (this fold's
    fitted SVMs by :func:`_svm_key`) where the SVM head or a stack would fit the same one."""
    n = X.shape[1]
    if isinstance(head, KernelSVMHead):
        key = _svm_key(head, np.arange(n), n)
        if key not in svms:
            svms[key] = fit_head(head, X, y, weights, groups, stacklevel=4)
        return svms[key]
    if isinstance(head, StackHead):
        columns = np.arange(n) if head.latent_columns is None else np.unique(np.asarray(head.latent_columns, int))
        svm = head.make_svm()
        key = _svm_key(svm, columns, n)
        if key not in svms:
            svms[key] = svm.fit(X[:, columns], y, sample_weight=weights, groups=groups)
        return head.fit_with_svm(X, y, svms[key], sample_weight=weights)
    return fit_head(head, X, y, weights, groups, stacklevel=4)


def selection_metric(y_enc: np.ndarray) -> str:
    """``"balanced accuracy"`` when the largest class has more than :data:`IMBALANCE_RATIO` times
    the images of the smallest, else ``"accuracy"``."""
    counts = np.bincount(y_enc)
    counts = counts[counts > 0]
    return "balanced accuracy" if counts.max() > IMBALANCE_RATIO * counts.min() else "accuracy"


def inner_score(metric: str, y_true: np.ndarray, y_pred: np.ndarray, ignored: np.ndarray | None = None) -> float:
    """``metric`` (:func:`selection_metric`) of one inner test side: balanced accuracy is the
    mean recall over the classes present there, leaving out the ``ignored`` ones (a mask over the
    encoded classes: the few-shot classes, which the gate of :mod:`.few_shot` decides)."""
    if metric == "accuracy":
        return float(np.mean(y_pred == y_true))
    judged = [c for c in np.unique(y_true) if ignored is None or not ignored[c]]
    return float(np.mean([np.mean(y_pred[y_true == c] == c) for c in judged])) if judged else float("nan")


def select_head(candidates: dict[str, Any], X: np.ndarray, y_enc: np.ndarray, weights: np.ndarray,
                groups: np.ndarray, n_folds: int, random_state: int | None,
                ignored: np.ndarray | None = None) -> dict[str, Any]:
    """Score every candidate on inner grouped folds of the training rows by
    :func:`selection_metric` (balanced accuracy without the ``ignored`` classes, see
    :func:`inner_score`); the report ``head_selection_`` stores: ``choice``, the
    ``criterion``, per-candidate inner ``scores`` (one per fold), their ``mean`` and ``std``,
    ``fit_seconds`` (inner fits, summed over folds), the folds, and ``selection_seconds``.
    Without two usable inner folds (too few samples per class) the first candidate is taken and
    ``reason`` says so."""
    start = time.perf_counter()
    names = list(candidates)
    metric = selection_metric(y_enc)
    ignored = None if ignored is None or not np.any(ignored) or metric == "accuracy" else np.asarray(ignored, bool)
    criterion = f"mean inner {metric}" + ("" if ignored is None else " without the few-shot classes")
    report: dict[str, Any] = {"candidates": names, "criterion": criterion,
                              "inner_folds": 0, "grouped_by": "sample"}
    splits = inner_grouped_splits(y_enc, groups, n_folds, random_state) if len(names) > 1 else []
    if not splits:
        report |= {"choice": names[0], "scores": {}, "mean": {}, "std": {}, "fit_seconds": {},
                   "reason": "one candidate" if len(names) == 1 else
                   f"{fold_shortfall(y_enc, groups, 2) or 'no inner fold trains on every class'}: the first candidate"}
        report["selection_seconds"] = time.perf_counter() - start
        return report
    scores = {name: [] for name in names}
    seconds = dict.fromkeys(names, 0.0)
    for train, test in splits:
        svms: dict[tuple, KernelSVMHead] = {}
        for name in names:
            tick = time.perf_counter()
            head = _fit_in_fold(clone(candidates[name]), X[train], y_enc[train], weights[train], groups[train], svms)
            predicted = np.asarray(head.predict(X[test])).astype(int).ravel()
            seconds[name] += time.perf_counter() - tick
            scores[name].append(inner_score(metric, y_enc[test], predicted, ignored))
    mean = {n: float(np.nanmean(s)) if not np.isnan(s).all() else 0.0 for n, s in scores.items()}
    best = max(mean.values())
    report |= {"choice": next(n for n in names if mean[n] == best), "inner_folds": len(splits),
               "scores": scores, "mean": mean, "std": {n: float(np.std(s)) for n, s in scores.items()},
               "fit_seconds": seconds, "reason": f"highest {criterion}"}
    report["selection_seconds"] = time.perf_counter() - start
    return report


def choose_head(classifier: Any, feature_names: Sequence[str], X: np.ndarray, y_enc: np.ndarray,
                weights: np.ndarray, groups: np.ndarray, n_folds: int, random_state: int | None,
                n_jobs: int | None, ignored: np.ndarray | None = None) -> dict[str, Any]:
    """The head selection record of a :class:`~hybridtmd.model.HybridClassifier`'s ``classifier``:
    :func:`select_head` for ``"auto"`` or a list (``ignored``: the few-shot classes), else the one
    head it names or gives."""
    if not (classifier == "auto" or isinstance(classifier, list)):
        name = classifier if isinstance(classifier, str) else (
            "xgboost" if classifier is None else type(classifier).__name__)
        return {"choice": name, "candidates": [name], "reason": "given as classifier"}
    candidates = candidate_heads(classifier, feature_names, random_state, n_jobs)
    return select_head(candidates, X, y_enc, weights, groups, n_folds, random_state, ignored)


def make_head(classifier: Any, selection: dict[str, Any], feature_names: Sequence[str], random_state: int | None,
              n_jobs: int | None) -> Any:
    """A new unfitted head: the ``selection``'s choice for ``"auto"``/a list, else ``classifier``."""
    if classifier == "auto" or isinstance(classifier, list):
        return candidate_heads(classifier, feature_names, random_state, n_jobs)[selection["choice"]]
    if classifier is None or isinstance(classifier, str):
        return named_head(classifier or "xgboost", feature_names, random_state, n_jobs)
    return clone(classifier)
