"""Hybrid vs fine-tuning on identical folds: the comparison engine behind ``hybridtmd compare``."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import clone

from ..baseline import FineTuneClassifier, estimate_flops
from ..io import AFMImage
from ..io.image import check_images
from ..model import HybridClassifier
from ..model.features import resolve_features
from ..preprocess import level
from .cv import evaluate_inputs
from .results import Evaluation


def compare(
    images: Sequence[AFMImage],
    y: Any,
    groups: Any,
    *,
    hybrid: Any = None,
    fine_tune: FineTuneClassifier | None = None,
    level_config: Any = None,
    cv: Any = None,
    n_repeats: int = 1,
    random_state: int = 0,
    same_input_size: bool = True,
) -> Evaluation:
    """The hybrid classifier, each of its halves, and end-to-end fine-tuning, on identical folds.

    Images are levelled once (``level_config``). The hybrid's two feature halves are computed
    once for all images (each timed); ``hybrid``, ``descriptors`` and ``embeddings`` rows are the
    hybrid's head (default :class:`~hybridtmd.model.HybridClassifier`) on the full table and on
    each half; the ``fine-tune`` row is ``fine_tune`` (default :class:`~hybridtmd.baseline.FineTuneClassifier`) on
    the levelled images. Every fold of every model is the same
    (:func:`~hybridtmd.evaluation.evaluate_inputs`).

    ``same_input_size`` (default) gives the hybrid's embedder the fine-tuning's input side
    (``fine_tune.input_size``; None: both use the backbone's), so neither arm sees more pixels.
    Features that learn from images (an embedder PCA) are fitted inside each training fold
    (:func:`feature_inputs`); per-image features are computed once.

    Cost columns: ``fit_seconds``/``predict_seconds`` of the table models include their share of
    feature extraction (per-image time × images of the fold); ``fit_flops``/``predict_flops``
    count CNN forward passes (:func:`~hybridtmd.baseline.estimate_flops`): the hybrid's embedder
    runs ``views_per_image`` passes per image (tiles × 8 with ``tta="d4"``, the column says how
    many), the fine-tuning reports its own training FLOPs. ``backbone`` names the network each
    row actually ran (the fine-tuning's fallback included). Descriptor arithmetic (filters, FFTs)
    is not counted in FLOPs; its time is in the seconds.
    """
    y, groups = np.asarray(y), np.asarray(groups)
    levelled = [level(im, level_config) for im in check_images(images)]
    fine_tune = FineTuneClassifier() if fine_tune is None else fine_tune
    hybrid = HybridClassifier() if hybrid is None else hybrid
    features = resolve_features("default" if hybrid.features is None else hybrid.features)
    if features.descriptors is None or features.embedder is None:
        raise ValueError("compare needs a hybrid with both halves (descriptors and embedder)")
    if same_input_size:
        features = clone(features).set_params(embedder__input_size=fine_tune.input_size)
    embedder = clone(features.embedder)
    views = float(np.mean([embedder.n_views(im) for im in levelled]))
    embed_flops = views * estimate_flops(embedder.get_backbone(), embedder.resolved_input_size())
    halves = {name: clone(features).set_params(level_images=False, **{off: None})
              for name, off in (("descriptors", "embedder"), ("embeddings", "descriptors"))}
    inputs, seconds = feature_inputs(clone(hybrid).set_params(features=None), features, halves, levelled)
    inputs["fine-tune"] = (fine_tune, levelled)
    result = evaluate_inputs(inputs, y, groups, cv=cv, n_repeats=n_repeats, random_state=random_state)
    folds = result.folds
    for name in ("hybrid", "descriptors", "embeddings"):
        rows = folds["model"] == name
        cost = seconds.get(name, 0.0)  # per-fold feature fitting is inside fit_seconds already
        folds.loc[rows, "fit_seconds"] += cost * folds.loc[rows, "n_train"]
        folds.loc[rows, "predict_seconds"] += cost * folds.loc[rows, "n_test"]
        cnn = 0.0 if name == "descriptors" else embed_flops
        folds.loc[rows, "fit_flops"] = cnn * folds.loc[rows, "n_train"]
        folds.loc[rows, "predict_flops"] = cnn * folds.loc[rows, "n_test"]
        folds.loc[rows, "backbone"] = "-" if name == "descriptors" else embedder.backbone
    folds["views_per_image"] = np.where(folds["model"] == "fine-tune", 1.0, views)
    return result


def feature_inputs(head: Any, features: Any, halves: dict[str, Any],
                   levelled: list[AFMImage]) -> tuple[dict[str, tuple[Any, Any]], dict[str, float]]:
    """Each table model with its input, and the per-image feature seconds to add to its costs.

    Per-image features (no embedder PCA) are computed once for all images and timed: a table
    then equals fitting on each training fold. Otherwise the hybrid and its embeddings half fit
    their features inside each training fold (:class:`~hybridtmd.model.HybridClassifier` with
    ``features``), so nothing learnt from the images (the PCA) ever sees a test fold.
    """
    seconds, tables, inputs = {}, {}, {}
    for name, part in halves.items():
        if not part.is_per_image():
            inputs[name] = (clone(head).set_params(features=part), levelled)
            continue
        start = time.perf_counter()
        tables[name] = part.fit_transform(levelled)
        seconds[name] = (time.perf_counter() - start) / len(levelled)
        inputs[name] = (head, tables[name])
    if len(tables) == 2:
        inputs["hybrid"] = (head, pd.concat([tables["descriptors"], tables["embeddings"]], axis=1))
        seconds["hybrid"] = seconds["descriptors"] + seconds["embeddings"]
    else:
        inputs["hybrid"] = (clone(head).set_params(features=clone(features).set_params(level_images=False)), levelled)
    return {k: inputs[k] for k in ("hybrid", "descriptors", "embeddings")}, seconds


def arm_seconds(result: Evaluation) -> dict[str, float]:
    """Seconds each arm of :func:`compare` took, fit + predict summed over its folds; the table
    arms include their share of the feature extraction (the hybrid's is both halves'), so the arms
    add up to more than the comparison's wall time."""
    folds = result.folds
    per_arm = (folds["fit_seconds"] + folds["predict_seconds"]).groupby(folds["model"], sort=False).sum()
    return {str(name): float(seconds) for name, seconds in per_arm.items()}


def compute_ratios(result: Evaluation, slow: str = "fine-tune", fast: str = "hybrid") -> dict[str, float]:
    """Mean cost of ``slow`` over ``fast`` per fold: fit and predict wall time and FLOPs."""
    means = result.folds.groupby("model")[["fit_seconds", "predict_seconds", "fit_flops", "predict_flops"]].mean()
    return {col: float(means.loc[slow, col] / means.loc[fast, col]) if means.loc[fast, col] else math.inf
            for col in means.columns}


__all__ = ["arm_seconds", "compare", "compute_ratios"]
