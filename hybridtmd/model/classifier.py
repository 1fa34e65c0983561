"""The hybrid classifier: a head on the feature table of AFM images (or on a given table).

:class:`HybridClassifier` - ``fit(X, y, groups=None)``, ``predict``, ``predict_proba``, ``score``,
``predict_frame``, ``predict_set``. ``X`` is either a sequence of :class:`~hybridtmd.io.AFMImage`
(features computed by ``features``; for multichannel ``features``, mappings channel -> AFMImage)
or a precomputed feature table (DataFrame or 2-D array, e.g. cached features or the paper's
embedding table). String labels in, string labels out. The head is chosen by inner CV
(:mod:`.selection`); a class of few images is also judged by a discriminant (:mod:`.few_shot`).
Options: balanced class weights, temperature scaling (:mod:`.calibration`), an
out-of-distribution score (:mod:`.ood`), conformal prediction sets (:mod:`.conformal`). Model
files hold no pickle (:meth:`HybridClassifier.save`, :mod:`.persistence`).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.preprocessing import LabelEncoder
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, column_or_1d

from .._utils.digests import array_digest
from .._utils.params import Check, Options, validate_params
from ..config import MODEL_OPTIONS, Config, ConfigError
from ..descriptors.release import saved_head, saved_head_selection, with_saved_families
from ..embeddings import CNNEmbedder
from ..errors import ModelFileError
from ..splits import inner_grouped_splits
from .calibration import apply_temperature, fit_temperature, log_probabilities
from .columns import (
    align_columns,
    checked_array,
    feature_groups_from_columns,
    is_image_sequence,
    latent_mask,
    row_names,
)
from .conformal import ConformalCalibration, ConformalMixin, calibration_split
from .continual import ClassAdding
from .discriminant import few_shot_mask
from .features import HybridFeatures, resolve_features, unlevelled_extractor
from .few_shot import fit_gate, load_gate
from .head_files import HEAD_KINDS, load_head, save_head
from .heads import default_head
from .links import fitted_links, links_from_arrays, links_to_arrays
from .ood import STATE_ARRAYS, NearestNeighborOOD, flag_scores
from .persistence import MANIFEST_NAME, read_arrays, read_manifest, write_arrays, write_manifest, write_model_directory
from .schema import (
    check_classes,
    check_features,
    check_head,
    check_ood,
    check_temperature,
    manifest_entries,
    model_card,
)
from .selection import HEAD_CHOICES, choose_head, fit_head, is_head_list, make_head
from .split_points import CENTRED_SINCE, centre_saved_splits
from .stack import StackHead
from .weights import class_sample_weights

MODEL_FORMAT = "hybridtmd-model"
#: Version of the model directory layout :meth:`HybridClassifier.save` writes; all older ones load.
#: 5: XGBoost splits midway between training values (:mod:`.split_points`; older: centred at load);
#: 4: a digest over the directory, head selection, stack heads, resolved descriptor families;
#: 3: ``level_images`` (``level`` before); 2: "head" entry, kernel-SVM heads; 1: XGBoost only.
MODEL_FORMAT_VERSION = CENTRED_SINCE
#: the first format whose manifest carries a digest over the whole model directory
DIGEST_SINCE = 4
CLASSIFIER_NAME = "classifier.json"
ARRAYS_NAME = "arrays.npz"
OOD_ARRAY_PREFIX = "ood_"
#: the constructor parameters a manifest stores (features are stored as their settings, the head
#: as its files)
SAVED_PARAMS = ("class_weight", "calibration", "calibration_folds", "selection_folds", "few_shot", "ood_neighbors",
                "ood_quantile", "conformal", "random_state", "n_jobs")
MANIFEST_ENTRIES = ("params", "features", "classes", "classes_dtype", "n_features_in", "feature_names",
                    "feature_names_from_table", "feature_groups", "temperature", "ood_threshold", "training",
                    "metrics", "files")


class HybridClassifier(ConformalMixin, ClassAdding, ClassifierMixin, BaseEstimator):
    """Classify AFM images (or their feature table): features, a chosen head, calibrated outputs.

    Parameters
    ----------
    features : HybridFeatures, "default" or None
        How images become a table; ``"default"`` is :class:`HybridFeatures` ``()``. Unused when
        ``fit`` receives a table. ``None``: the model accepts tables only.
    classifier : "auto", "xgboost", "svm", "stack", "discriminant", estimator, list of those, or None
        The head. ``"auto"`` (default): the best of XGBoost, the kernel SVM, (for tables with
        embedding columns) the stack and the discriminant, by mean inner accuracy (balanced
        accuracy for imbalanced classes) over ``selection_folds`` folds of the training data
        grouped by sample (:mod:`.selection`; ``head_selection_`` records the choice and the
        scores). A list: the same choice among the heads it names or gives.
        ``None``/``"xgboost"``: :func:`default_head` (XGBoost; exact TreeSHAP, saved as JSON). Any
        scikit-learn classifier works for fit/predict (saving needs one of the named heads).
    few_shot : "discriminant" or None
        Classes with fewer than a tenth of the largest class's images are also judged by a discriminant
        head; where the two experts' product names one, it is predicted (:mod:`.few_shot`). None: head alone.
    class_weight : "balanced", dict or None
        ``balanced`` weights each image by ``n / (n_classes * n_class)`` (multiplied with any
        ``sample_weight``), so rare materials count as much as common ones; a dict: weight per label.
    calibration : "temperature" or None
        Temperature scaling (Guo et al., ICML 2017): one scalar ``T`` dividing the log-probabilities,
        fitted by log-loss on out-of-fold predictions of ``calibration_folds`` folds grouped by
        sample. Changes confidence, never the predicted class.
    calibration_folds, selection_folds : int
        Folds (at least 2) for the out-of-fold calibration predictions; inner grouped folds that
        choose the head (``"auto"`` or a list): 3 chose as 2 did on the paper's embeddings at
        1.7x the cost (docs/benchmarks.md, "Which head auto picks").
    ood_neighbors : int or None
        Out-of-distribution score = mean Euclidean distance to the ``ood_neighbors`` nearest
        training images in the standardised table (each block - physical, latent - scaled to equal
        weight; missing values at the training median). ``None`` switches it off.
    ood_quantile : float
        The OOD threshold is this quantile of the training images' own scores, each computed
        against training images of *other* samples (so a new sample of a known material scores
        like the training ones, and a new material scores above).
    conformal : "marginal", "class" or None
        Prediction sets (:mod:`.conformal`, :meth:`predict_set`, :meth:`predict_sample_sets`): a quarter
        of the samples calibrates them, the head is fitted on the rest; ``"class"``: per-class coverage.
    random_state : int or None
        Seed of the default head and of the calibration folds.
    n_jobs : int or None
        Threads of the default head (None: 1).

    Attributes
    ----------
    classes_ : ndarray  the labels, as given
    classifier_ : the fitted head (trained on encoded labels 0..n_classes-1)
    features_ : HybridFeatures or None  fitted on the training images (None for table input)
    n_features_in_, feature_names_in_ : the table columns (``feature_names_in_`` only for a
        DataFrame with string column names)
    feature_names_ : list of str  the column names the model sees: ``feature_names_in_``, or
        ``x0, x1...`` for an array; the columns of :meth:`transform_features`
    feature_groups_ : dict  group → columns (see :func:`feature_groups_from_columns`)
    head_selection_ : dict  the head chosen (``choice``) and, when chosen by inner CV, each
        candidate's inner ``scores``, ``mean``, ``std`` and ``fit_seconds`` (:mod:`.selection`)
    head_feature_names_, head_feature_groups_ : the columns the head's trees see and their groups:
        ``feature_names_``, plus ``latent_svm__p_<class>`` (group ``latent``) for the stack head
    temperature_ : float or None;  conformal_ : the sets' ConformalCalibration (:mod:`.conformal`) or None
    ood_ : NearestNeighborOOD or None  the fitted out-of-distribution score
    ood_threshold_ : float or None  its threshold
    training_summary_ : dict  images, samples, class counts, data hash
    latent_links_ : DataFrame or None  each latent column's strongest physical correlate on the
        training rows (:func:`~hybridtmd.model.links.latent_correlates`; None without both kinds)
    """

    _parameter_constraints: dict = {  # noqa: RUF012 (scikit-learn's convention: a class attribute)
        **MODEL_OPTIONS,  # the constraints a config's [model] table is checked against
        "features": [HybridFeatures, Options(("default",)), None],
        "classifier": [Options(HEAD_CHOICES), None, Check(lambda c: hasattr(c, "fit"), "an estimator"),
                       Check(is_head_list, "a non-empty list of head names or estimators")],
    }

    def __init__(
        self,
        features: HybridFeatures | str | None = "default",
        classifier: Any = "auto",
        class_weight: str | Mapping[Any, float] | None = "balanced",
        calibration: str | None = None,
        calibration_folds: int = 5,
        selection_folds: int = 2,
        few_shot: str | None = "discriminant",
        ood_neighbors: int | None = 5,
        ood_quantile: float = 0.99,
        conformal: str | None = None,
        random_state: int | None = 0,
        n_jobs: int | None = None,
    ):
        self.features = features
        self.classifier = classifier
        self.class_weight = class_weight
        self.calibration = calibration
        self.calibration_folds = calibration_folds
        self.selection_folds = selection_folds
        self.few_shot = few_shot
        self.ood_neighbors = ood_neighbors
        self.ood_quantile = ood_quantile
        self.conformal = conformal
        self.random_state = random_state
        self.n_jobs = n_jobs

    @classmethod
    def from_config(cls, config: Config) -> HybridClassifier:
        """The classifier a :class:`~hybridtmd.config.Config` describes (its ``[level]``,
        ``[descriptors]``, ``[embeddings]`` and ``[model]`` sections, checked when the config was
        read); an embedder whose backbone or weights cannot be found is a
        :class:`~hybridtmd.config.ConfigError` naming the file."""
        desc, emb, settings = config.descriptors, config.embeddings, config.model
        descriptors = unlevelled_extractor(desc.families, desc.config) if desc.enabled else None
        embedder = CNNEmbedder(**emb.options) if emb.enabled else None
        channels = desc.channels if desc.enabled else None
        model = cls(features=HybridFeatures(descriptors=descriptors, embedder=embedder, level_config=config.level,
                                            channels=None if channels is None else dict(channels)), **settings.options)
        if settings.xgboost is not None:
            model.set_params(classifier=default_head(model.random_state, model.n_jobs).set_params(**settings.xgboost))
        if embedder is not None:
            try:
                embedder.get_backbone()  # an unknown backbone, bad option or missing weights fail now
            except (TypeError, ValueError) as exc:
                raise ConfigError(f"{config.source}: [embeddings] {exc}") from None
        return model

    # ---- fitting ------------------------------------------------------------------------------

    def fit(self, X: Any, y: Any, groups: Any = None, sample_weight: Any = None) -> HybridClassifier:
        """Fit on images or a feature table.

        ``groups`` (sample ids, one per image) make the calibration folds and the OOD reference
        respect samples; without them every image is its own sample.
        """
        validate_params(self, self._parameter_constraints)
        table = self._fit_features(X)
        X_arr = checked_array(self, table, lambda n: row_names(X, table, n), reset=True)
        y_enc = self._encode_labels(y, X_arr.shape[0])
        groups = np.arange(len(y_enc)) if groups is None else np.asarray(groups)
        if len(groups) != len(y_enc):
            raise ValueError(f"groups has {len(groups)} entries for {len(y_enc)} images")
        weights = class_sample_weights(self.class_weight, self.classes_, y_enc, sample_weight, len(X_arr))
        self.feature_names_ = [str(c) for c in getattr(self, "feature_names_in_",
                                                       [f"x{i}" for i in range(X_arr.shape[1])])]
        self.feature_groups_ = feature_groups_from_columns(self.feature_names_)

        fit, held = calibration_split(y_enc, groups, self.conformal, self.random_state)  # held: conformal's
        X_fit, y_fit, w_fit, g_fit = X_arr[fit], y_enc[fit], weights[fit], groups[fit]
        self.head_selection_ = self._select_head(X_fit, y_fit, w_fit, g_fit)
        self.classifier_ = self._fit_head(X_fit, y_fit, w_fit, g_fit)
        self.few_shot_ = fit_gate(self, X_fit, y_fit, w_fit, g_fit)
        self._set_head_features()
        self.temperature_ = self._fit_temperature(X_fit, y_fit, g_fit, w_fit) if self.calibration else None
        self.conformal_ = None if held is None else ConformalCalibration.from_probabilities(
            self.conformal, self._proba(X_arr[held]), y_enc[held], groups[held], self.classes_)
        self.ood_ = None if self.ood_neighbors is None else NearestNeighborOOD(
            self.ood_neighbors, self.ood_quantile).fit(X_arr, groups, block=latent_mask(self.feature_names_))
        self.ood_threshold_ = None if self.ood_ is None else self.ood_.threshold_
        self.latent_links_ = fitted_links(X_arr, self.feature_names_)
        self.training_summary_ = {
            "n_images": int(len(y_enc)), "n_samples": int(len(np.unique(groups))),
            "class_counts": {str(c): int(n) for c, n in zip(self.classes_, np.bincount(y_enc), strict=True)},
            "data_sha256": array_digest(np.concatenate([np.nan_to_num(X_arr, nan=-1e300), y_enc[:, None]], axis=1)),
        }
        return self

    def _encode_labels(self, y: Any, n_rows: int) -> np.ndarray:
        """Set ``classes_`` and return ``y`` encoded as 0..n_classes-1."""
        check_classification_targets(y)
        y = column_or_1d(y, warn=True)
        if len(y) != n_rows:
            raise ValueError(f"y has {len(y)} labels for {n_rows} rows of X")
        encoder = LabelEncoder().fit(y)
        self.classes_ = encoder.classes_
        if len(self.classes_) < 2:
            raise ValueError(f"need at least 2 classes to fit a classifier, got 1 class: {self.classes_[0]!r}")
        return encoder.transform(y)

    def _fit_features(self, X: Any) -> Any:
        if not is_image_sequence(X):
            self.features_ = None
            return X
        if self.features is None:
            raise TypeError("this HybridClassifier has features=None: pass a feature table, not images")
        features = resolve_features(self.features)
        table = features.fit_transform(X)  # checks the images (or, with channels, the channel maps)
        self.features_ = features
        return table

    def _select_head(self, X: np.ndarray, y_enc: np.ndarray, weights: np.ndarray, groups: np.ndarray) -> dict:
        few = None if self.few_shot is None else few_shot_mask(np.bincount(y_enc))  # the gate decides those
        return choose_head(self.classifier, self.feature_names_, X, y_enc, weights, groups, self.selection_folds,
                           self.random_state, self.n_jobs, few)

    def _fit_head(self, X: np.ndarray, y_enc: np.ndarray, weights: np.ndarray, groups: np.ndarray,
                  stacklevel: int = 3) -> Any:
        """A new head fitted on the rows; ``stacklevel`` of its warning points at the user's call."""
        head = make_head(self.classifier, self.head_selection_, self.feature_names_, self.random_state, self.n_jobs)
        return fit_head(head, X, y_enc, weights, groups, stacklevel=stacklevel + 1)

    def _set_head_features(self) -> None:
        """``head_feature_names_`` / ``head_feature_groups_``: the stack's trees also see its SVM
        probabilities, named ``latent_svm__p_<class>`` and grouped with the embedding."""
        head = self.classifier_
        self.head_feature_names_ = (head.get_feature_names_out(self.feature_names_, self.classes_)
                                    if isinstance(head, StackHead) else list(self.feature_names_))
        self.head_feature_groups_ = feature_groups_from_columns(self.head_feature_names_)

    def _fit_temperature(self, X: np.ndarray, y_enc: np.ndarray, groups: np.ndarray, weights: np.ndarray) -> float:
        """The temperature of heads fitted on grouped calibration folds, from their out-of-fold
        probabilities (:func:`~hybridtmd.model.calibration.fit_temperature`)."""
        splits = inner_grouped_splits(y_enc, groups, self.calibration_folds, self.random_state)
        if not splits:
            warnings.warn("too few images per class or samples for calibration folds that each train on every "
                          "class: temperature left at 1", UserWarning, stacklevel=3)
            return 1.0
        log_p = np.zeros((len(y_enc), len(self.classes_)))
        for train, test in splits:
            head = self._fit_head(X[train], y_enc[train], weights[train], groups[train], stacklevel=4)
            log_p[test] = log_probabilities(head.predict_proba(X[test]))
        seen = np.concatenate([test for _, test in splits])
        return fit_temperature(log_p[seen], y_enc[seen])

    # ---- prediction ---------------------------------------------------------------------------

    def _table_array(self, X: Any) -> np.ndarray:
        """The checked float array of ``X`` (images → features; a DataFrame aligned by name).
        Called by the public methods only, so a warning's ``stacklevel`` of 3 is the user's call."""
        check_is_fitted(self, "classifier_")
        table = X
        if is_image_sequence(X):
            if self.features_ is None:
                raise TypeError("this model was fitted on a feature table: pass a table with the same columns")
            table = self.features_.transform(X)
        elif isinstance(X, pd.DataFrame) and hasattr(self, "feature_names_in_"):
            table = align_columns(X, self.feature_names_in_, stacklevel=3)
        return checked_array(self, table, lambda n: row_names(X, table, n), reset=False, columns=self.feature_names_)

    def transform_features(self, X: Any) -> pd.DataFrame:
        """The feature table the model sees for ``X`` (images or a table), columns ``feature_names_``."""
        return pd.DataFrame(self._table_array(X), columns=self.feature_names_)

    def ood_score(self, X: Any) -> np.ndarray:
        """Mean distance to the nearest training images (see ``ood_neighbors``); larger = stranger."""
        check_is_fitted(self, "classifier_")
        if self.ood_ is None:
            raise ValueError("this model was fitted with ood_neighbors=None")
        return self.ood_.score(self._table_array(X))

    def is_out_of_distribution(self, X: Any) -> np.ndarray:
        """True where :meth:`ood_score` exceeds ``ood_threshold_`` or is NaN/inf: an image unlike
        every training sample (an unknown material, a broken scan, a row of missing values), whose
        predicted label should not be trusted."""
        return flag_scores(self.ood_score(X), self.ood_threshold_)

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities, columns in the order of ``classes_`` (temperature-scaled when
        ``calibration='temperature'``)."""
        return self._proba(self._table_array(X))

    def _proba(self, table: np.ndarray) -> np.ndarray:
        return self._decide(table)[0]

    def _decide(self, table: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Probabilities and encoded labels: the head's (temperature-scaled), then the few-shot gate's."""
        proba = self.classifier_.predict_proba(table)
        if self.temperature_ is not None and self.temperature_ != 1.0:
            proba = apply_temperature(proba, self.temperature_)
        labels = np.asarray(self.classifier_.predict(table), dtype=int)
        gate = getattr(self, "few_shot_", None)
        return (proba, labels) if gate is None else gate.apply(table, proba, labels)

    def predict(self, X: Any) -> np.ndarray:
        """The class of each image, as given in ``fit`` (the head's decision - for XGBoost the most
        probable class; calibration never changes it - or the few-shot gate's)."""
        return self._labels(self._table_array(X))  # checks fitted first

    def _labels(self, table: np.ndarray) -> np.ndarray:
        return self.classes_[self._decide(table)[1]]

    def predict_frame(self, X: Any, index: Sequence[str] | None = None) -> pd.DataFrame:
        """A table per image: ``label``, ``confidence``, ``p_<class>`` for every class and, when
        fitted with an OOD reference, ``ood_score`` and ``out_of_distribution``; its
        ``attrs["model_card"]`` is :meth:`model_card`."""
        table = self._table_array(X)
        proba, labels = self._decide(table)
        frame = pd.DataFrame({"label": self.classes_[labels], "confidence": proba.max(axis=1)}, index=index)
        for j, c in enumerate(self.classes_):
            frame[f"p_{c}"] = proba[:, j]
        if self.ood_ is not None:
            score = self.ood_.score(table)
            frame["ood_score"] = score
            frame["out_of_distribution"] = flag_scores(score, self.ood_threshold_)
        frame.attrs["model_card"] = self.model_card()
        return frame

    def model_card(self) -> dict[str, Any]:
        """What a prediction came from: the head and how it was chosen (``head_selection_``: choice,
        inner scores with spread, fit seconds), classes, features, training data, calibration and
        OOD threshold. :meth:`predict_frame` attaches it as ``frame.attrs["model_card"]``."""
        check_is_fitted(self, "classifier_")
        return model_card(self)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True
        return tags

    # ---- persistence --------------------------------------------------------------------------

    def save(self, directory: str | Path, metrics: Mapping[str, Any] | None = None,
             key: str | bytes | None = None) -> Path:
        """Write the fitted model to ``directory``: ``classifier.json`` (XGBoost's own JSON, or the
        SVM or stack head's settings), ``arrays.npz`` (OOD reference, latent links, SVM arrays) and
        ``manifest.json`` (settings, classes, feature names and groups, head selection, library
        versions, training-data hash, ``metrics``, SHA-256 of the other files, one digest over it
        all - HMAC-signed with ``key`` or ``$HYBRIDTMD_MODEL_KEY`` when given; :mod:`.persistence`).
        No pickle: loading runs no code. The model is written whole to a temporary sibling and
        swapped in, so a failed save leaves the previous model in ``directory`` intact; an
        existing non-model directory is never replaced (:class:`ModelFileError`)."""
        check_is_fitted(self, "classifier_")

        def write(target: Path) -> None:
            head_kind, arrays = save_head(self.classifier_, target / CLASSIFIER_NAME)
            if self.ood_ is not None:
                arrays |= {OOD_ARRAY_PREFIX + k: v for k, v in self.ood_.state().items()}
            arrays |= links_to_arrays(getattr(self, "latent_links_", None))
            arrays |= {} if self.conformal_ is None else self.conformal_.to_arrays()
            gate = (None, {}) if getattr(self, "few_shot_", None) is None else self.few_shot_.to_state()
            write_arrays(target / ARRAYS_NAME, arrays | gate[1])
            entries = manifest_entries(self, head_kind, metrics, SAVED_PARAMS) | {"few_shot": gate[0]} | (
                {} if self.conformal_ is None else {"conformal": self.conformal_.summary()})
            write_manifest(target, MODEL_FORMAT, MODEL_FORMAT_VERSION, entries,
                           files=(CLASSIFIER_NAME, ARRAYS_NAME), libraries=("scikit-learn", "xgboost"), key=key)

        return write_model_directory(directory, write)

    @classmethod
    def load(cls, directory: str | Path, key: str | bytes | None = None) -> HybridClassifier:
        """Read a model written by :meth:`save` (any format up to :data:`MODEL_FORMAT_VERSION`;
        ``key`` or ``$HYBRIDTMD_MODEL_KEY`` for a signed one). Raises :class:`ModelFileError`
        naming the file when a file is missing or was modified after saving, the manifest's digest
        or schema (:mod:`.schema`) fails, or the format is newer."""
        directory = Path(directory)
        path = directory / MANIFEST_NAME
        manifest = read_manifest(directory, MODEL_FORMAT, MODEL_FORMAT_VERSION, MANIFEST_ENTRIES,
                                 (CLASSIFIER_NAME, ARRAYS_NAME), key=key, digest_since=DIGEST_SINCE)
        model = cls._unfitted_from_manifest(manifest, path)
        arrays = read_arrays(directory / ARRAYS_NAME)
        head = load_head(saved_head(manifest), directory / CLASSIFIER_NAME, arrays,
                         manifest.get("classifier_params", {}))
        check_head(path, head, len(manifest["classes"]), manifest["n_features_in"])
        check_ood(path, manifest["ood_threshold"], arrays.get(OOD_ARRAY_PREFIX + "reference"),
                  manifest["n_features_in"])
        if manifest["format_version"] < CENTRED_SINCE:
            centre_saved_splits(head, arrays, OOD_ARRAY_PREFIX, directory)
        if "classifier" not in manifest["params"]:  # a given estimator: refitting uses the same head settings
            model.set_params(classifier=clone(head))
        model._restore_fitted(manifest, head, arrays, directory / ARRAYS_NAME)
        return model

    @classmethod
    def _unfitted_from_manifest(cls, manifest: dict[str, Any], path: Path) -> HybridClassifier:
        """The model with the manifest's parameters and features; a hand-edited manifest is a
        :class:`ModelFileError` naming it, not a TypeError from the constructor."""
        head = saved_head(manifest)
        if head not in HEAD_KINDS:
            raise ModelFileError(f"{path}: unknown head {head!r} (expected one of {', '.join(HEAD_KINDS)})")
        try:
            model = cls(**manifest["params"])
            validate_params(model, cls._parameter_constraints)
        except (TypeError, ValueError) as exc:
            raise ModelFileError(f"{path}: invalid settings ({type(exc).__name__}: {exc})") from None
        check_classes(path, manifest)
        check_features(path, manifest)
        check_temperature(path, manifest["temperature"])
        features = with_saved_families(manifest["features"])
        return model.set_params(features=None if features is None else HybridFeatures.from_settings(features))

    def _restore_fitted(self, manifest: dict[str, Any], head: Any, arrays: dict[str, np.ndarray],
                        arrays_path: Path) -> None:
        """Set the fitted attributes a manifest, its head and its arrays describe."""
        self.classifier_ = head
        self.classes_ = np.asarray(manifest["classes"], dtype=np.dtype(manifest["classes_dtype"]))
        self.n_features_in_ = int(manifest["n_features_in"])
        self.feature_names_ = [str(n) for n in manifest["feature_names"]]
        if manifest["feature_names_from_table"]:
            self.feature_names_in_ = np.asarray(manifest["feature_names"], dtype=object)
        self.feature_groups_ = manifest["feature_groups"]
        self.temperature_ = manifest["temperature"]
        self.ood_threshold_ = manifest["ood_threshold"]
        self.training_summary_ = manifest["training"]
        self.metrics_ = manifest["metrics"]
        self.head_selection_ = saved_head_selection(manifest)
        self._set_head_features()
        self.latent_links_ = links_from_arrays(manifest.get("latent_links"), arrays, self.feature_names_,
                                               self.training_summary_, arrays_path)
        self.features_ = None if self.features is None else clone(self.features).restore_fitted(
            self.feature_names_, (manifest.get("features") or {}).get("channel_units"))
        self.conformal_ = ConformalCalibration.from_saved(manifest.get("conformal"), arrays, self.conformal,
                                                          len(self.classes_), arrays_path)
        self.few_shot_ = load_gate(manifest.get("few_shot"), arrays, arrays_path)
        self.ood_ = None
        if self.ood_threshold_ is not None:
            missing = {OOD_ARRAY_PREFIX + name for name in STATE_ARRAYS} - set(arrays)
            if missing:
                raise ModelFileError(f"{arrays_path}: lacks the OOD arrays {sorted(missing)}")
            self.ood_ = NearestNeighborOOD.from_state(
                self.ood_threshold_, {name: arrays[OOD_ARRAY_PREFIX + name] for name in STATE_ARRAYS},
                n_neighbors=self.ood_neighbors, quantile=self.ood_quantile)


def load_model(directory: str | Path) -> HybridClassifier:
    """Shorthand for :meth:`HybridClassifier.load`."""
    return HybridClassifier.load(directory)
