"""Conformal prediction sets per image and per sample, calibrated on held-out *samples*.

With ``HybridClassifier(conformal="marginal" | "class")``, ``fit`` holds out about a quarter of
the samples of every class (:data:`CALIBRATION_SHARE`, :func:`~hybridtmd.splits.grouped_validation_split`:
never a sample on both sides, at least one sample of every class kept for fitting) and fits the
head, its selection and its temperature on the rest only. The head is **not** refitted on all
data afterwards: split-conformal coverage holds because the calibration samples are scored by the
very head that scores new samples, which never saw them; a head refitted on the calibration
samples would score them (and not new samples) more confidently, and the sets would under-cover.

The conformal part is the library's: ``crepes`` (Boström, PMLR 230, 2024)
:class:`~crepes.ConformalClassifier` with the hinge score ``1 - p(class)``
(:func:`crepes.extras.hinge`; "LAC" in MAPIE's words, the score with the smallest average sets,
Sadinle et al., JASA 2019), non-smoothed p-values (deterministic, coverage at least ``1 - alpha``),
and for ``"class"`` Mondrian categories = the class (class-conditional coverage, as crepes'
``WrapClassifier.calibrate(class_cond=True)`` does). What crepes cannot do - group images by
sample - is done before it: the calibration split above, and for sample sets the pooling of
:func:`~hybridtmd.model.samples.pool_samples` (as ``predict --by-sample``) of the calibration
samples' images and of the new samples' images, so one pooled sample is one calibration point.

Image sets calibrate on the calibration *images*: images of one sample are not independent, so
their coverage is over images of new samples, exact on average over samples drawn like the
calibration ones; sample sets calibrate on pooled samples and carry the usual guarantee per sample.
"""

from __future__ import annotations

import math
import numbers
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.utils.validation import check_is_fitted

from .._utils.params import Interval
from ..errors import HybridTMDError, ModelFileError
from ..splits import grouped_validation_split
from .samples import majority_labels, pool_samples, predict_samples

with warnings.catch_warnings():  # crepes sets warnings.simplefilter("always") at import: keep ours
    from crepes import ConformalClassifier
    from crepes.extras import hinge

#: the options of ``HybridClassifier(conformal=...)``
CONFORMAL_MODES = ("marginal", "class")
#: the error rate of the sets where a command shows them without being given one (explain)
DEFAULT_ALPHA = 0.1
#: share of each class's samples held out for calibration
CALIBRATION_SHARE = 0.25
#: the ``arrays.npz`` entries of a saved calibration
ARRAY_NAMES = ("image_scores", "image_labels", "sample_scores", "sample_labels")
ARRAY_PREFIX = "conformal_"


class ConformalError(HybridTMDError, ValueError):
    """Prediction sets cannot be made at this ``alpha`` (too few calibration points)."""


def check_alpha(alpha: Any) -> float:
    """``alpha`` as a float, or a ValueError saying it must be in (0, 1)."""
    if not Interval(numbers.Real, 0, 1, closed="neither")(alpha):
        raise ValueError(f"alpha must be a number in (0, 1) (the allowed error rate), got {alpha!r}")
    return float(alpha)


def points_needed(alpha: float) -> int:
    """The fewest calibration points with which a class can ever be left out of a set at
    ``alpha``: the smallest p-value is ``1 / (n + 1)``, and crepes keeps a class whose p-value is
    at least ``1 - (1 - alpha)``."""
    return math.floor(1.0 / (1.0 - (1.0 - alpha)) - 1.0) + 1


def calibration_split(y_enc: np.ndarray, groups: np.ndarray, conformal: str | None,
                      random_state: int | None) -> tuple[np.ndarray | slice, np.ndarray | None]:
    """Positions of the fitting rows and of the calibration rows, by sample: a sample is on one
    side only. Without ``conformal``: every row (a slice, so the arrays are not copied) and None."""
    if conformal is None:
        return slice(None), None
    fit_rows, calibration_rows = grouped_validation_split(y_enc, groups, CALIBRATION_SHARE, random_state)
    if len(calibration_rows) == 0:
        raise ConformalError(f"conformal={conformal!r}: too few samples to hold any out for calibration "
                             f"(each class needs at least 2 samples; {CALIBRATION_SHARE:.0%} of them are held out)")
    return fit_rows, calibration_rows


@dataclass(frozen=True)
class ConformalCalibration:
    """The calibration scores of a fitted model: the hinge score of each calibration image's and
    each pooled calibration sample's true class, and that class (encoded 0..n_classes-1).
    ``smoothing``: crepes' smoothed p-values (ties broken at random, seed 0: coverage exactly
    1 - alpha on average instead of at least) for comparisons; fitted and loaded models are never
    smoothed."""

    mode: str
    n_classes: int
    image_scores: np.ndarray
    image_labels: np.ndarray
    sample_scores: np.ndarray
    sample_labels: np.ndarray
    smoothing: bool = False

    @classmethod
    def from_probabilities(cls, mode: str, proba: np.ndarray, y_enc: np.ndarray, groups: np.ndarray,
                           classes: Sequence[Any]) -> ConformalCalibration:
        """Scores of the calibration images (``proba`` from the fitted head, columns in
        ``classes`` order) and of their samples; a sample's true class is the one rule of
        ``evaluate`` and the report (:func:`~hybridtmd.model.samples.majority_labels`: the most
        common label of its images, ties to the first in sorted order of the class names)."""
        codes = np.arange(proba.shape[1])
        pooled = pool_samples(proba, groups, codes)
        names = np.asarray(classes, dtype=object)
        majority = majority_labels(names[np.asarray(y_enc)], groups).loc[pooled.index]  # pool_samples' order
        sample_labels = pd.Index(names).get_indexer(majority.to_numpy()).astype(np.int64)
        pooled_proba = pooled[[f"p_{c}" for c in codes]].to_numpy()
        return cls(mode, len(codes), hinge(proba, codes, y_enc), np.asarray(y_enc, dtype=np.int64),
                   hinge(pooled_proba, codes, sample_labels), sample_labels)

    def image_sets(self, proba: np.ndarray, alpha: float, class_names: Sequence[Any]) -> np.ndarray:
        """Boolean ``(n_images, n_classes)``: the classes each image's set holds."""
        return self._sets(self.image_scores, self.image_labels, proba, alpha, "images", class_names)

    def sample_sets(self, pooled_proba: np.ndarray, alpha: float, class_names: Sequence[Any]) -> np.ndarray:
        """Boolean ``(n_samples, n_classes)`` from pooled sample probabilities."""
        return self._sets(self.sample_scores, self.sample_labels, pooled_proba, alpha, "samples", class_names)

    def _sets(self, scores: np.ndarray, labels: np.ndarray, proba: np.ndarray, alpha: float, unit: str,
              class_names: Sequence[Any]) -> np.ndarray:
        alpha = check_alpha(alpha)
        self.check_enough(labels, alpha, unit, class_names)
        if len(proba) == 0:
            return np.zeros((0, self.n_classes), dtype=bool)
        test_scores = hinge(np.asarray(proba, dtype=np.float64))
        options = {"confidence": 1.0 - alpha, "smoothing": self.smoothing, "seed": 0}
        if self.mode == "marginal":
            return ConformalClassifier().fit(scores).predict_set(test_scores, **options).astype(bool)
        mondrian = ConformalClassifier().fit(scores, bins=labels)
        # one Mondrian category per candidate class: class c's column is judged against class c's scores
        return np.column_stack([mondrian.predict_set(test_scores, bins=np.full(len(proba), c), **options)[:, c]
                                for c in range(self.n_classes)]).astype(bool)

    def check_enough(self, labels: np.ndarray, alpha: float, unit: str, class_names: Sequence[Any]) -> None:
        """:class:`ConformalError` naming the class (with ``"class"``) and the count when there are
        too few calibration points for any set at ``alpha`` to leave a class out."""
        needed = points_needed(alpha)
        if self.mode == "marginal":
            if len(labels) < needed:
                raise ConformalError(f"{len(labels)} calibration {unit}; alpha={alpha:g} needs at least {needed} "
                                     f"(with fewer every set is every class): raise alpha or fit on more samples")
            return
        counts = np.bincount(labels, minlength=self.n_classes)
        for c in np.flatnonzero(counts < needed):
            raise ConformalError(f"class {str(class_names[c])!r} has {counts[c]} calibration {unit}; "
                                 f"conformal='class' at alpha={alpha:g} needs at least {needed} per class (with fewer "
                                 f"the class is in every set): raise alpha, use conformal='marginal' or add samples "
                                 f"of that class")

    def check_usable(self, alpha: Any, class_names: Sequence[Any], samples: bool = False) -> None:
        """The errors :meth:`image_sets` (and with ``samples`` :meth:`sample_sets`) would raise at
        ``alpha``, raised before any work is done."""
        alpha = check_alpha(alpha)
        self.check_enough(self.image_labels, alpha, "images", class_names)
        if samples:
            self.check_enough(self.sample_labels, alpha, "samples", class_names)

    def summary(self) -> dict[str, Any]:
        """The manifest entry: mode and calibration counts (the scores are arrays)."""
        return {"mode": self.mode, "calibration_images": len(self.image_labels),
                "calibration_samples": len(self.sample_labels), "head_refitted": False,
                "score": "hinge", "library": "crepes"}

    def to_arrays(self) -> dict[str, np.ndarray]:
        return {ARRAY_PREFIX + name: np.asarray(getattr(self, name)) for name in ARRAY_NAMES}

    @classmethod
    def from_saved(cls, entry: Any, arrays: Mapping[str, np.ndarray], mode: str | None, n_classes: int,
                   path: Path) -> ConformalCalibration | None:
        """The calibration a model directory holds (None for a model without one); any
        inconsistency is a :class:`ModelFileError` naming ``path`` (the arrays file)."""
        if mode is None and entry is None:
            return None
        if not isinstance(entry, dict) or entry.get("mode") != mode:
            raise ModelFileError(f"{path}: the manifest's conformal entry {entry!r} does not match conformal={mode!r}")
        missing = [ARRAY_PREFIX + n for n in ARRAY_NAMES if ARRAY_PREFIX + n not in arrays]
        if missing:
            raise ModelFileError(f"{path}: lacks the conformal arrays {missing}")
        values = {n: arrays[ARRAY_PREFIX + n] for n in ARRAY_NAMES}
        for kind in ("image", "sample"):
            scores, labels = values[f"{kind}_scores"], values[f"{kind}_labels"]
            count = entry.get(f"calibration_{kind}s")
            if (scores.ndim != 1 or scores.shape != labels.shape or len(scores) != count
                    or scores.dtype.kind != "f" or labels.dtype.kind not in "iu"):
                raise ModelFileError(f"{path}: conformal {kind} arrays are not {count} scores and labels")
            if not (np.isfinite(scores).all() and ((scores >= 0) & (scores <= 1)).all()):
                raise ModelFileError(f"{path}: conformal {kind} scores must be in [0, 1] (1 - a probability)")
            if len(labels) and not (labels.min() >= 0 and labels.max() < n_classes):
                raise ModelFileError(f"{path}: conformal {kind} labels must be class indices below {n_classes}")
        return cls(mode, n_classes, **{n: values[n].astype(np.float64 if n.endswith("scores") else np.int64)
                                       for n in ARRAY_NAMES})


class ConformalMixin:
    """:meth:`predict_set` and :meth:`predict_sample_sets` of a classifier fitted with
    ``conformal`` (``conformal_`` a :class:`ConformalCalibration`)."""

    def _fitted_conformal(self) -> ConformalCalibration:
        """The fitted calibration; a ValueError for a model fitted without ``conformal``."""
        check_is_fitted(self, "classifier_")
        if getattr(self, "conformal_", None) is None:
            raise ValueError("this model was fitted with conformal=None: refit with conformal='marginal' or 'class' "
                             "for prediction sets")
        return self.conformal_

    def predict_set(self, X: Any, alpha: float = 0.1) -> np.ndarray:
        """Boolean ``(n_images, n_classes)``, columns in ``classes_`` order: each image's
        conformal prediction set, holding the true class with probability at least ``1 - alpha``
        (for every class separately with ``conformal="class"``). ``alpha`` in (0, 1); too few
        calibration images for it is a :class:`ConformalError` naming the class and the count."""
        calibration = self._fitted_conformal()
        return calibration.image_sets(self.predict_proba(X), alpha, self.classes_)

    def predict_sample_sets(self, X: Any, samples: Sequence[Any], alpha: float = 0.1) -> pd.DataFrame:
        """One set per sample: the images of each sample (``samples`` names each image's)
        pooled as ``predict --by-sample`` pools them (:func:`~hybridtmd.model.samples.pool_samples`),
        then a set calibrated on pooled calibration samples. A boolean DataFrame indexed by sample
        (order of first appearance), one column per class of ``classes_``."""
        calibration = self._fitted_conformal()
        pooled = predict_samples(self, X, samples)
        sets = calibration.sample_sets(pooled[[f"p_{c}" for c in self.classes_]].to_numpy(), alpha, self.classes_)
        return pd.DataFrame(sets, index=pooled.index, columns=list(self.classes_))


def set_labels(sets: np.ndarray, classes: Sequence[Any]) -> list[str]:
    """Each set as text: its classes joined by ``|`` (``""`` for an empty set)."""
    names = np.asarray([str(c) for c in classes], dtype=object)
    return ["|".join(names[row]) for row in np.asarray(sets, dtype=bool)]


#: the ``set_note`` of an out-of-distribution image (or sample with one)
OOD_SET_NOTE = ("out of distribution: unlike every training sample, so the calibration does not cover it "
                "and no class is ruled out")


def set_columns(sets: np.ndarray, classes: Sequence[Any], out_of_distribution: Any = None,
                index: Any = None) -> pd.DataFrame:
    """The ``set`` (classes joined by ``|``), ``set_size`` and ``set_note`` columns of a
    prediction table; rows flagged ``out_of_distribution`` get every class, and the note says why."""
    sets = np.array(sets, dtype=bool)
    ood = np.zeros(len(sets), dtype=bool) if out_of_distribution is None else np.asarray(out_of_distribution, bool)
    sets[ood] = True
    return pd.DataFrame({"set": set_labels(sets, classes), "set_size": sets.sum(axis=1),
                         "set_note": np.where(ood, OOD_SET_NOTE, "")}, index=index)


__all__ = ["CALIBRATION_SHARE", "CONFORMAL_MODES", "DEFAULT_ALPHA", "ConformalCalibration", "ConformalError",
           "ConformalMixin", "OOD_SET_NOTE", "calibration_split", "check_alpha", "points_needed", "set_columns",
           "set_labels"]
