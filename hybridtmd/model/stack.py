"""The stack head: XGBoost on the table plus out-of-fold kernel-SVM class probabilities.

Trees on single ReLU dimensions of a CNN embedding stall, while an RBF kernel on the whole
vector reads it well (docs/benchmarks.md, the paper-embeddings benchmark). Stacked generalisation (Wolpert,
*Neural Networks* 5, 1992) joins them: a :class:`~hybridtmd.model.heads.KernelSVMHead` on the
embedding block gives class probabilities, and XGBoost is trained on

* the physical-descriptor columns, unchanged,
* the embedding columns after :func:`~hybridtmd.model.heads.power_l2_normalise` (signed square
  root, each image's embedding scaled to unit norm), and
* the SVM's class probabilities ``latent_svm__p_<class>``.

The probabilities XGBoost is trained on are **out-of-fold**: each training image's comes from SVMs
fitted on inner grouped folds that did not contain its sample (the SVM head's own inner CV of its
chosen ``C`` and gamma, then its multiclass Platt scaling), never from an SVM that saw the image.
At prediction time the SVM fitted on all training images supplies them.

The SVM sees only the embedding columns, so its probabilities are functions of the embedding
alone: in grouped attributions they belong to the ``latent`` group, and exact TreeSHAP of the
XGBoost margin on :meth:`StackHead.transform`'s table is an exact attribution of the stack's
margin to those columns (:meth:`StackHead.get_booster`).
"""

from __future__ import annotations

import json
import numbers
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from .._utils.params import Check, Interval, validate_params
from .columns import LATENT_PREFIX, SVM_PROBA_PREFIX
from .heads import KernelSVMHead, check_sample_weight, default_head, power_l2_normalise
from .split_points import centre_splits


def _column_indices(values: Any) -> bool:
    return (isinstance(values, Sequence) and not isinstance(values, str) and len(values) > 0
            and all(Interval(numbers.Integral, 0, None)(v) for v in values))


class StackHead(ClassifierMixin, BaseEstimator):
    """XGBoost on descriptors + normalised embedding + out-of-fold RBF-SVM probabilities.

    Parameters
    ----------
    latent_columns : sequence of int or None
        The embedding columns (``latent__*``; :class:`~hybridtmd.model.HybridClassifier` passes
        them). The SVM sees only these, and they are power + L2 normalised for XGBoost. ``None``:
        every column is an embedding dimension (a table of CNN embeddings).
    svm : KernelSVMHead or None
        The kernel SVM to clone (``None``: ``KernelSVMHead(l2_normalize="all")`` with this
        ``random_state``).
    xgboost : XGBClassifier or None
        The XGBoost head to clone (``None``: :func:`~hybridtmd.model.heads.default_head`).
    random_state : int or None
        Seed of the default SVM's inner folds and of the default XGBoost head.
    n_jobs : int or None
        Threads of the default XGBoost head.

    Attributes
    ----------
    svm_ : KernelSVMHead  fitted on the embedding columns of every training image
    xgboost_ : XGBClassifier  fitted on :meth:`transform` of the training images, with the SVM
        probabilities out-of-fold
    latent_columns_ : ndarray of int
    classes_ : ndarray
    """

    _parameter_constraints: dict = {  # noqa: RUF012 (scikit-learn's convention: a class attribute)
        "latent_columns": [None, Check(_column_indices, "a non-empty sequence of column indices")],
        "svm": [None, KernelSVMHead],
        "xgboost": [None, Check(lambda h: hasattr(h, "get_booster"), "an XGBClassifier")],
        "random_state": [Interval(numbers.Integral, 0, None), None],
        "n_jobs": [Interval(numbers.Integral, None, None), None],
    }

    def __init__(self, latent_columns: Sequence[int] | None = None, svm: KernelSVMHead | None = None,
                 xgboost: Any = None, random_state: int | None = 0, n_jobs: int | None = None):
        self.latent_columns = latent_columns
        self.svm = svm
        self.xgboost = xgboost
        self.random_state = random_state
        self.n_jobs = n_jobs

    def make_svm(self) -> KernelSVMHead:
        """The unfitted SVM of this stack (a clone of ``svm``, or the default)."""
        if self.svm is not None:
            return clone(self.svm)
        return KernelSVMHead(l2_normalize="all", random_state=self.random_state)

    def fit(self, X: Any, y: Any, sample_weight: Any = None, groups: Any = None) -> StackHead:
        """Fit the SVM on the embedding columns (inner folds grouped by ``groups``), then XGBoost
        on the table with the SVM's out-of-fold probabilities."""
        validate_params(self, self._parameter_constraints)
        X_arr = validate_data(self, X, ensure_all_finite="allow-nan", reset=True, dtype=np.float64)
        latent = self._resolve_latent_columns(X_arr.shape[1])
        svm = self.make_svm().fit(X_arr[:, latent], y, sample_weight=sample_weight, groups=groups)
        return self.fit_with_svm(X_arr, y, svm, sample_weight)

    def fit_with_svm(self, X: Any, y: Any, svm: KernelSVMHead, sample_weight: Any = None) -> StackHead:
        """Fit XGBoost on top of ``svm``, already fitted on the embedding columns of exactly these
        rows (model selection shares one SVM between the SVM head and this stack)."""
        validate_params(self, self._parameter_constraints)
        X_arr = validate_data(self, X, ensure_all_finite="allow-nan", reset=True, dtype=np.float64)
        check_classification_targets(y)
        self.classes_, y_enc = np.unique(np.asarray(y), return_inverse=True)
        if not np.array_equal(svm.classes_, self.classes_):
            raise ValueError(f"the SVM was fitted on classes {svm.classes_.tolist()}, not {self.classes_.tolist()}")
        self.latent_columns_ = self._resolve_latent_columns(X_arr.shape[1])
        self.svm_ = svm
        oof = svm.oof_proba_
        if oof is None:  # too few samples for inner folds: no honest SVM column, so it is missing
            oof = np.full((len(X_arr), len(self.classes_)), np.nan)
        if len(oof) != len(X_arr):
            raise ValueError("the SVM has no out-of-fold probabilities for these rows (fit it on them first)")
        self.xgboost_ = default_head(self.random_state, self.n_jobs) if self.xgboost is None else clone(self.xgboost)
        weights = check_sample_weight(sample_weight, len(X_arr))
        table = self._augment(X_arr, oof)
        self.xgboost_.fit(table, y_enc, sample_weight=weights)
        centre_splits(self.xgboost_, table)  # the same predictions on every CPU (.split_points)
        return self

    def _resolve_latent_columns(self, n_features: int) -> np.ndarray:
        if self.latent_columns is None:
            return np.arange(n_features)
        columns = np.unique(np.asarray(self.latent_columns, dtype=int))
        if columns.max() >= n_features:
            raise ValueError(f"latent_columns must lie in [0, {n_features}), got up to {columns.max()}")
        return columns

    def _augment(self, X: np.ndarray, svm_proba: np.ndarray) -> np.ndarray:
        table = X.copy()
        block = X[:, self.latent_columns_]
        # missing embedding values stay missing for XGBoost; the norm is over the present ones
        normalised = power_l2_normalise(np.nan_to_num(block, nan=0.0), np.arange(block.shape[1]))
        table[:, self.latent_columns_] = np.where(np.isnan(block), np.nan, normalised)
        return np.column_stack([table, svm_proba])

    def transform(self, X: Any) -> np.ndarray:
        """The table the XGBoost part sees: ``X`` with the embedding columns power + L2 normalised,
        then one column per class of SVM probability (:meth:`get_feature_names_out`)."""
        check_is_fitted(self, "xgboost_")
        X_arr = validate_data(self, X, ensure_all_finite="allow-nan", reset=False, dtype=np.float64)
        return self._augment(X_arr, self.svm_.predict_proba(X_arr[:, self.latent_columns_]))

    def get_feature_names_out(self, input_features: Sequence[str], class_names: Sequence[Any] | None = None
                              ) -> list[str]:
        """Column names of :meth:`transform`: ``input_features``, then ``latent_svm__p_<class>`` for
        each class (``class_names``, the model's labels; default the encoded classes)."""
        check_is_fitted(self, "xgboost_")
        names = [str(n) for n in input_features]
        if len(names) != self.n_features_in_:
            raise ValueError(f"{len(names)} input feature names for {self.n_features_in_} columns")
        labels = self.classes_ if class_names is None else class_names
        return names + [f"{SVM_PROBA_PREFIX}{c}" for c in labels]

    def get_booster(self) -> Any:
        """The XGBoost booster on :meth:`transform`'s table (exact TreeSHAP of the stack's margin)."""
        check_is_fitted(self, "xgboost_")
        return self.xgboost_.get_booster()

    def predict_proba(self, X: Any) -> np.ndarray:
        return self.xgboost_.predict_proba(self.transform(X))

    def predict(self, X: Any) -> np.ndarray:
        return self.classes_[self.predict_proba(X).argmax(axis=1)]

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True
        return tags

    # ---- without pickle -----------------------------------------------------------------------

    def to_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """``(settings, arrays)``: XGBoost's own JSON model and the SVM's settings (JSON), the SVM's
        arrays prefixed ``svm__`` and the latent columns - a fitted stack without pickle."""
        check_is_fitted(self, "xgboost_")
        svm_settings, svm_arrays = self.svm_.to_state()
        booster = json.loads(bytes(self.xgboost_.get_booster().save_raw(raw_format="json")).decode())
        xgb_params = {k: v for k, v in self.xgboost_.get_params().items()
                      if v is None or isinstance(v, (bool, int, float, str))}
        settings = {"kind": "stack", "n_features_in": int(self.n_features_in_), "random_state": self.random_state,
                    "svm": svm_settings, "xgboost_params": xgb_params, "xgboost_model": booster}
        arrays = {f"svm__{k}": v for k, v in svm_arrays.items()}
        return settings, arrays | {"latent_columns_": self.latent_columns_, "classes_": self.classes_}

    @classmethod
    def from_state(cls, settings: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> StackHead:
        """The stack :meth:`to_state` described (``KeyError``/``TypeError``/``ValueError`` when
        malformed)."""
        from xgboost import XGBClassifier

        svm = KernelSVMHead.from_state(settings["svm"], {k[len("svm__"):]: v for k, v in arrays.items()
                                                         if k.startswith("svm__")})
        xgb = XGBClassifier(**settings["xgboost_params"])
        try:
            xgb.load_model(bytearray(json.dumps(settings["xgboost_model"]).encode()))
        except Exception as exc:  # XGBoost raises its own error class for a malformed model
            raise ValueError(f"not a readable XGBoost model ({exc})") from None
        head = cls(latent_columns=arrays["latent_columns_"].tolist(), random_state=settings["random_state"])
        head.svm_, head.xgboost_ = svm, xgb
        head.latent_columns_ = np.asarray(arrays["latent_columns_"], dtype=int)
        head.classes_ = np.asarray(arrays["classes_"])
        head.n_features_in_ = int(settings["n_features_in"])
        return head


def latent_indices(columns: Sequence[str]) -> list[int]:
    """Positions of the ``latent__*`` columns among ``columns``."""
    return [i for i, c in enumerate(map(str, columns)) if c.startswith(LATENT_PREFIX)]
