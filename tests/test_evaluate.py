"""Grouped cross-validation: folds never share a sample; scores come from real fits."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.dummy import DummyClassifier
from sklearn.neighbors import KNeighborsClassifier

from hybridtmd.evaluate import GroupLeakError, check_grouped_split, grouped_cross_validate, summarize_folds


def test_grouped_cv_separates_samples_and_scores_models():
    rng = np.random.default_rng(0)
    groups = np.repeat(np.arange(30), 3)
    y = groups % 3
    X = rng.normal(size=(90, 4)) + y[:, None] * 3.0  # separable by class
    folds = grouped_cross_validate(
        lambda seed: {"knn": KNeighborsClassifier(3), "dummy": DummyClassifier()}, X, y, groups, seeds=(0, 1)
    )
    assert len(folds) == 2 * 5 * 2
    summary = summarize_folds(folds)
    assert summary.loc["knn", ("accuracy", "mean")] > 0.95
    assert summary.loc["dummy", ("accuracy", "mean")] < 0.5


def test_a_split_sharing_a_sample_is_refused():
    groups = np.array(["a", "a", "b", "c"])
    check_grouped_split(np.array([0, 2]), np.array([3]), groups)
    with pytest.raises(GroupLeakError, match="1 sample"):
        check_grouped_split(np.array([0, 2]), np.array([1, 3]), groups)
