"""A set of explained predictions, held out or not: what the report is written from.

:func:`explain_held_out` is the honest one: out-of-fold models (``StratifiedGroupKFold`` by
sample, so no sample is ever both trained on and explained) predict and explain the images they
never saw; each image's nearest training examples come from its own fold's training images.
:func:`explain_set` explains a fitted model on given images (new files, or its own training
images, which the report then says).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import clone

from .._utils.progress import report_fits
from ..io.image import check_channel_maps, height_images
from ..model import PHYS_PREFIX, HybridClassifier, latent_correlates
from ..model.columns import is_image_sequence
from ..model.conformal import DEFAULT_ALPHA, ConformalError, check_alpha
from ..model.features import resolve_features
from ..splits import check_fold_feasibility, grouped_splits
from .descriptor_shapley import descriptor_shapley, screen_descriptors
from .evidence import nearest_examples
from .shapley import background_table, group_explanation, has_tree_head


@dataclass
class ExplainedSet:
    """Predictions of a set of images with their explanations.

    Attributes
    ----------
    names, labels, samples : per image (``labels``/``samples`` None when unknown)
    table : DataFrame  the feature table the models saw
    classes : list of str
    proba : ndarray (n, n_classes)
    groups : shap.Explanation (n, n_groups, n_outputs)  group attribution (exact sums of TreeSHAP
        or exact group Shapley), each image by the model that predicted it
    features : shap.Explanation or None  per-feature TreeSHAP (tree heads), for the drill-down
    descriptor_values : shap.Explanation or None  heads without trees: exact Shapley values of the
        probabilities with the top screened descriptors as players
        (:func:`~hybridtmd.explanation.descriptor_shapley.descriptor_shapley`), for the sentences
    method, unit : how ``groups`` was computed and what its values are in
    evidence : DataFrame  :func:`~hybridtmd.explanation.evidence.nearest_examples`; ``train_index``
        indexes ``train_images``
    correlates : DataFrame  the latent-physical links (:func:`~hybridtmd.model.latent_correlates`)
        every figure names latent columns with: the model's stored ``latent_links_`` (computed on
        its training rows at fit); for held-out sets, the links of the whole feature table, the
        union of the folds' training tables (the links use no label, so no image's label reaches
        its own explanation), one table so a dimension reads the same on every figure
    held_out : bool  True when every image was predicted by a model that never saw its sample
    fold : ndarray or None  the outer fold of each image
    features_model : the fitted HybridFeatures (for latent maps), or None for table input
    train_images, train_labels, train_samples : the images the evidence points into
    description : str  the protocol in one sentence, for the report
    group_by : str  how ``groups`` groups the columns (:func:`~hybridtmd.explanation.groups.regroup`)
    out_of_distribution : ndarray of bool or None  per image, whether the model that predicted it
        flags it out of distribution (unlike every training sample); None without an OOD reference
    in_training : ndarray of bool or None  per image, whether it is one of the training rows of the
        model that explained it (an in-sample prediction); None when the model keeps no rows
    fold_screening : DataFrame or None  held-out sets of heads without trees: the screening score
        (:func:`~hybridtmd.explanation.descriptor_shapley.screen_descriptors`, per class) of every
        physical descriptor by each fold's model on its held-out images (``fold``, ``class``,
        ``descriptor``, ``score``), for the stability of the drivers
    sets : ndarray of bool (n, n_classes) or None  per image, its conformal prediction set at
        ``set_alpha`` (models fitted with ``conformal``; each image by the calibration of the model
        that predicted it); None without one, or when it cannot be made (``set_note`` says why)
    set_alpha : float or None;  set_note : str  why there are no sets ("" when there are, or no conformal)
    """

    names: list[str]
    labels: np.ndarray | None
    samples: np.ndarray | None
    table: pd.DataFrame
    classes: list[str]
    proba: np.ndarray
    groups: Any
    features: Any
    method: str
    unit: str
    evidence: pd.DataFrame
    correlates: pd.DataFrame
    held_out: bool
    fold: np.ndarray | None = None
    features_model: Any = None
    train_images: list = field(default_factory=list)
    train_labels: np.ndarray | None = None
    train_samples: np.ndarray | None = None
    description: str = ""
    group_by: str = "auto"
    descriptor_values: Any = None
    out_of_distribution: np.ndarray | None = None
    in_training: np.ndarray | None = None
    fold_screening: pd.DataFrame | None = None
    sets: np.ndarray | None = None
    set_alpha: float | None = None
    set_note: str = ""

    @property
    def predicted(self) -> np.ndarray:
        """Predicted class index per image (the most probable class)."""
        return self.proba.argmax(axis=1)

    @property
    def predicted_labels(self) -> np.ndarray:
        return np.asarray(self.classes)[self.predicted]


def conformal_sets(models: Sequence[HybridClassifier], rows: Sequence[np.ndarray], proba: np.ndarray,
                   alpha: float) -> tuple[np.ndarray | None, str]:
    """Each image's prediction set at ``alpha`` by the calibration of the model that predicted it
    (``models[i]`` predicted ``rows[i]``), and "" ; or None and why there are none: a model
    without conformal calibration ("", nothing to say) or one with too few calibration points
    for ``alpha`` (the :class:`~hybridtmd.model.conformal.ConformalError`, naming its fold)."""
    if any(getattr(m, "conformal_", None) is None for m in models):
        return None, ""
    sets = np.zeros(proba.shape, dtype=bool)
    for k, (model, where) in enumerate(zip(models, rows, strict=True)):
        try:
            sets[where] = model.conformal_.image_sets(proba[where], alpha, model.classes_)
        except ConformalError as exc:
            return None, f"{f'fold {k} model: ' if len(models) > 1 else ''}{exc}"
    return sets, ""


def _concat_explanations(parts: list[Any], order: np.ndarray) -> Any:
    """Explanations of the folds' test rows, in the order of the images (``order`` = the image
    of each concatenated row)."""
    import shap

    if parts[0] is None:
        return None
    inverse = np.argsort(order)
    data = [p.data for p in parts]
    return shap.Explanation(values=np.concatenate([p.values for p in parts])[inverse],
                            base_values=np.concatenate([p.base_values for p in parts])[inverse],
                            data=None if data[0] is None else np.concatenate(data)[inverse],
                            feature_names=list(parts[0].feature_names), output_names=parts[0].output_names)


def _fit_fold(head: HybridClassifier, table: pd.DataFrame, labels: np.ndarray, samples: np.ndarray, split: Any,
              classes: list[str], n_splits: int) -> HybridClassifier:
    """``head`` fitted on one fold's training rows; ValueError when they lack a class."""
    fitted = clone(head).fit(table.iloc[split.train], labels[split.train], groups=samples[split.train])
    report_fits()  # one step of the held-out progress display: 2 per fold, its fit and its explanation
    if [str(c) for c in fitted.classes_] != classes:
        raise ValueError(f"fold {split.fold} of {n_splits} lacks a class in its training images: use fewer folds")
    return fitted


def _common_method(fitted: Sequence[HybridClassifier]) -> str:
    """TreeSHAP when every fold's head has trees over the same columns, else group Shapley for
    all: one method and one unit (margin or probability) for the whole held-out set."""
    names = {tuple(getattr(f, "head_feature_names_", f.feature_names_)) for f in fitted}
    return "auto" if all(has_tree_head(f) for f in fitted) and len(names) == 1 else "group_shapley"


def _held_out_inputs(model: HybridClassifier, images: Sequence[Any] | None, table: pd.DataFrame | None,
                     names: Sequence[str] | None) -> tuple[Any, pd.DataFrame, list[str], list]:
    """(fitted per-image features or None, the feature table, image names, height images) of a
    held-out set: images (the table computed once, or checked against them), or for a model
    without features the ``table`` alone."""
    features = resolve_features(model.features)
    if features is None:
        if table is None:
            raise ValueError("a model without features explains a feature table: pass table=")
        shown: list = []
        names = list(names) if names is not None else [str(i) for i in table.index]
    elif not features.is_per_image():
        raise ValueError("held-out explanations compute the feature table once: the model needs per-image features "
                         "(images in, no embedder PCA)")
    else:
        if table is None:
            table = features.fit_transform(images)
        else:
            features.fit(images)  # per-image features: fitting reads no image
            if len(table) != len(images):
                raise ValueError(f"table has {len(table)} rows for {len(images)} images")
        shown = height_images(check_channel_maps(images))
        names = list(names) if names is not None else [im.name for im in shown]
    if len(names) != len(table):
        raise ValueError(f"{len(names)} names for {len(table)} rows")
    return features, table, names, shown


def explain_held_out(model: HybridClassifier, images: Sequence[Any] | None, labels: Sequence[Any],
                     groups: Sequence[Any], *, n_splits: int = 5, random_state: int = 0, max_background: int = 64,
                     n_examples: int = 3, table: pd.DataFrame | None = None, group_by: str = "auto",
                     top_descriptors: int = 5, names: Sequence[str] | None = None, alpha: float = DEFAULT_ALPHA
                     ) -> ExplainedSet:
    """Out-of-fold predictions and explanations of ``images`` (module docstring).

    The feature table is computed once (the features learn nothing from the images, which is
    checked; pass ``table`` when it is computed already: the features of ``images``, in order,
    as ``model.features`` computes them), then ``model`` (unfitted, its settings) is cloned and
    fitted on the training images of each of ``n_splits`` folds grouped by sample, and predicts
    and explains its test images. A model without features (``features=None``) explains the
    rows of ``table`` (``images`` None; ``names`` name the rows). Group Shapley's background is
    the fold's training table (``max_background`` rows). ``group_by``: how columns are grouped
    (:func:`~hybridtmd.explanation.groups.regroup`; multichannel: ``"channel"``, ``"family"``).
    Heads without trees also get per-descriptor Shapley values
    (:func:`~hybridtmd.explanation.descriptor_shapley`, its default 32 background rows) of
    the ``top_descriptors`` physical descriptors screened over all folds' test images (one list
    for every fold, so the values line up; 0: none). Each image's out-of-distribution flag is
    its fold model's, and so is its prediction set at ``alpha`` (models with ``conformal``).
    """
    alpha = check_alpha(alpha)
    labels, samples = np.asarray([str(v) for v in labels]), np.asarray(groups)
    # before any feature is computed: every training side needs each class, so two samples of it
    check_fold_feasibility(labels, samples, n_splits, min_samples=2)
    features, table, names, shown = _held_out_inputs(model, images, table, names)
    head = clone(model).set_params(features=None)
    splits = grouped_splits(labels, samples, _splitter(n_splits, random_state))
    classes = sorted(set(labels.tolist()))
    proba = np.zeros((len(labels), len(classes)))
    fold = np.zeros(len(labels), dtype=int)
    flagged = np.zeros(len(labels), dtype=bool)
    grouped, per_feature, per_descriptor, evidence, order = [], [], [], [], []
    fitted_folds = [_fit_fold(head, table, labels, samples, split, classes, n_splits) for split in splits]
    method = _common_method(fitted_folds)
    screening = (_fold_screening(fitted_folds, splits, table, random_state)
                 if method == "group_shapley" and top_descriptors else None)
    chosen = [] if screening is None else _screened_descriptors(screening, top_descriptors)
    for split, fitted in zip(splits, fitted_folds, strict=True):
        train, test = split.train, split.test
        proba[test] = fitted.predict_proba(table.iloc[test])
        fold[test] = split.fold
        if getattr(fitted, "ood_", None) is not None:
            flagged[test] = fitted.is_out_of_distribution(table.iloc[test])
        explained = group_explanation(fitted, table.iloc[test], background=table.iloc[train],
                                      max_background=max_background, random_state=random_state, method=method,
                                      group_by=group_by)
        grouped.append(explained.groups)
        per_feature.append(explained.features)
        per_descriptor.append(descriptor_shapley(fitted, table.iloc[test], descriptors=chosen,
                                                 background=table.iloc[train], random_state=random_state)
                              if chosen else None)
        found = nearest_examples(fitted, table.iloc[test], table.iloc[train], labels[train], samples[train],
                                 proba[test], k=n_examples)
        found["image"] = test[found["image"].to_numpy()]
        found["train_index"] = train[found["train_index"].to_numpy()]
        evidence.append(found)
        order.append(test)
        report_fits()
    order = np.concatenate(order)
    has_ood = all(getattr(f, "ood_", None) is not None for f in fitted_folds)
    sets, set_note = conformal_sets(fitted_folds, [split.test for split in splits], proba, alpha)
    return ExplainedSet(
        names=names, labels=labels, samples=samples,
        table=table, classes=classes, proba=proba, groups=_concat_explanations(grouped, order),
        features=_concat_explanations(per_feature, order), method=explained.method, unit=explained.unit,
        evidence=pd.concat(evidence, ignore_index=True).sort_values(["image", "role", "rank"], ignore_index=True),
        correlates=latent_correlates(table), held_out=True, fold=fold, features_model=features,
        train_images=shown, train_labels=labels, train_samples=samples,
        descriptor_values=_concat_explanations(per_descriptor, order),
        description=(f"out-of-fold: StratifiedGroupKFold({n_splits}) by sample; each image predicted and "
                     f"explained by the model of the fold that held its sample out"), group_by=group_by,
        out_of_distribution=flagged if has_ood else None, in_training=np.zeros(len(labels), dtype=bool),
        fold_screening=screening, sets=sets, set_alpha=alpha, set_note=set_note)


def _fold_screening(fitted: Sequence[HybridClassifier], splits: Sequence[Any], table: pd.DataFrame,
                    random_state: int, screen_images: int = 32) -> pd.DataFrame:
    """The per-class screening score of every physical descriptor by each fold's model on its test
    images (its training rows as background): columns ``fold``, ``class``, ``descriptor``, ``score``."""
    per_fold = -(-screen_images // len(splits))
    parts = []
    for model, split in zip(fitted, splits, strict=True):
        scores = screen_descriptors(model, table.iloc[split.test], background=table.iloc[split.train],
                                    screen_images=per_fold, random_state=random_state, per_class=True)
        long = scores.rename_axis(index="descriptor", columns="class").stack().rename("score").reset_index()
        parts.append(long.assign(fold=split.fold))
    columns = ["fold", "class", "descriptor", "score"]
    return pd.concat(parts, ignore_index=True)[columns] if parts else pd.DataFrame(columns=columns)


def _screened_descriptors(screening: pd.DataFrame, top: int) -> list[str]:
    """The ``top`` physical descriptors by screening score summed over folds and classes."""
    total = screening.groupby("descriptor", sort=False)["score"].sum().sort_values(ascending=False, kind="stable")
    return list(total.index[:top])


def _splitter(n_splits: int, random_state: int) -> Any:
    from sklearn.model_selection import StratifiedGroupKFold

    return StratifiedGroupKFold(n_splits, shuffle=True, random_state=random_state)


def explain_set(model: HybridClassifier, X: Any, *, labels: Sequence[Any] | None = None,
                names: Sequence[str] | None = None, samples: Sequence[Any] | None = None,
                train_images: Sequence[Any] = (), train_labels: Sequence[Any] | None = None,
                train_samples: Sequence[Any] | None = None, max_background: int = 64,
                n_examples: int = 3, group_by: str = "auto", top_descriptors: int = 5,
                alpha: float = DEFAULT_ALPHA) -> ExplainedSet:
    """Explain the fitted ``model`` on ``X`` (images or a table).

    Nearest examples use the model's training rows (its OOD reference); thumbnails of them need
    ``train_images`` (with ``train_labels`` and ``train_samples``) in the order the model was
    fitted on. Latent columns are named by the model's stored links (``latent_links_``; computed
    from its training rows for models saved without them). Heads without trees also get
    per-descriptor Shapley values of the ``top_descriptors`` screened physical descriptors (0: none;
    :func:`~hybridtmd.explanation.descriptor_shapley` with its default 32 background rows).
    A model fitted with ``conformal`` also gives each image's prediction set at ``alpha``.
    """
    alpha = check_alpha(alpha)
    table = model.transform_features(X)
    n = len(table)
    names = list(names) if names is not None else (
        [im.name for im in height_images(check_channel_maps(X))] if is_image_sequence(X) else
        [str(i) for i in range(n)])
    proba = model.predict_proba(table)
    explained = group_explanation(model, table, max_background=max_background, group_by=group_by)
    per_descriptor = (descriptor_shapley(model, table, top=top_descriptors)
                      if explained.method == "group_shapley" and top_descriptors
                      and any(str(c).startswith(PHYS_PREFIX) for c in table.columns) else None)
    has_ood = getattr(model, "ood_", None) is not None
    train = background_table(model) if has_ood else None
    evidence = pd.DataFrame(columns=["image", "role", "class", "rank", "train_index", "train_sample", "distance"])
    if train is not None and train_labels is not None and len(train_labels) == len(train):
        ids = np.asarray(train_samples) if train_samples is not None else np.arange(len(train))
        evidence = nearest_examples(model, table, train, train_labels, ids, proba, k=n_examples)
    sets, set_note = conformal_sets([model], [np.arange(n)], proba, alpha)
    return ExplainedSet(
        names=names, labels=None if labels is None else np.asarray([str(v) for v in labels]),
        samples=None if samples is None else np.asarray(samples), table=table,
        classes=[str(c) for c in model.classes_], proba=proba, groups=explained.groups,
        features=explained.features, method=explained.method, unit=explained.unit, evidence=evidence,
        correlates=_model_correlates(model, train if train is not None else table), held_out=False,
        features_model=model.features_, train_images=height_images(check_channel_maps(train_images)),
        train_labels=None if train_labels is None else np.asarray([str(v) for v in train_labels]),
        train_samples=None if train_samples is None else np.asarray(train_samples),
        descriptor_values=per_descriptor,
        description="explained by one fitted model (in-sample if these are its training images)",
        group_by=group_by, out_of_distribution=model.is_out_of_distribution(table) if has_ood else None,
        in_training=training_rows(model, table) if has_ood else None, sets=sets, set_alpha=alpha, set_note=set_note)


def training_rows(model: HybridClassifier, table: pd.DataFrame) -> np.ndarray:
    """Per row of ``table``, whether it is one of ``model``'s training rows (its OOD reference,
    in the reference's standardised space: a nearest training row within 1e-3, where float32
    storage rounds at about 1e-7 per column)."""
    from ..model.ood import knn_mean_distance

    ood = model.ood_
    rows = table[list(model.feature_names_)].to_numpy(dtype=np.float64)
    standardised = (np.where(np.isnan(rows), ood.center_, rows) - ood.center_) / ood.scale_
    with np.errstate(over="ignore", invalid="ignore"):
        nearest = knn_mean_distance(standardised, np.asarray(ood.reference_, dtype=np.float64), 1)
    return np.isfinite(nearest) & (nearest < 1e-3)


def _model_correlates(model: HybridClassifier, table: pd.DataFrame) -> pd.DataFrame:
    """The latent-physical links the model stores (``latent_links_``, same columns as
    :func:`latent_correlates`), else those of ``table``."""
    stored = getattr(model, "latent_links_", None)
    return stored if isinstance(stored, pd.DataFrame) else latent_correlates(table)
