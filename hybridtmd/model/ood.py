"""Out-of-distribution score: how unlike every training image an image is.

:class:`NearestNeighborOOD` scores an image by its mean Euclidean distance to the ``n_neighbors``
nearest training images in the standardised feature table and flags it when the score exceeds
a threshold learnt from the training images themselves. A high score marks an unknown material
or a broken scan, whose predicted label should not be trusted.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted

from .._utils.params import Interval, validate_params

#: the fitted arrays a saved model stores (its arrays file names them ``ood_<name>``)
STATE_ARRAYS = ("reference", "center", "scale")


def knn_mean_distance(query: np.ndarray, reference: np.ndarray, k: int,
                      exclude_groups: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """Mean Euclidean distance of each query row to its ``k`` nearest reference rows; with
    ``exclude_groups=(query_groups, reference_groups)`` rows of the same group are skipped (NaN
    where fewer than ``k`` rows are left)."""
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


def flag_scores(scores: np.ndarray, threshold: float) -> np.ndarray:
    """True where a score exceeds ``threshold`` or is NaN/inf: a score that cannot be computed
    (overflowing features) never passes as in-distribution."""
    scores = np.asarray(scores, dtype=np.float64)
    return ~(np.isfinite(scores) & (scores <= threshold))


class NearestNeighborOOD(BaseEstimator):
    """k-nearest-neighbour out-of-distribution score of feature-table rows.

    Columns are standardised (missing values at the training median), each block - the
    ``block`` columns and the others, e.g. latent and physical - scaled to equal weight in the
    distance whatever their widths. The threshold is the ``quantile`` of the training images' own
    scores, each computed against training images of *other* samples (``groups``), so a new
    sample of a known material scores like the training ones and a new material scores above.

    Parameters
    ----------
    n_neighbors : int
        Neighbours averaged (fewer when there are fewer training images).
    quantile : float
        Quantile of the training scores that becomes ``threshold_``.

    Attributes
    ----------
    center_, scale_ : ndarray  per-column standardisation (scale includes the block weight)
    reference_ : ndarray of float32  the standardised training rows
    threshold_ : float  scores above it are out of distribution (inf when no training row has a
        neighbour of another sample)
    """

    _parameter_constraints: dict = {  # noqa: RUF012 (scikit-learn's convention: a class attribute)
        "n_neighbors": [Interval(numbers.Integral, 1, None)],
        "quantile": [Interval(numbers.Real, 0, 1, closed="right")],
    }

    def __init__(self, n_neighbors: int = 5, quantile: float = 0.99):
        self.n_neighbors = n_neighbors
        self.quantile = quantile

    def fit(self, X: np.ndarray, groups: Any = None, block: np.ndarray | None = None) -> NearestNeighborOOD:
        """Learn the standardisation, the reference rows and the threshold from the table ``X``;
        ``groups`` (one sample id per row; default: every row its own sample), ``block`` (a
        boolean column mask; default: one block)."""
        validate_params(self, self._parameter_constraints)
        X = np.asarray(X, dtype=np.float64)
        groups = np.arange(len(X)) if groups is None else np.asarray(groups)
        block = np.zeros(X.shape[1], bool) if block is None else np.asarray(block, bool)
        center = np.nanmedian(X, axis=0)
        center = np.where(np.isfinite(center), center, 0.0)
        scale = np.where(np.isnan(X), center, X).std(axis=0)
        scale[scale == 0] = 1.0
        weight = np.where(block, 1.0 / math.sqrt(max(block.sum(), 1)), 1.0 / math.sqrt(max((~block).sum(), 1)))
        self.center_, self.scale_ = center, scale / weight
        reference = self._standardise(X)
        k = min(self.n_neighbors, max(len(X) - 1, 1))
        train_scores = knn_mean_distance(reference, reference, k, exclude_groups=(groups, groups))
        finite = train_scores[np.isfinite(train_scores)]
        self.reference_ = reference.astype(np.float32)
        self.threshold_ = float(np.quantile(finite, self.quantile)) if finite.size else math.inf
        return self

    def _standardise(self, X: np.ndarray) -> np.ndarray:
        filled = np.where(np.isnan(X), self.center_, X)
        return (filled - self.center_) / self.scale_

    def score(self, X: np.ndarray) -> np.ndarray:
        """The OOD score of every row (one value per row, not scikit-learn's scalar ``score``):
        mean distance to the nearest training rows; larger = stranger. A row with no value at all
        (every feature missing) scores ``inf``: nothing says it is like the training images, and
        filling it with the training medians would place it at their centre."""
        check_is_fitted(self, "reference_")
        X = np.asarray(X, dtype=np.float64)
        k = min(self.n_neighbors, len(self.reference_))
        with np.errstate(over="ignore", invalid="ignore"):  # overflowing rows give inf/NaN, flagged below
            scores = knn_mean_distance(self._standardise(X), self.reference_.astype(np.float64), k)
        return np.where(np.isnan(X).all(axis=1), np.inf, scores) if X.shape[1] else scores

    def is_outlier(self, X: np.ndarray) -> np.ndarray:
        """True where :meth:`score` exceeds ``threshold_`` or is not a number (:func:`flag_scores`)."""
        return flag_scores(self.score(X), self.threshold_)

    def add_reference(self, X: np.ndarray) -> NearestNeighborOOD:
        """Rows of a table join the reference (images of a class added later); the threshold stays."""
        check_is_fitted(self, "reference_")
        added = self._standardise(np.asarray(X, dtype=np.float64)).astype(np.float32)
        self.reference_ = np.vstack([self.reference_, added])
        return self

    def state(self) -> dict[str, np.ndarray]:
        """The fitted arrays (:data:`STATE_ARRAYS`), for a model's arrays file."""
        check_is_fitted(self, "reference_")
        return {"reference": self.reference_, "center": self.center_, "scale": self.scale_}

    @classmethod
    def from_state(cls, threshold: float, arrays: dict[str, np.ndarray], **params: Any) -> NearestNeighborOOD:
        """The fitted estimator that :meth:`state` and ``threshold_`` describe; ``params`` are
        its constructor parameters. ``KeyError`` names a missing array."""
        ood = cls(**params)
        ood.reference_, ood.center_, ood.scale_ = (arrays[name] for name in STATE_ARRAYS)
        ood.threshold_ = float(threshold)
        return ood
