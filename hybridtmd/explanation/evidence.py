"""Example-based evidence: the training images an explained image looks most like.

For each explained image, the nearest training images of its predicted class and of the
runner-up class, in the model's standardised feature space: the space of its out-of-distribution
score (every column centred at the training median and scaled by its training spread, the
physical and latent blocks weighted equally, missing values at the median). "Looks most like
these MoS2 samples" is then a statement about the same distances that flag unknown materials.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from ..model import NearestNeighborOOD
from ..model.columns import latent_mask

EVIDENCE_COLUMNS = ["image", "role", "class", "rank", "train_index", "train_sample", "distance"]


def standardiser(model: Any, train_table: pd.DataFrame) -> NearestNeighborOOD:
    """The model's own standardisation (its fitted OOD score), or one fitted like it on
    ``train_table`` when the model has none."""
    ood = getattr(model, "ood_", None)
    if ood is not None:
        return ood
    return NearestNeighborOOD().fit(train_table.to_numpy(dtype=np.float64),
                                    block=latent_mask([str(c) for c in train_table.columns]))


def standardised(space: NearestNeighborOOD, X: np.ndarray) -> np.ndarray:
    """Rows of ``X`` in the fitted space: missing values at the centre, then ``(x - center_) / scale_``."""
    filled = np.where(np.isnan(X), space.center_, X)
    return (filled - space.center_) / space.scale_


def nearest_examples(model: Any, table: pd.DataFrame, train_table: pd.DataFrame, train_labels: Sequence[Any],
                     train_samples: Sequence[Any], proba: np.ndarray, *, k: int = 3) -> pd.DataFrame:
    """The ``k`` nearest training images of the predicted and of the runner-up class of every row
    of ``table``.

    Parameters
    ----------
    model : fitted HybridClassifier (its ``classes_`` order the columns of ``proba``)
    table, train_table : feature tables with the model's columns (explained rows, training rows)
    train_labels, train_samples : class and sample id of every training row
    proba : (n, n_classes) the model's probabilities for ``table``

    Returns
    -------
    DataFrame
        ``image`` (row of ``table``), ``role`` (``predicted`` / ``runner-up``), ``class``,
        ``rank`` (1 = nearest), ``train_index`` (row of ``train_table``), ``train_sample``,
        ``distance`` (Euclidean, in the standardised space). Each training sample appears at
        most once per list, so three thumbnails show three samples.
    """
    space = standardiser(model, train_table)
    query = standardised(space, table.to_numpy(dtype=np.float64))
    reference = standardised(space, train_table.to_numpy(dtype=np.float64))
    labels = np.asarray([str(v) for v in train_labels])
    samples = np.asarray(train_samples)
    classes = [str(c) for c in model.classes_]
    order = np.argsort(-np.asarray(proba), axis=1, kind="stable")
    rows = []
    for i, x in enumerate(query):
        distance = np.sqrt(((reference - x) ** 2).sum(axis=1))
        for role, column in (("predicted", 0), ("runner-up", 1)):
            if column >= order.shape[1]:
                continue
            cls = classes[order[i, column]]
            candidates = np.flatnonzero(labels == cls)
            candidates = candidates[np.argsort(distance[candidates], kind="stable")]
            _, first = np.unique(samples[candidates], return_index=True)  # nearest image of each sample
            for rank, j in enumerate(candidates[np.sort(first)][:k], start=1):
                rows.append({"image": i, "role": role, "class": cls, "rank": rank, "train_index": int(j),
                             "train_sample": samples[j], "distance": float(distance[j])})
    return pd.DataFrame(rows, columns=EVIDENCE_COLUMNS)
