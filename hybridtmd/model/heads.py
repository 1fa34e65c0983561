"""The classifier heads on the feature table: XGBoost (the default) and a kernel SVM.

:func:`default_head` is the XGBoost head (exact TreeSHAP explanations). :class:`KernelSVMHead` is
an RBF support-vector head for tables dominated by CNN embeddings; its fitted state is plain
arrays, so it saves without pickle (:mod:`.head_files` writes and reads heads in a model
directory).
"""

from __future__ import annotations

import itertools
import numbers
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils import check_array
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from .._utils.params import Check, Interval, Options, validate_params
from ..splits import inner_grouped_splits
from .calibration import fit_temperature

if TYPE_CHECKING:  # xgboost is imported when a head is made, so importing the model stage stays light
    from xgboost import XGBClassifier


def default_head(random_state: int | None = 0, n_jobs: int | None = None) -> XGBClassifier:
    """The default XGBoost head (values chosen a priori, not tuned on any test fold).

    Many shallow trees with a small learning rate and strong column subsampling: the table has
    ~100 physical and ~1000 latent columns for a few hundred images, so each tree sees a small
    random subset of columns (like a random forest) and the ensemble is regularised by shrinkage.
    64 histogram bins per feature (XGBoost's default is 256) are plenty for a few thousand images
    and make each tree cheaper on wide tables. One thread unless ``n_jobs`` says otherwise: small
    tables gain little from threads, and OpenMP threads compete with other jobs for the same
    cores (cross-validation in parallel, a CNN).
    """
    from xgboost import XGBClassifier

    return XGBClassifier(
        n_estimators=400, learning_rate=0.05, max_depth=3, min_child_weight=1.0, subsample=0.8,
        colsample_bytree=0.3, reg_lambda=1.0, tree_method="hist", max_bin=64, n_jobs=1 if n_jobs is None else n_jobs,
        random_state=0 if random_state is None else random_state, verbosity=0,
    )


def signed_sqrt(X: np.ndarray) -> np.ndarray:
    """``sign(x)·sqrt(|x|)``, element-wise: the power normalisation of image features (Perronnin
    et al., ECCV 2010); for non-negative CNN (ReLU) features it is the square root, which
    makes their heavy-tailed activations closer to Gaussian before standardising."""
    return np.sign(X) * np.sqrt(np.abs(X))


def power_l2_normalise(X: np.ndarray, l2_columns: np.ndarray) -> np.ndarray:
    """:func:`signed_sqrt` of every column, then the ``l2_columns`` of each row scaled together to
    unit Euclidean norm (rows whose block is all zero stay zero): the power + L2 normalisation of
    an image's CNN feature vector (Perronnin, Sánchez & Mensink, ECCV 2010). It removes each
    image's overall activation strength (contrast, scan size) and keeps the pattern. Only the
    embedding block is meant: a norm over physical descriptors in unlike units would mean nothing."""
    Z = signed_sqrt(np.asarray(X, float))
    if len(l2_columns):
        block = Z[:, l2_columns]
        norm = np.linalg.norm(block, axis=1, keepdims=True)
        Z[:, l2_columns] = block / np.where(norm > 0, norm, 1.0)
    return Z


def check_sample_weight(sample_weight: Any, n: int) -> np.ndarray:
    """Sample weights as a float64 array of ``n`` values: ``None`` → ones, a number → that weight
    for every row, an array-like → checked to be 1-D of length ``n``. ValueError for another
    shape or when every weight is zero (nothing to fit)."""
    if sample_weight is None:
        weights = np.ones(n)
    elif isinstance(sample_weight, numbers.Number):
        weights = np.full(n, sample_weight, dtype=np.float64)
    else:
        weights = check_array(sample_weight, ensure_2d=False, dtype=np.float64, order="C", input_name="sample_weight")
        if weights.shape != (n,):
            raise ValueError(f"sample_weight.shape == {weights.shape}, expected {(n,)}! (one weight per row)")
    if n and not weights.any():
        raise ValueError("Sample weights must contain at least one non-zero number.")
    return weights


def _positive_numbers(values: Any) -> bool:
    return isinstance(values, Sequence) and len(values) > 0 and all(
        Interval(numbers.Real, 0, None, closed="neither")(v) for v in values)


def _column_indices(values: Any) -> bool:
    return isinstance(values, Sequence) and not isinstance(values, str) and all(
        Interval(numbers.Integral, None, None)(v) for v in values)


class KernelSVMHead(ClassifierMixin, BaseEstimator):
    """RBF support-vector head with C tuned by inner grouped cross-validation.

    For tables dominated by CNN embeddings, where trees on single ReLU dimensions stall (docs/benchmarks.md,
    paper-embeddings benchmark), a smooth kernel on the whole vector does better. Steps: training-
    median imputation → :func:`power_l2_normalise` (signed square root; the ``l2_normalize``
    columns, the embedding, scaled to unit norm per image) → standardisation →
    ``SVC(kernel="rbf")``. ``C`` and
    the kernel width (``gamma_grid`` × scikit-learn's ``gamma="scale"``) are chosen on a grid
    (Hsu, Chang & Lin, *A practical guide to support vector classification*) by accuracy over
    ``inner_folds`` ``StratifiedGroupKFold`` folds of the *training* data (grouped by sample when
    ``fit`` gets ``groups``), never by test folds. Probabilities: a multinomial logistic regression on the
    out-of-fold SVM decision values of the chosen ``C`` (multiclass Platt scaling); when a class
    has no out-of-fold image (a material of one sample), a softmax of the decision values divided
    by one temperature fitted on the out-of-fold rows there are (one-hot votes before).

    The fitted head is plain arrays (imputation values, standardisation, support vectors, dual
    coefficients, intercepts, calibration weights): ``decision_function`` evaluates scikit-learn's
    one-vs-one RBF decision and its one-vs-rest vote transform from them, so a model saves to
    ``.npz`` + JSON without pickle (:meth:`to_state`, :meth:`from_state`).

    Explanations of this head are not exact TreeSHAP; use the XGBoost head to explain.

    Parameters
    ----------
    C_grid, gamma_grid : sequences of float
        Candidate ``C`` and kernel-width factors (1 = ``gamma="scale"`` on standardised columns).
    l2_normalize : "all", None or sequence of int
        Columns L2-normalised together per image after the square root: ``"all"`` (a table of
        CNN embeddings), ``None`` (none) or their indices (:class:`HybridClassifier` passes its
        ``latent__`` columns). Chosen by nested grouped CV on the paper's embeddings
        (``benchmarks/select_svm_preprocessing.py``).
    inner_folds : int
        Grouped folds of the training data that choose ``C`` and gamma and calibrate.
    random_state : int or None
        Shuffles those folds.

    Attributes
    ----------
    l2_columns_ : ndarray of int
        The columns ``l2_normalize`` resolved to.
    best_C_, best_gamma_factor_, cv_scores_ :
        The chosen grid point and every grid point's inner-CV accuracy.
    oof_proba_ : ndarray or None
        Out-of-fold probabilities of the training rows at the chosen grid point (NaN rows: in no
        inner test fold; None without inner folds); what :class:`~hybridtmd.model.stack.StackHead`
        trains its XGBoost on. Not saved.
    """

    _parameter_constraints: dict = {  # noqa: RUF012 (scikit-learn's convention: a class attribute)
        "C_grid": [Check(_positive_numbers, "a non-empty sequence of positive numbers")],
        "gamma_grid": [Check(_positive_numbers, "a non-empty sequence of positive numbers")],
        "l2_normalize": [Options(("all",)), None, Check(_column_indices, "a sequence of column indices")],
        "inner_folds": [Interval(numbers.Integral, 1, None)],
        "random_state": [Interval(numbers.Integral, 0, None), None],
    }

    #: fitted arrays, the ``.npz`` part of :meth:`to_state`
    STATE_ARRAYS = ("classes_", "impute_values_", "center_", "scale_", "support_vectors_", "dual_coef_",
                    "intercept_", "n_support_", "calibration_coef_", "calibration_intercept_",
                    "calibration_classes_", "l2_columns_")

    def __init__(self, C_grid: Sequence[float] = (1.0, 3.0, 10.0, 30.0, 100.0),
                 gamma_grid: Sequence[float] = (0.5, 1.0, 2.0), l2_normalize: str | Sequence[int] | None = "all",
                 inner_folds: int = 3, random_state: int | None = 0):
        self.C_grid = C_grid
        self.gamma_grid = gamma_grid
        self.l2_normalize = l2_normalize
        self.inner_folds = inner_folds
        self.random_state = random_state

    def _pipeline(self, params: tuple[float, float]) -> Any:
        from sklearn.impute import SimpleImputer
        from sklearn.pipeline import Pipeline
        from sklearn.preprocessing import FunctionTransformer, StandardScaler
        from sklearn.svm import SVC

        # standardised columns have unit variance, so gamma = factor / n_features is the factor
        # times scikit-learn's gamma="scale"
        return Pipeline([("impute", SimpleImputer(strategy="median", keep_empty_features=True)),
                         ("power", FunctionTransformer(power_l2_normalise, kw_args={"l2_columns": self.l2_columns_})),
                         ("scale", StandardScaler()),
                         ("svm", SVC(C=params[0], kernel="rbf", gamma=params[1] / self.n_features_in_))])

    def fit(self, X: Any, y: Any, sample_weight: Any = None, groups: Any = None) -> KernelSVMHead:
        from sklearn.linear_model import LogisticRegression

        validate_params(self, self._parameter_constraints)
        X, y = validate_data(self, X, y, ensure_all_finite="allow-nan", reset=True)
        check_classification_targets(y)
        self.classes_, y_enc = np.unique(y, return_inverse=True)
        self.l2_columns_ = self._resolve_l2_columns()
        weights = check_sample_weight(sample_weight, len(X))
        groups = np.arange(len(y)) if groups is None else np.asarray(groups)
        splits = inner_grouped_splits(y_enc, groups, self.inner_folds, self.random_state)
        scores, oof = {}, {}
        for params, values in self._grid_decisions(X, y_enc, weights, splits).items():
            seen = ~np.isnan(values).any(axis=1)
            scores[params] = float(np.mean(self._vote(values[seen]) == y_enc[seen])) if seen.any() else -1.0
            oof[params] = (values, seen)
        best = max(scores, key=scores.get) if scores else (float(np.median(self.C_grid)), 1.0)
        self.best_C_, self.best_gamma_factor_ = best
        self.cv_scores_ = scores
        self._keep(self._pipeline(best).fit(X, y_enc, svm__sample_weight=weights))
        self.calibration_coef_ = self.calibration_intercept_ = self.calibration_classes_ = None
        # the calibrator learns from the out-of-fold rows: it needs every class among them (a rare
        # class whose samples all sat in dropped folds leaves the decision values uncalibrated)
        if best in oof and oof[best][1].sum() > len(self.classes_) and \
                len(np.unique(y_enc[oof[best][1]])) == len(self.classes_):
            values, seen = oof[best]
            calibrator = LogisticRegression(C=1.0, max_iter=1000).fit(values[seen], y_enc[seen])
            self.calibration_coef_, self.calibration_intercept_ = calibrator.coef_, calibrator.intercept_
            self.calibration_classes_ = calibrator.classes_
        # without every class out of fold (a material of one sample): a softmax of the decision
        # values with one temperature, which needs no per-class fit, instead of one-hot votes
        self.calibration_temperature_ = 1.0
        if self.calibration_coef_ is None and best in oof and oof[best][1].any():
            values, seen = oof[best]
            self.calibration_temperature_ = fit_temperature(self._logits(values[seen]), y_enc[seen])
        self.oof_proba_ = None
        if best in oof:  # the chosen grid point's out-of-fold probabilities (NaN: not in a test fold)
            values, seen = oof[best]
            self.oof_proba_ = np.full((len(y), len(self.classes_)), np.nan)
            self.oof_proba_[seen] = self._calibrated(values[seen])
        return self

    def _grid_decisions(self, X: np.ndarray, y_enc: np.ndarray, weights: np.ndarray,
                        splits: list[tuple[np.ndarray, np.ndarray]]) -> dict[tuple[float, float], np.ndarray]:
        """Out-of-fold decision values of every grid point (NaN rows: in no usable fold). The
        preprocessing does not depend on the grid point, so it is fitted once per fold."""
        grid = list(itertools.product(self.C_grid, self.gamma_grid)) if splits else []
        values = {params: np.full((len(y_enc), self._width()), np.nan) for params in grid}
        for tr, te in splits:
            if len(np.unique(y_enc[tr][weights[tr] > 0])) < len(self.classes_):
                continue  # zero weights removed a class from this inner fold's training side
            preprocess = self._pipeline(grid[0])[:-1].fit(X[tr])
            train, test = preprocess.transform(X[tr]), preprocess.transform(X[te])
            for params in grid:
                svm = self._pipeline(params)[-1].fit(train, y_enc[tr], sample_weight=weights[tr])
                values[params][te] = svm.decision_function(test).reshape(len(te), -1)
        return values

    def _resolve_l2_columns(self) -> np.ndarray:
        if self.l2_normalize is None:
            return np.zeros(0, int)
        if isinstance(self.l2_normalize, str):  # "all", the only string the constraints allow
            return np.arange(self.n_features_in_)
        columns = np.asarray(self.l2_normalize, dtype=int).ravel()
        if columns.size and (columns.min() < 0 or columns.max() >= self.n_features_in_):
            raise ValueError(f"l2_normalize indices must lie in [0, {self.n_features_in_}), "
                             f"got {columns.min()}..{columns.max()}")
        return np.unique(columns)

    def _keep(self, pipeline: Any) -> None:
        """The fitted pipeline's arrays, which are all :meth:`decision_function` needs."""
        svm = pipeline["svm"]
        self.impute_values_ = pipeline["impute"].statistics_
        self.center_, self.scale_ = pipeline["scale"].mean_, pipeline["scale"].scale_
        self.gamma_ = float(svm.gamma)
        self.support_vectors_, self.n_support_ = svm.support_vectors_, svm.n_support_
        # public dual_coef_/intercept_: for two classes scikit-learn has already flipped their
        # signs so that K @ dual_coef_[0] + intercept_[0] is its decision function
        self.dual_coef_, self.intercept_ = svm.dual_coef_, svm.intercept_

    def _width(self) -> int:
        return 1 if len(self.classes_) == 2 else len(self.classes_)

    def _vote(self, values: np.ndarray) -> np.ndarray:
        return (values[:, 0] > 0).astype(int) if values.shape[1] == 1 else values.argmax(axis=1)

    def decision_function(self, X: Any) -> np.ndarray:
        """scikit-learn's ``SVC.decision_function`` (``"ovr"`` shape ``(n, n_classes)``; ``(n,)``
        for two classes) of the fitted head, evaluated from its arrays."""
        values = self._decisions(X)
        return values[:, 0] if values.shape[1] == 1 else values

    def _decisions(self, X: Any) -> np.ndarray:
        """Decision values as a 2-D array (one column for two classes)."""
        from sklearn.metrics.pairwise import rbf_kernel

        check_is_fitted(self, "support_vectors_")
        X = validate_data(self, X, ensure_all_finite="allow-nan", reset=False)
        imputed = np.where(np.isnan(X), self.impute_values_, X)
        Z = (power_l2_normalise(imputed, self.l2_columns_) - self.center_) / self.scale_
        kernel = rbf_kernel(Z, self.support_vectors_, gamma=self.gamma_)
        if len(self.classes_) == 2:
            return (kernel @ self.dual_coef_[0] + self.intercept_[0])[:, None]
        # libsvm's one-vs-one decisions: for classes i < j, the support vectors of i weighted by
        # row j - 1 of the dual coefficients plus those of j weighted by row i
        bounds = np.r_[0, np.cumsum(self.n_support_)]
        n = len(self.classes_)
        votes, confidence = np.zeros((len(X), n)), np.zeros((len(X), n))
        for k, (i, j) in enumerate(itertools.combinations(range(n), 2)):
            si, sj = slice(bounds[i], bounds[i + 1]), slice(bounds[j], bounds[j + 1])
            ovo = (kernel[:, si] @ self.dual_coef_[j - 1, si] + kernel[:, sj] @ self.dual_coef_[i, sj]
                   + self.intercept_[k])
            # scikit-learn's one-vs-rest transform: votes plus confidences squashed below 1/3
            votes[:, i] += ovo > 0
            votes[:, j] += ovo <= 0
            confidence[:, i] += ovo
            confidence[:, j] -= ovo
        return votes + confidence / (3 * (np.abs(confidence) + 1))

    def predict(self, X: Any) -> np.ndarray:
        votes = self._vote(self._decisions(X))
        return self.classes_[votes]

    def predict_proba(self, X: Any) -> np.ndarray:
        return self._calibrated(self._decisions(X))

    def _calibrated(self, values: np.ndarray) -> np.ndarray:
        """Probabilities of decision values (multiclass Platt scaling; one-hot votes without it)."""
        from scipy.special import expit, softmax

        if self.calibration_coef_ is None:  # too little data for Platt scaling: tempered decision values
            if self.calibration_temperature_ is None:  # saved before the temperature existed: one-hot votes
                return np.eye(len(self.classes_))[self._vote(values)]
            return softmax(self._logits(values) / self.calibration_temperature_, axis=1)
        logits = values @ self.calibration_coef_.T + self.calibration_intercept_
        if logits.shape[1] == 1:  # scikit-learn's binary logistic regression
            calibrated = np.column_stack([expit(-logits[:, 0]), expit(logits[:, 0])])
        else:
            calibrated = softmax(logits, axis=1)
        proba = np.zeros((len(values), len(self.classes_)))
        proba[:, self.calibration_classes_] = calibrated
        return proba

    @staticmethod
    def _logits(values: np.ndarray) -> np.ndarray:
        """Decision values as one logit per class: two classes' single value ``v`` as ``[0, v]``."""
        return np.column_stack([np.zeros(len(values)), values[:, 0]]) if values.shape[1] == 1 else values

    def to_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """``(settings, arrays)``: JSON-serialisable settings and scalars, and plain numeric arrays
        (:attr:`STATE_ARRAYS`; the classes must be numbers or strings) - a fitted head without pickle."""
        check_is_fitted(self, "support_vectors_")
        arrays = {name: np.asarray(getattr(self, name)) for name in self.STATE_ARRAYS
                  if getattr(self, name) is not None}
        settings = {"params": {k: list(v) if isinstance(v, (tuple, list)) else v for k, v in self.get_params().items()},
                    "n_features_in": int(self.n_features_in_), "gamma": self.gamma_,
                    "best_C": self.best_C_, "best_gamma_factor": self.best_gamma_factor_,
                    "calibration_temperature": self.calibration_temperature_,
                    "cv_scores": [[c, g, s] for (c, g), s in self.cv_scores_.items()]}
        return settings, arrays

    @classmethod
    def from_state(cls, settings: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> KernelSVMHead:
        """The head :meth:`to_state` described (``KeyError``/``TypeError`` on a malformed state)."""
        params = dict(settings["params"])
        l2 = params.get("l2_normalize")
        head = cls(**{**params, "C_grid": tuple(params["C_grid"]), "gamma_grid": tuple(params["gamma_grid"]),
                      "l2_normalize": tuple(l2) if isinstance(l2, list) else l2})
        for name in cls.STATE_ARRAYS:
            setattr(head, name, arrays[name] if name in arrays else None)
        head.oof_proba_ = None  # used while fitting a stack only; not saved
        if head.l2_columns_ is None:  # saved before l2_normalize existed: square root only
            head.l2_columns_ = np.zeros(0, int)
        for name in ("classes_", "impute_values_", "support_vectors_", "dual_coef_", "intercept_", "n_support_"):
            if getattr(head, name) is None:
                raise KeyError(name)
        head.n_features_in_ = int(settings["n_features_in"])
        head.gamma_ = float(settings["gamma"])
        head.best_C_, head.best_gamma_factor_ = float(settings["best_C"]), float(settings["best_gamma_factor"])
        head.cv_scores_ = {(float(c), float(g)): float(s) for c, g, s in settings["cv_scores"]}
        temperature = settings.get("calibration_temperature")
        head.calibration_temperature_ = None if temperature is None else float(temperature)
        return head

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True
        return tags
