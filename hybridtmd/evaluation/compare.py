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
from ..io import AFMImage, check_images
from ..model import HybridClassifier, resolve_features
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
) -> Evaluation:
    """The hybrid classifier, each of its halves, and end-to-end fine-tuning, on identical folds.

    Images are levelled once (``level_config``). The hybrid's two feature halves are computed
    once for all images (each timed); ``hybrid``, ``descriptors`` and ``embeddings`` rows are the
    hybrid's head (default :class:`~hybridtmd.model.HybridClassifier`) on the full table and on
    each half; the ``fine-tune`` row is ``fine_tune`` (default :class:`~hybridtmd.baseline.FineTuneClassifier`) on
    the levelled images. Every fold of every model is the same
    (:func:`~hybridtmd.evaluation.evaluate_inputs`).

    Cost columns: ``fit_seconds``/``predict_seconds`` of the table models include their share of
    feature extraction (per-image time × images of the fold); ``fit_flops``/``predict_flops``
    count CNN forward passes (:func:`~hybridtmd.baseline.estimate_flops`): the hybrid embeds each image once, the
    fine-tuning reports its own training FLOPs. Descriptor arithmetic (filters, FFTs) is not
    counted in FLOPs; its time is in the seconds.
    """
    y, groups = np.asarray(y), np.asarray(groups)
    levelled = [level(im, level_config) for im in check_images(images)]
    hybrid = HybridClassifier() if hybrid is None else hybrid
    features = resolve_features("default" if hybrid.features is None else hybrid.features)
    if features.descriptors is None or features.embedder is None:
        raise ValueError("compare needs a hybrid with both halves (descriptors and embedder)")
    seconds, tables = {}, {}
    for name, off in (("descriptors", "embedder"), ("embeddings", "descriptors")):
        part = clone(features).set_params(level_images=False, **{off: None})
        start = time.perf_counter()
        tables[name] = part.fit_transform(levelled)
        seconds[name] = (time.perf_counter() - start) / len(levelled)
        if name == "embeddings":
            embedder = part.embedder_
            embed_flops = estimate_flops(embedder.backbone_, embedder.input_size or embedder.backbone_.input_size)
    head = clone(hybrid).set_params(features=None)
    table = pd.concat([tables["descriptors"], tables["embeddings"]], axis=1)
    inputs = {"hybrid": (head, table), "descriptors": (head, tables["descriptors"]),
              "embeddings": (head, tables["embeddings"]),
              "fine-tune": (FineTuneClassifier() if fine_tune is None else fine_tune, levelled)}
    result = evaluate_inputs(inputs, y, groups, cv=cv, n_repeats=n_repeats, random_state=random_state)
    folds = result.folds
    per_image = {"hybrid": seconds["descriptors"] + seconds["embeddings"], **seconds}
    for name, cost in per_image.items():
        rows = folds["model"] == name
        folds.loc[rows, "fit_seconds"] += cost * folds.loc[rows, "n_train"]
        folds.loc[rows, "predict_seconds"] += cost * folds.loc[rows, "n_test"]
        cnn = 0.0 if name == "descriptors" else embed_flops
        folds.loc[rows, "fit_flops"] = cnn * folds.loc[rows, "n_train"]
        folds.loc[rows, "predict_flops"] = cnn * folds.loc[rows, "n_test"]
    return result


def compute_ratios(result: Evaluation, slow: str = "fine-tune", fast: str = "hybrid") -> dict[str, float]:
    """Mean cost of ``slow`` over ``fast`` per fold: fit and predict wall time and FLOPs."""
    means = result.folds.groupby("model")[["fit_seconds", "predict_seconds", "fit_flops", "predict_flops"]].mean()
    return {col: float(means.loc[slow, col] / means.loc[fast, col]) if means.loc[fast, col] else math.inf
            for col in means.columns}


__all__ = ["compare", "compute_ratios"]
