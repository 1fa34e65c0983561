"""The hybrid classifier: physical descriptors ⊕ frozen-CNN embeddings → gradient-boosted trees.

Two estimators, in scikit-learn style:

:class:`HybridFeatures`
    AFM images → one feature table. Levels every image once, then concatenates the physical
    descriptors (:class:`~hybridtmd.descriptors.DescriptorExtractor`) and the frozen-CNN
    embeddings (:class:`~hybridtmd.embeddings.CNNEmbedder`) under self-explaining column names::

        phys__grain_density_per_um2, phys__sq_nm, ...   # physical descriptors (units in feature_units_)
        latent__0000 ... latent__1279                    # embedding dimensions

    ``feature_groups_`` maps each group (descriptor family: ``paper``, ``areal``, ``spectral``,
    ``grains``, ``texture``; and ``latent``) to its columns; explanations sum attributions over
    it. Either half can be switched off (``descriptors=None`` / ``embedder=None``) for ablations.

:class:`HybridClassifier`
    A classifier on that table: ``fit(X, y, groups=None)``, ``predict``, ``predict_proba``,
    ``score``. ``X`` is either a sequence of :class:`~hybridtmd.io.AFMImage` (features computed by
    ``features``) or a precomputed feature table (DataFrame or 2-D array, e.g. cached features or
    the paper's embedding table), so both use the same estimator. String labels in, string labels
    out. Default head: XGBoost (exact TreeSHAP explanations). Options: balanced class weights,
    temperature-scaled probabilities fitted on grouped out-of-fold predictions, and an
    out-of-distribution score that flags images unlike any training sample.

Model files are the head (XGBoost's JSON, or the kernel-SVM head's settings), a JSON manifest
and an ``.npz`` of arrays: no pickle, so loading never runs code (:meth:`HybridClassifier.save`,
:meth:`HybridClassifier.load`).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import platform
import warnings
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin, TransformerMixin, clone
from sklearn.preprocessing import LabelEncoder
from sklearn.utils.class_weight import compute_sample_weight
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import (
    _check_sample_weight,
    check_is_fitted,
    column_or_1d,
    has_fit_parameter,
    validate_data,
)

from . import __version__
from ._utils import array_digest, atomic_path, atomic_write_text
from .config import Config
from .descriptors import DescriptorConfig, DescriptorExtractor, list_descriptors
from .embeddings import CNNEmbedder
from .errors import HybridTMDError, ModelFileError
from .io import AFMImage
from .preprocess import LevelConfig, check_images, level
from .splits import inner_grouped_splits

PHYS_PREFIX = "phys__"
LATENT_PREFIX = "latent__"
LATENT_GROUP = "latent"
#: Version of the model directory layout written by :meth:`HybridClassifier.save`.
MODEL_FORMAT_VERSION = 2  # 2: the "head" entry and kernel-SVM heads; format 1 (XGBoost only) still loads
MANIFEST_NAME = "manifest.json"
CLASSIFIER_NAME = "classifier.json"
ARRAYS_NAME = "arrays.npz"
HEAD_ARRAY_PREFIX = "head__"


class FeatureMismatchError(HybridTMDError, ValueError):
    """A feature table at predict time lacks columns the model was trained on."""


# ---- feature names and groups -----------------------------------------------------------------


def feature_groups_from_columns(columns: Sequence[str]) -> dict[str, list[str]]:
    """Group columns by their meaning, from their names alone.

    ``phys__<descriptor>`` → the descriptor's family (``paper``, ``areal``...; ``physical`` for a
    name the registry does not know), ``latent__*`` → ``latent``, anything else → ``other``.
    Groups are in first-appearance order.
    """
    registry = list_descriptors()
    family_of = dict(zip(registry["name"], registry["family"], strict=True))
    groups: dict[str, list[str]] = {}
    for col in map(str, columns):
        if col.startswith(PHYS_PREFIX):
            group = family_of.get(col[len(PHYS_PREFIX):], "physical")
        elif col.startswith(LATENT_PREFIX):
            group = LATENT_GROUP
        else:
            group = "other"
        groups.setdefault(group, []).append(col)
    return groups


def feature_units(columns: Sequence[str]) -> dict[str, str]:
    """Unit of every column: the descriptor's unit for ``phys__*``, ``a.u.`` otherwise."""
    registry = list_descriptors()
    unit_of = dict(zip(registry["name"], registry["unit"], strict=True))
    return {c: unit_of.get(c[len(PHYS_PREFIX):], "a.u.") if c.startswith(PHYS_PREFIX) else "a.u." for c in columns}


def latent_table(embeddings: np.ndarray, columns: Sequence[str] | None = None) -> pd.DataFrame:
    """An embedding matrix as a feature table with ``latent__0000...`` columns (e.g. the paper's
    embedding npz), ready for :class:`HybridClassifier`."""
    embeddings = np.asarray(embeddings)
    if embeddings.ndim != 2:
        raise ValueError(f"embeddings must be 2-D (images x dimensions), got shape {embeddings.shape}")
    names = columns or [f"{LATENT_PREFIX}{i:04d}" for i in range(embeddings.shape[1])]
    return pd.DataFrame(embeddings, columns=list(names))


def is_image_sequence(X: Any) -> bool:
    """True when ``X`` is an AFMImage or a non-empty sequence of them (rather than a table)."""
    if isinstance(X, AFMImage):
        return True
    if isinstance(X, (pd.DataFrame, np.ndarray)) or not isinstance(X, Sequence) or isinstance(X, str):
        return False
    return len(X) > 0 and isinstance(X[0], AFMImage)


# ---- features ---------------------------------------------------------------------------------


class HybridFeatures(TransformerMixin, BaseEstimator):
    """AFM images → physical descriptors ⊕ frozen-CNN embeddings, one DataFrame.

    Parameters
    ----------
    descriptors : DescriptorExtractor, "default" or None
        The physical half; ``"default"`` is ``DescriptorExtractor(level=False)`` (every default
        family; images arrive levelled). ``None`` switches it off. A custom extractor is used as
        given: set its ``level=False`` when ``level=True`` here, or images are levelled twice.
    embedder : CNNEmbedder, "default" or None
        The latent half; ``"default"`` is ``CNNEmbedder()`` (offline EfficientNet-Lite0, 1280-d).
        ``None`` switches it off.
    level : bool
        Level each image once (:func:`hybridtmd.preprocess.level`) before both halves.
    level_config : LevelConfig, optional
        Levelling settings (default :class:`~hybridtmd.preprocess.LevelConfig`).

    Attributes
    ----------
    descriptors_, embedder_ : the fitted halves (None when off)
    feature_names_out_ : ndarray of str
    feature_groups_ : dict  group → columns (descriptor families, then ``latent``)
    feature_units_ : dict  column → unit
    reasons_ : DataFrame  after ``transform``: why each NaN descriptor is undefined
    """

    def __init__(
        self,
        descriptors: DescriptorExtractor | str | None = "default",
        embedder: CNNEmbedder | str | None = "default",
        level: bool = True,
        level_config: LevelConfig | None = None,
    ):
        self.descriptors = descriptors
        self.embedder = embedder
        self.level = level
        self.level_config = level_config

    def _halves(self) -> tuple[DescriptorExtractor | None, CNNEmbedder | None]:
        def resolve(value: Any, default: Any, what: str) -> Any:
            if value is None:
                return None
            if isinstance(value, str):
                if value != "default":
                    raise ValueError(f"{what} must be an estimator, 'default' or None, not {value!r}")
                return default()
            return clone(value)

        desc = resolve(self.descriptors, lambda: DescriptorExtractor(level=False), "descriptors")
        emb = resolve(self.embedder, CNNEmbedder, "embedder")
        if desc is None and emb is None:
            raise ValueError("HybridFeatures needs descriptors, an embedder or both (both are None)")
        return desc, emb

    def _levelled(self, X: Any) -> list[AFMImage]:
        images = check_images(X)
        return [level(im, self.level_config) for im in images] if self.level else images

    def fit(self, X: Sequence[AFMImage], y: Any = None) -> HybridFeatures:
        """Fit both halves (stateless unless the embedder has ``pca_components``)."""
        self._fit(X, transform=False)
        return self

    def fit_transform(self, X: Sequence[AFMImage], y: Any = None, **fit_params: Any) -> pd.DataFrame:
        return self._fit(X, transform=True)

    def transform(self, X: Sequence[AFMImage]) -> pd.DataFrame:
        """The feature table of ``X``: one row per image, columns ``feature_names_out_``."""
        check_is_fitted(self, "feature_names_out_")
        return self._table(self._levelled(X), fitting=False)

    def _fit(self, X: Any, transform: bool) -> pd.DataFrame | None:
        self.descriptors_, self.embedder_ = self._halves()
        images = self._levelled(X)
        table = self._table(images, fitting=True) if transform or not self.is_per_image() else None
        if table is None:
            self._set_names(self._names())
        return table

    def is_per_image(self) -> bool:
        """True when an image's features depend on that image alone (no embedder PCA): a table
        computed once for all images then equals fitting on each training fold."""
        return not (isinstance(self.embedder, CNNEmbedder) and self.embedder.pca_components is not None)

    def _names(self) -> list[str]:
        names: list[str] = []
        if self.descriptors_ is not None:
            names += [PHYS_PREFIX + n for n in self.descriptors_.get_feature_names_out()]
        if self.embedder_ is not None:
            names += [_latent_name(n) for n in self.embedder_.get_feature_names_out()]
        return names

    def _set_names(self, names: list[str]) -> None:
        self.feature_names_out_ = np.asarray(names, dtype=object)
        self.feature_groups_ = feature_groups_from_columns(names)
        self.feature_units_ = feature_units(names)
        self.n_features_out_ = len(names)

    def _table(self, images: list[AFMImage], fitting: bool) -> pd.DataFrame:
        parts = []
        reasons = pd.DataFrame(columns=["image", "source", "feature", "reason"])
        if self.descriptors_ is not None:
            phys = self.descriptors_.fit_transform(images) if fitting else self.descriptors_.transform(images)
            parts.append(phys.add_prefix(PHYS_PREFIX))
            reasons = self.descriptors_.reasons_.assign(feature=lambda r: PHYS_PREFIX + r["feature"])
        if self.embedder_ is not None:
            latent = self.embedder_.fit_transform(images) if fitting else self.embedder_.transform(images)
            parts.append(latent.rename(columns=_latent_name))
        table = pd.concat(parts, axis=1)
        table.index = pd.RangeIndex(len(images))
        if fitting:
            self._set_names(list(table.columns))
        self.reasons_ = reasons
        return table

    def _restore(self, names: Sequence[str]) -> HybridFeatures:
        """Set up a loaded model's features without data (both halves are stateless without PCA)."""
        self.descriptors_, self.embedder_ = self._halves()
        if self.embedder_ is not None:
            self.embedder_.fit([])
        if self._names() != list(names):
            raise ModelFileError("the manifest's feature names differ from those its feature settings produce "
                                 "(another hybridtmd version or descriptor registry?)")
        self._set_names(list(names))
        return self

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        check_is_fitted(self, "feature_names_out_")
        return self.feature_names_out_.copy()

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False
        return tags


def resolve_features(features: HybridFeatures | str | None) -> HybridFeatures | None:
    """The unfitted :class:`HybridFeatures` a ``features`` parameter stands for: ``"default"`` →
    ``HybridFeatures()``, an instance → a clone, ``None`` → ``None``."""
    if features is None:
        return None
    if isinstance(features, str):
        if features != "default":
            raise ValueError(f"features must be a HybridFeatures, 'default' or None, not {features!r}")
        return HybridFeatures()
    return clone(features)


def _latent_name(column: str) -> str:
    """``latent_0123`` → ``latent__0123``; ``pca_00`` → ``latent__pca_00``."""
    return LATENT_PREFIX + (column[len("latent_"):] if column.startswith("latent_") else column)


# ---- classifier -------------------------------------------------------------------------------


def default_head(random_state: int | None = 0, n_jobs: int | None = None):
    """The default XGBoost head (values chosen a priori, not tuned on any test fold).

    Many shallow trees with a small learning rate and strong column subsampling: the table has
    ~100 physical and ~1000 latent columns for a few hundred images, so each tree sees a small
    random subset of columns (like a random forest) and the ensemble is regularised by shrinkage.
    64 histogram bins per feature (XGBoost's default is 256) are plenty for a few thousand images
    and make each tree several times cheaper on wide tables. One thread unless ``n_jobs`` says
    otherwise: small tables gain little from threads, and OpenMP threads competing with other
    jobs for the same cores (cross-validation in parallel, a CNN) slow down by an order of magnitude.
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


class KernelSVMHead(ClassifierMixin, BaseEstimator):
    """RBF support-vector head with C tuned by inner grouped cross-validation.

    For tables dominated by CNN embeddings, where trees on single ReLU dimensions stall (see the
    paper-embeddings benchmark), a smooth kernel on the whole vector does better. Steps: training-
    median imputation → :func:`power_l2_normalise` (signed square root; the ``l2_normalize``
    columns, the embedding, scaled to unit norm per image) → standardisation →
    ``SVC(kernel="rbf")``. ``C`` and
    the kernel width (``gamma_grid`` × scikit-learn's ``gamma="scale"``) are chosen on a grid
    (Hsu, Chang & Lin, *A practical guide to support vector classification*) by accuracy over
    ``inner_folds`` ``StratifiedGroupKFold`` folds of the *training* data (grouped by sample when
    ``fit`` gets ``groups``), never by test folds. Probabilities: a multinomial logistic regression on the
    out-of-fold SVM decision values of the chosen ``C`` (multiclass Platt scaling).

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
        (``benchmarks/select_svm_preprocessing.py``: mean best inner-CV accuracy 0.792 with, 0.786
        without).
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
    """

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

        X, y = validate_data(self, X, y, ensure_all_finite="allow-nan", reset=True)
        check_classification_targets(y)
        self.classes_, y_enc = np.unique(y, return_inverse=True)
        self.l2_columns_ = self._resolve_l2_columns()
        weights = _check_sample_weight(sample_weight, X)
        groups = np.arange(len(y)) if groups is None else np.asarray(groups)
        splits = inner_grouped_splits(y_enc, groups, self.inner_folds, self.random_state)
        scores, oof = {}, {}
        if splits:
            for params in itertools.product(self.C_grid, self.gamma_grid):
                values = np.full((len(y), self._width()), np.nan)
                for tr, te in splits:
                    if len(np.unique(y_enc[tr][weights[tr] > 0])) < len(self.classes_):
                        continue  # zero weights removed a class from this inner fold's training side
                    model = self._pipeline(params).fit(X[tr], y_enc[tr], svm__sample_weight=weights[tr])
                    values[te] = model.decision_function(X[te]).reshape(len(te), -1)
                seen = ~np.isnan(values).any(axis=1)
                scores[params] = float(np.mean(self._vote(values[seen]) == y_enc[seen])) if seen.any() else -1.0
                oof[params] = (values, seen)
        best = max(scores, key=scores.get) if scores else (float(np.median(self.C_grid)), 1.0)
        self.best_C_, self.best_gamma_factor_ = best
        self.cv_scores_ = scores
        self._keep(self._pipeline(best).fit(X, y_enc, svm__sample_weight=weights))
        self.calibration_coef_ = self.calibration_intercept_ = self.calibration_classes_ = None
        if best in oof and oof[best][1].sum() > len(self.classes_):
            values, seen = oof[best]
            calibrator = LogisticRegression(C=1.0, max_iter=1000).fit(values[seen], y_enc[seen])
            self.calibration_coef_, self.calibration_intercept_ = calibrator.coef_, calibrator.intercept_
            self.calibration_classes_ = calibrator.classes_
        return self

    def _resolve_l2_columns(self) -> np.ndarray:
        if self.l2_normalize is None:
            return np.zeros(0, int)
        if isinstance(self.l2_normalize, str):
            if self.l2_normalize != "all":
                raise ValueError(f"l2_normalize must be 'all', None or column indices, not {self.l2_normalize!r}")
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
        from scipy.special import expit, softmax

        values = self._decisions(X)
        if self.calibration_coef_ is None:  # too little data for out-of-fold calibration: one-hot votes
            return np.eye(len(self.classes_))[self._vote(values)]
        logits = values @ self.calibration_coef_.T + self.calibration_intercept_
        if logits.shape[1] == 1:  # scikit-learn's binary logistic regression
            calibrated = np.column_stack([expit(-logits[:, 0]), expit(logits[:, 0])])
        else:
            calibrated = softmax(logits, axis=1)
        proba = np.zeros((len(values), len(self.classes_)))
        proba[:, self.calibration_classes_] = calibrated
        return proba

    def to_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """``(settings, arrays)``: JSON-serialisable settings and scalars, and plain numeric arrays
        (:attr:`STATE_ARRAYS`; the classes must be numbers or strings) - a fitted head without pickle."""
        check_is_fitted(self, "support_vectors_")
        arrays = {name: np.asarray(getattr(self, name)) for name in self.STATE_ARRAYS
                  if getattr(self, name) is not None}
        settings = {"params": {k: list(v) if isinstance(v, (tuple, list)) else v for k, v in self.get_params().items()},
                    "n_features_in": int(self.n_features_in_), "gamma": self.gamma_,
                    "best_C": self.best_C_, "best_gamma_factor": self.best_gamma_factor_,
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
        if head.l2_columns_ is None:  # saved before l2_normalize existed: square root only
            head.l2_columns_ = np.zeros(0, int)
        for name in ("classes_", "impute_values_", "support_vectors_", "dual_coef_", "intercept_", "n_support_"):
            if getattr(head, name) is None:
                raise KeyError(name)
        head.n_features_in_ = int(settings["n_features_in"])
        head.gamma_ = float(settings["gamma"])
        head.best_C_, head.best_gamma_factor_ = float(settings["best_C"]), float(settings["best_gamma_factor"])
        head.cv_scores_ = {(float(c), float(g)): float(s) for c, g, s in settings["cv_scores"]}
        return head

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True
        return tags


class HybridClassifier(ClassifierMixin, BaseEstimator):
    """Classify AFM images (or their feature table) with gradient-boosted trees.

    Parameters
    ----------
    features : HybridFeatures, "default" or None
        How images become a table; ``"default"`` is :class:`HybridFeatures` ``()``. Unused when
        ``fit`` receives a table. ``None``: the model accepts tables only.
    classifier : estimator, "xgboost", "svm" or None
        The head. ``None``/``"xgboost"``: :func:`default_head` (XGBoost; exact TreeSHAP
        explanations, saved as JSON). ``"svm"``: :class:`KernelSVMHead` (RBF SVM tuned by inner
        grouped CV; more accurate on embedding-dominated tables; its ``latent__`` columns
        power- and L2-normalised as one block - none for a table without column names; saved as
        JSON + npz; no TreeSHAP). Any scikit-learn classifier works for fit/predict.
    class_weight : "balanced", dict or None
        ``balanced`` weights each image by ``n / (n_classes * n_class)`` (multiplied with any
        ``sample_weight``), so rare materials count as much as common ones; a dict gives a weight
        per class label.
    calibration : "temperature" or None
        Temperature scaling (Guo et al., ICML 2017): one scalar ``T`` dividing the log-probabilities,
        fitted by log-loss on out-of-fold predictions of ``calibration_folds`` folds grouped by
        sample. Changes confidence, never the predicted class.
    calibration_folds : int
        Folds for the calibration predictions.
    ood_neighbors : int or None
        Out-of-distribution score = mean Euclidean distance to the ``ood_neighbors`` nearest
        training images in the standardised table (each block - physical, latent - scaled to equal
        weight; missing values at the training median). ``None`` switches it off.
    ood_quantile : float
        The OOD threshold is this quantile of the training images' own scores, each computed
        against training images of *other* samples (so a new sample of a known material scores
        like the training ones, and a new material scores above).
    random_state : int or None
        Seed of the default head and of the calibration folds.
    n_jobs : int or None
        Threads of the default head (None: 1).

    Attributes
    ----------
    classes_ : ndarray  the labels, as given
    classifier_ : the fitted head (trained on encoded labels 0..n_classes-1)
    features_ : HybridFeatures or None  fitted on the training images (None for table input)
    n_features_in_, feature_names_in_ : the table columns
    feature_groups_ : dict  group → columns (see :func:`feature_groups_from_columns`)
    temperature_ : float or None
    ood_threshold_ : float or None
    training_summary_ : dict  images, samples, class counts, data hash
    """

    def __init__(
        self,
        features: HybridFeatures | str | None = "default",
        classifier: Any = None,
        class_weight: str | Mapping[Any, float] | None = "balanced",
        calibration: str | None = None,
        calibration_folds: int = 5,
        ood_neighbors: int | None = 5,
        ood_quantile: float = 0.99,
        random_state: int | None = 0,
        n_jobs: int | None = None,
    ):
        self.features = features
        self.classifier = classifier
        self.class_weight = class_weight
        self.calibration = calibration
        self.calibration_folds = calibration_folds
        self.ood_neighbors = ood_neighbors
        self.ood_quantile = ood_quantile
        self.random_state = random_state
        self.n_jobs = n_jobs

    @classmethod
    def from_config(cls, config: Config) -> HybridClassifier:
        """The classifier a :class:`~hybridtmd.config.Config` describes (its ``[level]``,
        ``[descriptors]``, ``[embeddings]`` and ``[model]`` tables); unknown keys are a
        :class:`~hybridtmd.config.ConfigError` naming the file and table."""
        from .config import ConfigError

        def table(name: str) -> tuple[bool, dict[str, Any]]:
            values = dict(getattr(config, name))
            enabled = values.pop("enabled", True)
            if not isinstance(enabled, bool):
                raise ConfigError(f"{config.source}: [{name}] enabled must be true or false")
            return enabled, values

        try:
            use_desc, desc = table("descriptors")
            families = desc.pop("families", None)
            descriptors = DescriptorExtractor(families=families, config=DescriptorConfig.from_dict(desc),
                                              level=False) if use_desc else None
            use_emb, emb = table("embeddings")
            embedder = CNNEmbedder(**emb) if use_emb else None
            features = HybridFeatures(descriptors=descriptors, embedder=embedder, level_config=config.level)
            _, params = table("model")
            head = params.pop("xgboost", None)
            model = cls(features=features, **params)
            if head is not None:
                model.set_params(classifier=default_head(model.random_state, model.n_jobs).set_params(**head))
            model._check_params()
            if descriptors is not None:
                descriptors.get_feature_names_out()  # unknown families fail now
            if embedder is not None:
                embedder.get_feature_names_out()  # unknown backbone or missing weights fail now
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{config.source}: {exc}") from None
        return model

    # ---- fitting ------------------------------------------------------------------------------

    def fit(self, X: Any, y: Any, groups: Any = None, sample_weight: Any = None) -> HybridClassifier:
        """Fit on images or a feature table.

        ``groups`` (sample ids, one per image) make the calibration folds and the OOD reference
        respect samples; without them every image is its own sample.
        """
        self._check_params()
        table = self._fit_features(X)
        X_arr = validate_data(self, table, ensure_all_finite="allow-nan", reset=True, dtype=np.float64)
        check_classification_targets(y)
        y = column_or_1d(y, warn=True)
        if len(y) != X_arr.shape[0]:
            raise ValueError(f"y has {len(y)} labels for {X_arr.shape[0]} rows of X")
        encoder = LabelEncoder().fit(y)
        self.classes_ = encoder.classes_
        if len(self.classes_) < 2:
            raise ValueError(f"need at least 2 classes to fit a classifier, got 1 class: {self.classes_[0]!r}")
        y_enc = encoder.transform(y)
        groups = np.arange(len(y)) if groups is None else np.asarray(groups)
        if len(groups) != len(y):
            raise ValueError(f"groups has {len(groups)} entries for {len(y)} images")
        weights = self._weights(y_enc, sample_weight, X_arr)
        names = list(self.feature_names_in_) if hasattr(self, "feature_names_in_") else [
            f"x{i}" for i in range(X_arr.shape[1])]
        self.feature_groups_ = feature_groups_from_columns(names)

        self.classifier_ = self._fit_head(X_arr, y_enc, weights, groups)
        self.temperature_ = self._fit_temperature(X_arr, y_enc, groups, weights) if self.calibration else None
        self._fit_ood(X_arr, groups)
        self.training_summary_ = {
            "n_images": int(len(y)), "n_samples": int(len(np.unique(groups))),
            "class_counts": {str(c): int(n) for c, n in zip(self.classes_, np.bincount(y_enc), strict=True)},
            "data_sha256": array_digest(np.concatenate([np.nan_to_num(X_arr, nan=-1e300), y_enc[:, None]], axis=1)),
        }
        return self

    def _check_params(self) -> None:
        if not (self.class_weight in (None, "balanced") or isinstance(self.class_weight, Mapping)):
            raise ValueError(f"class_weight must be 'balanced', a dict class -> weight or None, "
                             f"not {self.class_weight!r}")
        if self.calibration not in (None, "temperature"):
            raise ValueError(f"calibration must be 'temperature' or None, not {self.calibration!r}")
        if self.ood_neighbors is not None and (not isinstance(self.ood_neighbors, (int, np.integer))
                                               or self.ood_neighbors < 1):
            raise ValueError(f"ood_neighbors must be a positive integer or None, not {self.ood_neighbors!r}")
        if not 0.0 < self.ood_quantile <= 1.0:
            raise ValueError(f"ood_quantile must be in (0, 1], not {self.ood_quantile!r}")

    def _fit_features(self, X: Any) -> Any:
        if not is_image_sequence(X):
            self.features_ = None
            return X
        if self.features is None:
            raise TypeError("this HybridClassifier has features=None: pass a feature table, not images")
        features = resolve_features(self.features)
        table = features.fit_transform(check_images(X))
        self.features_ = features
        return table

    def _weights(self, y_enc: np.ndarray, sample_weight: Any, X: np.ndarray) -> np.ndarray:
        weights = _check_sample_weight(sample_weight, X, dtype=np.float64)
        if isinstance(self.class_weight, Mapping):
            index = {c: i for i, c in enumerate(self.classes_.tolist())}
            unknown = set(self.class_weight) - set(index)
            if unknown:
                raise ValueError(f"class_weight names classes not in y: {sorted(map(str, unknown))}")
            per_class = {index[c]: w for c, w in self.class_weight.items()}
            weights = weights * compute_sample_weight(per_class, y_enc)
        elif self.class_weight == "balanced":
            weights = weights * compute_sample_weight("balanced", y_enc)
        return weights

    def _make_head(self) -> Any:
        if self.classifier is None or (isinstance(self.classifier, str) and self.classifier == "xgboost"):
            return default_head(self.random_state, self.n_jobs)
        if isinstance(self.classifier, str):
            if self.classifier != "svm":
                raise ValueError(f"classifier must be an estimator, 'xgboost', 'svm' or None, not {self.classifier!r}")
            # power + L2 normalisation belongs to the embedding block only
            latent = np.flatnonzero(self._latent_columns()).tolist()
            return KernelSVMHead(l2_normalize=tuple(latent) or None, random_state=self.random_state)
        return clone(self.classifier)

    def _fit_head(self, X: np.ndarray, y_enc: np.ndarray, weights: np.ndarray, groups: np.ndarray) -> Any:
        head = self._make_head()
        extra = {"groups": groups} if has_fit_parameter(head, "groups") else {}
        if has_fit_parameter(head, "sample_weight"):
            return head.fit(X, y_enc, sample_weight=weights, **extra)
        if not np.allclose(weights, weights[0]):
            warnings.warn(f"{type(head).__name__} takes no sample_weight: class/sample weights ignored",
                          UserWarning, stacklevel=3)
        return head.fit(X, y_enc, **extra)

    def _fit_temperature(self, X: np.ndarray, y_enc: np.ndarray, groups: np.ndarray, weights: np.ndarray) -> float:
        from scipy.optimize import minimize_scalar
        from scipy.special import log_softmax

        splits = inner_grouped_splits(y_enc, groups, self.calibration_folds, self.random_state)
        if not splits:
            warnings.warn("too few images per class or samples for calibration folds that each train on every "
                          "class: temperature left at 1", UserWarning, stacklevel=3)
            return 1.0
        log_p = np.zeros((len(y_enc), len(self.classes_)))
        for train, test in splits:
            head = self._fit_head(X[train], y_enc[train], weights[train], groups[train])
            log_p[test] = np.log(np.clip(head.predict_proba(X[test]), 1e-12, 1.0))
        seen = np.concatenate([test for _, test in splits])

        def nll(log_t: float) -> float:
            log_q = log_softmax(log_p[seen] / math.exp(log_t), axis=1)
            return float(-log_q[np.arange(len(seen)), y_enc[seen]].mean())

        return float(math.exp(minimize_scalar(nll, bounds=(-3.0, 3.0), method="bounded").x))

    # ---- out-of-distribution ------------------------------------------------------------------

    def _fit_ood(self, X: np.ndarray, groups: np.ndarray) -> None:
        self.ood_threshold_ = None
        if self.ood_neighbors is None:
            return
        center = np.nanmedian(X, axis=0)
        center = np.where(np.isfinite(center), center, 0.0)
        filled = np.where(np.isnan(X), center, X)
        scale = filled.std(axis=0)
        scale[scale == 0] = 1.0
        # the physical and the latent block weigh equally in the distance, whatever their widths
        is_latent = self._latent_columns()
        block = np.where(is_latent, 1.0 / math.sqrt(max(is_latent.sum(), 1)),
                         1.0 / math.sqrt(max((~is_latent).sum(), 1)))
        self.ood_center_, self.ood_scale_ = center, scale / block
        reference = self._ood_standardise(X)
        k = min(self.ood_neighbors, max(len(X) - 1, 1))
        train_scores = _knn_mean_distance(reference, reference, k, exclude_groups=(groups, groups))
        finite = train_scores[np.isfinite(train_scores)]
        self.ood_reference_ = reference.astype(np.float32)
        self.ood_threshold_ = float(np.quantile(finite, self.ood_quantile)) if finite.size else math.inf

    def _latent_columns(self) -> np.ndarray:
        """Which table columns are embedding dimensions (``latent__*``), as a boolean mask."""
        return np.array([c.startswith(LATENT_PREFIX) for c in self._column_names()], bool)

    def _column_names(self) -> list[str]:
        return [str(c) for c in getattr(self, "feature_names_in_", [f"x{i}" for i in range(self.n_features_in_)])]

    def _ood_standardise(self, X: np.ndarray) -> np.ndarray:
        filled = np.where(np.isnan(X), self.ood_center_, X)
        return (filled - self.ood_center_) / self.ood_scale_

    def ood_score(self, X: Any) -> np.ndarray:
        """Mean distance to the nearest training images (see ``ood_neighbors``); larger = stranger."""
        check_is_fitted(self, "classifier_")
        if self.ood_threshold_ is None:
            raise ValueError("this model was fitted with ood_neighbors=None")
        return self._ood_scores(self._table_array(X))

    def _ood_scores(self, table: np.ndarray) -> np.ndarray:
        k = min(self.ood_neighbors, len(self.ood_reference_))
        return _knn_mean_distance(self._ood_standardise(table), self.ood_reference_.astype(np.float64), k)

    def is_out_of_distribution(self, X: Any) -> np.ndarray:
        """True where :meth:`ood_score` exceeds ``ood_threshold_``: an image unlike every training
        sample (an unknown material, a broken scan), whose predicted label should not be trusted."""
        return self.ood_score(X) > self.ood_threshold_

    # ---- prediction ---------------------------------------------------------------------------

    def _table_array(self, X: Any) -> np.ndarray:
        check_is_fitted(self, "classifier_")
        if is_image_sequence(X):
            if self.features_ is None:
                raise TypeError("this model was fitted on a feature table: pass a table with the same columns")
            X = self.features_.transform(check_images(X))
        elif isinstance(X, pd.DataFrame) and hasattr(self, "feature_names_in_"):
            X = align_columns(X, self.feature_names_in_)
        return validate_data(self, X, ensure_all_finite="allow-nan", reset=False, dtype=np.float64)

    def transform_features(self, X: Any) -> pd.DataFrame:
        """The feature table the model sees for ``X`` (images or a table), with its column names."""
        return pd.DataFrame(self._table_array(X), columns=self._column_names())

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities, columns in the order of ``classes_`` (temperature-scaled when
        ``calibration='temperature'``)."""
        return self._proba(self._table_array(X))

    def _proba(self, table: np.ndarray) -> np.ndarray:
        proba = self.classifier_.predict_proba(table)
        if self.temperature_ is not None and self.temperature_ != 1.0:
            proba = _temper(proba, self.temperature_)
        return proba

    def predict(self, X: Any) -> np.ndarray:
        """The class of each image, as given in ``fit`` (the head's decision: for XGBoost the most
        probable class; calibration never changes it)."""
        table = self._table_array(X)  # checks fitted first
        return self.classes_[np.asarray(self.classifier_.predict(table), dtype=int)]

    def predict_frame(self, X: Any, index: Sequence[str] | None = None) -> pd.DataFrame:
        """A table per image: ``label``, ``confidence``, ``p_<class>`` for every class and, when
        fitted with an OOD reference, ``ood_score`` and ``out_of_distribution``."""
        table = self._table_array(X)
        proba = self._proba(table)
        label = self.classes_[np.asarray(self.classifier_.predict(table), dtype=int)]
        frame = pd.DataFrame({"label": label, "confidence": proba.max(axis=1)}, index=index)
        for j, c in enumerate(self.classes_):
            frame[f"p_{c}"] = proba[:, j]
        if self.ood_threshold_ is not None:
            score = self._ood_scores(table)
            frame["ood_score"] = score
            frame["out_of_distribution"] = score > self.ood_threshold_
        return frame

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True
        return tags

    # ---- persistence --------------------------------------------------------------------------

    def save(self, directory: str | Path, metrics: Mapping[str, Any] | None = None) -> Path:
        """Write the fitted model to ``directory`` (created): ``classifier.json`` (XGBoost's own
        JSON), ``arrays.npz`` (OOD reference) and ``manifest.json`` (settings, classes, feature
        names and groups, library versions, training-data hash, ``metrics``, SHA-256 of the other
        files). The :class:`KernelSVMHead` is saved as its settings in ``classifier.json`` and
        its arrays in ``arrays.npz``. No pickle: loading runs no code. Every file is written
        atomically."""
        check_is_fitted(self, "classifier_")
        from xgboost import XGBClassifier

        directory = Path(directory)
        arrays = {}
        if isinstance(self.classifier_, XGBClassifier):
            head_kind = "xgboost"
            directory.mkdir(parents=True, exist_ok=True)
            with atomic_path(directory / CLASSIFIER_NAME, suffix=".json") as tmp:  # the suffix picks XGBoost's format
                self.classifier_.save_model(tmp)
        elif isinstance(self.classifier_, KernelSVMHead):
            head_kind = "kernel_svm"
            settings, head_arrays = self.classifier_.to_state()
            arrays.update({HEAD_ARRAY_PREFIX + k: v for k, v in head_arrays.items()})
            directory.mkdir(parents=True, exist_ok=True)
            atomic_write_text(directory / CLASSIFIER_NAME, json.dumps(settings, indent=2, default=_json_default))
        else:
            raise ModelFileError("only the XGBoost and the kernel-SVM heads can be saved without pickle, "
                                 f"not {type(self.classifier_).__name__}")
        if self.ood_threshold_ is not None:
            arrays.update({"ood_reference": self.ood_reference_, "ood_center": self.ood_center_,
                           "ood_scale": self.ood_scale_})
        with atomic_path(directory / ARRAYS_NAME) as tmp, open(tmp, "wb") as fh:
            np.savez(fh, **arrays)
        manifest = {
            "format": "hybridtmd-model",
            "format_version": MODEL_FORMAT_VERSION,
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "versions": _library_versions(),
            "head": head_kind,
            "params": {k: self.get_params(deep=False)[k] for k in
                       ("class_weight", "calibration", "calibration_folds", "ood_neighbors", "ood_quantile",
                        "random_state", "n_jobs")},
            "features": None if self.features_ is None else _features_to_dict(self.features_),
            "classifier_params": {k: v for k, v in self.classifier_.get_params().items()
                                  if v is None or isinstance(v, (bool, int, float, str))},
            "classes": self.classes_.tolist(),
            "classes_dtype": self.classes_.dtype.str,
            "n_features_in": int(self.n_features_in_),
            "feature_names": self._column_names(),
            "feature_names_from_table": hasattr(self, "feature_names_in_"),
            "feature_groups": self.feature_groups_,
            "temperature": self.temperature_,
            "ood_threshold": self.ood_threshold_,
            "training": self.training_summary_,
            "metrics": dict(metrics or {}),
            "files": {name: _sha256(directory / name) for name in (CLASSIFIER_NAME, ARRAYS_NAME)},
        }
        atomic_write_text(directory / MANIFEST_NAME, json.dumps(manifest, indent=2, default=_json_default))
        return directory

    @classmethod
    def load(cls, directory: str | Path) -> HybridClassifier:
        """Read a model written by :meth:`save`. Raises :class:`ModelFileError` naming the file when
        a file is missing, was modified after saving, or comes from a newer format."""
        from xgboost import XGBClassifier

        directory = Path(directory)
        manifest = _read_manifest(directory)
        for name, digest in manifest["files"].items():
            path = directory / name
            if not path.is_file():
                raise ModelFileError(f"{path}: missing (the model directory is incomplete)")
            if _sha256(path) != digest:
                raise ModelFileError(f"{path}: content differs from the manifest's SHA-256 (modified after saving)")
        params = manifest["params"]
        features = None if manifest["features"] is None else _features_from_dict(manifest["features"])
        model = cls(features=features, **params)
        arrays = _read_arrays(directory / ARRAYS_NAME)
        if manifest.get("head", "xgboost") == "xgboost":  # format 1 had XGBoost heads only
            head = XGBClassifier(**manifest.get("classifier_params", {}))
            try:
                head.load_model(directory / CLASSIFIER_NAME)
            except Exception as exc:
                raise ModelFileError(f"{directory / CLASSIFIER_NAME}: not a readable XGBoost model ({exc})") from None
        else:
            try:
                settings = json.loads((directory / CLASSIFIER_NAME).read_text(encoding="utf-8"))
                head = KernelSVMHead.from_state(settings, {k[len(HEAD_ARRAY_PREFIX):]: v for k, v in arrays.items()
                                                           if k.startswith(HEAD_ARRAY_PREFIX)})
            except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
                raise ModelFileError(f"{directory / CLASSIFIER_NAME}: not a readable kernel-SVM head "
                                     f"({type(exc).__name__}: {exc})") from None
        model.classifier_ = head
        model.set_params(classifier=clone(head))  # refitting a loaded model uses the same head settings
        model.classes_ = np.asarray(manifest["classes"], dtype=np.dtype(manifest["classes_dtype"]))
        model.n_features_in_ = int(manifest["n_features_in"])
        if manifest["feature_names_from_table"]:
            model.feature_names_in_ = np.asarray(manifest["feature_names"], dtype=object)
        model.feature_groups_ = manifest["feature_groups"]
        model.temperature_ = manifest["temperature"]
        model.ood_threshold_ = manifest["ood_threshold"]
        model.training_summary_ = manifest["training"]
        model.metrics_ = manifest["metrics"]
        if features is not None:
            model.features_ = clone(features)._restore(manifest["feature_names"])
        else:
            model.features_ = None
        if model.ood_threshold_ is not None:
            missing = {"ood_reference", "ood_center", "ood_scale"} - set(arrays)
            if missing:
                raise ModelFileError(f"{directory / ARRAYS_NAME}: lacks the OOD arrays {sorted(missing)}")
            model.ood_reference_ = arrays["ood_reference"]
            model.ood_center_ = arrays["ood_center"]
            model.ood_scale_ = arrays["ood_scale"]
        return model


def _read_arrays(path: Path) -> dict[str, np.ndarray]:
    """Every array of a model's npz; :class:`ModelFileError` naming it if it is not plain arrays."""
    try:  # allow_pickle=False: an object array or a pickle is refused, never unpickled
        with np.load(path, allow_pickle=False) as arrays:
            return {name: arrays[name] for name in arrays.files}
    except (OSError, ValueError, KeyError) as exc:
        raise ModelFileError(f"{path}: not a plain-array npz ({type(exc).__name__}: "
                             f"{str(exc).splitlines()[0] if str(exc) else ''})") from None


def _temper(proba: np.ndarray, temperature: float) -> np.ndarray:
    """softmax(log p / T): the probabilities of logits divided by the temperature."""
    from scipy.special import softmax

    return softmax(np.log(np.clip(proba, 1e-12, 1.0)) / temperature, axis=1)


def _knn_mean_distance(query: np.ndarray, reference: np.ndarray, k: int,
                       exclude_groups: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """Mean Euclidean distance of each query row to its ``k`` nearest reference rows; with
    ``exclude_groups=(query_groups, reference_groups)`` rows of the same group are skipped."""
    from sklearn.metrics import pairwise_distances_chunked

    out = np.empty(len(query))
    start = 0
    for chunk in pairwise_distances_chunked(query, reference):
        rows = slice(start, start + len(chunk))
        if exclude_groups is not None:
            chunk = np.where(exclude_groups[0][rows, None] == exclude_groups[1][None, :], np.inf, chunk)
        kk = min(k, chunk.shape[1])
        nearest = np.partition(chunk, kk - 1, axis=1)[:, :kk]
        out[rows] = np.where(np.isinf(nearest).any(axis=1), np.nan, nearest.mean(axis=1))
        start += len(chunk)
    return out


def align_columns(table: pd.DataFrame, names: Sequence[str]) -> pd.DataFrame:
    """``table`` with exactly the columns ``names``, in that order.

    Reordered columns are put back in order; extra columns are dropped with a warning; missing
    columns raise :class:`FeatureMismatchError` listing them (a model cannot guess them)."""
    names = [str(n) for n in names]
    columns = [str(c) for c in table.columns]
    missing = [n for n in names if n not in set(columns)]
    if missing:
        raise FeatureMismatchError(f"feature table lacks {len(missing)} column(s) the model was trained on, "
                                   f"e.g. {missing[:5]}")
    extra = [c for c in columns if c not in set(names)]
    if extra:
        warnings.warn(f"feature table has {len(extra)} column(s) the model does not use, ignored: {extra[:5]}",
                      UserWarning, stacklevel=3)
    table = table.copy()
    table.columns = columns
    return table[names]


# ---- manifest helpers -------------------------------------------------------------------------


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _library_versions() -> dict[str, str]:
    import sklearn
    import xgboost

    return {"hybridtmd": __version__, "python": platform.python_version(), "numpy": np.__version__,
            "scikit-learn": sklearn.__version__, "xgboost": xgboost.__version__}


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _read_manifest(directory: Path) -> dict[str, Any]:
    path = directory / MANIFEST_NAME
    if not path.is_file():
        raise ModelFileError(f"{path}: missing; {directory} is not a hybridtmd model directory")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelFileError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != "hybridtmd-model":
        raise ModelFileError(f"{path}: not a hybridtmd model manifest")
    version = manifest.get("format_version")
    if not isinstance(version, int) or version > MODEL_FORMAT_VERSION:
        raise ModelFileError(f"{path}: model format {version!r} is newer than this hybridtmd ({__version__}) "
                             f"reads (format {MODEL_FORMAT_VERSION}); upgrade hybridtmd")
    required = {"params", "features", "classes", "classes_dtype", "n_features_in", "feature_names",
                "feature_names_from_table", "feature_groups", "temperature", "ood_threshold", "training",
                "metrics", "files"}
    if missing := required - set(manifest):
        raise ModelFileError(f"{path}: manifest lacks {sorted(missing)}")
    if manifest.get("head", "xgboost") not in ("xgboost", "kernel_svm"):
        raise ModelFileError(f"{path}: unknown head {manifest['head']!r} (expected 'xgboost' or 'kernel_svm')")
    if set(manifest["files"]) != {CLASSIFIER_NAME, ARRAYS_NAME}:
        raise ModelFileError(f"{path}: manifest lists unexpected files {sorted(manifest['files'])}")
    try:  # a hand-edited manifest is a ModelFileError naming it, not a TypeError from the constructor
        HybridClassifier(**manifest["params"])
        np.dtype(manifest["classes_dtype"])
        int(manifest["n_features_in"])
    except (TypeError, ValueError) as exc:
        raise ModelFileError(f"{path}: invalid settings ({type(exc).__name__}: {exc})") from None
    return manifest


_EMBEDDER_KEYS = ("backbone", "weights", "tta", "input_size", "clip_percentiles", "tile_size_px",
                  "tile_stride_px", "batch_size", "device", "cache_dir")


def _features_to_dict(features: HybridFeatures) -> dict[str, Any]:
    desc, emb = features.descriptors_, features.embedder_
    if emb is not None and emb.pca_components is not None:
        raise ModelFileError("saving a model whose embedder has pca_components is not supported "
                             "(the PCA would need pickle); use pca_components=None")
    return {
        "level": bool(features.level),
        "level_config": None if features.level_config is None else features.level_config.to_dict(),
        "descriptors": None if desc is None else {
            "families": None if desc.families is None else (
                desc.families if isinstance(desc.families, str) else list(desc.families)),
            "config": None if desc.config is None else desc.config.to_dict(),
            "level": bool(desc.level),
            "level_config": None if desc.level_config is None else desc.level_config.to_dict(),
        },
        "embedder": None if emb is None else {k: getattr(emb, k) for k in _EMBEDDER_KEYS},
    }


def _features_from_dict(values: dict[str, Any]) -> HybridFeatures:
    try:
        d, e = values["descriptors"], values["embedder"]
        descriptors = None if d is None else DescriptorExtractor(
            families=d["families"], config=None if d["config"] is None else DescriptorConfig.from_dict(d["config"]),
            level=d["level"],
            level_config=None if d["level_config"] is None else LevelConfig.from_dict(d["level_config"]))
        embedder = None if e is None else CNNEmbedder(**{**e, "clip_percentiles": tuple(e["clip_percentiles"])})
        level_config = None if values["level_config"] is None else LevelConfig.from_dict(values["level_config"])
        return HybridFeatures(descriptors=descriptors, embedder=embedder, level=values["level"],
                              level_config=level_config)
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelFileError(f"manifest: invalid feature settings ({type(exc).__name__}: {exc})") from None


def load_model(directory: str | Path) -> HybridClassifier:
    """Shorthand for :meth:`HybridClassifier.load`."""
    return HybridClassifier.load(directory)


__all__ = [
    "FeatureMismatchError",
    "HybridClassifier",
    "HybridFeatures",
    "ModelFileError",
    "align_columns",
    "default_head",
    "inner_grouped_splits",
    "feature_groups_from_columns",
    "feature_units",
    "KernelSVMHead",
    "is_image_sequence",
    "power_l2_normalise",
    "signed_sqrt",
    "latent_table",
    "resolve_features",
    "load_model",
]
