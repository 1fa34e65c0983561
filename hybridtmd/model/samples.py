"""Sample-level verdicts: the images of one sample (film) decided together.

Every image of a sample shows the same material, so a verdict per sample should use all of them.
:func:`pool_samples` pools image probabilities by the **mean log-probability** per class,
renormalised over the classes (the normalised geometric mean, i.e. a product of experts with each
image's evidence counted once per image and the number of images divided out so a sample with many
images is not over-confident): ``log p_s(c) = mean_i log p_i(c) - log Σ_c' exp(mean_i log p_i(c'))``.
An image that is confident against a class pulls that class down strongly, which a plain mean of
probabilities would not (Kittler et al., "On combining classifiers", IEEE TPAMI 20, 226, 1998:
the product rule for independent evidence). Probabilities are clipped at
:data:`~.calibration.PROBABILITY_FLOOR` before the log (:func:`~.calibration.log_probabilities`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from .calibration import PROBABILITY_FLOOR, log_probabilities


def pool_samples(proba: np.ndarray, groups: Sequence[Any], classes: Sequence[Any]) -> pd.DataFrame:
    """One row per sample (index ``sample``, in order of first appearance): ``label`` (the
    verdict), ``confidence`` (its pooled probability), ``agreement`` (fraction of the sample's
    images whose own most probable class is the verdict), ``n_images`` and ``p_<class>`` (pooled).

    ``proba`` is ``(n_images, n_classes)`` with columns in ``classes`` order.
    """
    proba = np.asarray(proba, dtype=np.float64)
    groups = np.asarray(groups, dtype=object)
    classes = np.asarray(classes)
    if proba.ndim != 2 or proba.shape != (len(groups), len(classes)):
        raise ValueError(f"proba must be (n_images, n_classes) = ({len(groups)}, {len(classes)}), got {proba.shape}")
    log_p = log_probabilities(proba)
    codes, samples = pd.factorize(pd.Series(groups), sort=False)
    n = np.bincount(codes, minlength=len(samples))
    mean_log = np.zeros((len(samples), len(classes)))
    np.add.at(mean_log, codes, log_p)
    mean_log /= n[:, None]
    pooled = np.exp(mean_log - mean_log.max(axis=1, keepdims=True))
    pooled /= pooled.sum(axis=1, keepdims=True)
    verdict = pooled.argmax(axis=1)
    agree = np.bincount(codes, weights=(proba.argmax(axis=1) == verdict[codes]).astype(float),
                        minlength=len(samples)) / n
    frame = pd.DataFrame({"label": classes[verdict], "confidence": pooled.max(axis=1), "agreement": agree,
                          "n_images": n}, index=pd.Index(list(samples), name="sample"))
    for j, c in enumerate(classes):
        frame[f"p_{c}"] = pooled[:, j]
    return frame


def predict_samples(model: Any, X: Any, groups: Sequence[Any]) -> pd.DataFrame:
    """Sample verdicts of a fitted classifier with ``predict_proba`` (hybrid or fine-tuned):
    :func:`pool_samples` of its image probabilities, ``groups`` naming each image's sample."""
    return pool_samples(model.predict_proba(X), groups, model.classes_)


def majority_labels(labels: Sequence[Any], groups: Sequence[Any]) -> pd.Series:
    """The most common of each group's ``labels`` (ties to the first in sorted order), indexed by
    group in order of first appearance."""
    series = pd.Series(np.asarray(labels, dtype=object), index=np.asarray(groups, dtype=object))
    return series.groupby(level=0, sort=False).agg(lambda s: sorted(s.mode().tolist(), key=str)[0])


def sample_accuracy(y_true: Sequence[Any], groups: Sequence[Any], verdicts: pd.DataFrame) -> float:
    """Fraction of samples whose verdict is their true label: the label of its images (a sample is
    one material; were its images labelled differently, the most common label, ties to the first
    in sorted order: :func:`majority_labels`)."""
    truth = majority_labels(y_true, groups)
    return float((verdicts["label"].to_numpy(dtype=object) == truth.loc[verdicts.index].to_numpy()).mean())


def sample_metrics(predictions: pd.DataFrame, classes: Sequence[Any]) -> dict[str, float]:
    """``{"sample accuracy": ..., "samples": n}`` of a table of image predictions with columns
    ``sample``, ``label`` and ``p_<class>``: :func:`pool_samples` verdicts scored by
    :func:`sample_accuracy`, the definition ``evaluate`` reports too; ``{}`` without a ``sample``
    column."""
    if "sample" not in predictions:
        return {}
    verdicts = pool_samples(predictions[[f"p_{c}" for c in classes]].to_numpy(), predictions["sample"], classes)
    return {"sample accuracy": sample_accuracy(predictions["label"], predictions["sample"], verdicts),
            "samples": len(verdicts)}


__all__ = ["PROBABILITY_FLOOR", "pool_samples", "predict_samples", "sample_accuracy", "sample_metrics"]
