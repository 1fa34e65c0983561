"""One validation mechanism: fold feasibility in one place, config sections checked by the
estimators' own constraints."""

from __future__ import annotations

import numpy as np
import pytest

from hybridtmd.splits import FixedTestSplit, check_fold_feasibility, fold_shortfall, grouped_splits


def test_fold_shortfall_names_each_short_class_with_samples_and_images():
    y = ["a"] * 6 + ["b"] * 3
    groups = [1, 1, 2, 2, 3, 3, 4, 4, 5]
    assert fold_shortfall(y, groups, 3) == (
        "b has 2 sample(s) (3 images): fewer samples than the 3 folds need; folds are grouped by sample, so each class "
        "needs at least 3 samples (use fewer folds or more samples)")
    assert fold_shortfall(y, groups, 2) is None
    with pytest.raises(ValueError, match=r"^b has 2 sample\(s\)"):
        check_fold_feasibility(y, groups, 3)


def test_every_caller_words_the_shortfall_alike(tmp_path):
    """The dataset, the held-out explanation, the permutation test and the fixed test split all
    refuse a class with too few samples with the one message of splits.fold_shortfall."""
    from sklearn.neighbors import KNeighborsClassifier

    from hybridtmd.evaluation.significance import permutation_test
    from hybridtmd.explanation.explained import explain_held_out
    from hybridtmd.model import HybridClassifier

    y = np.array(["a"] * 6 + ["b"] * 4)
    groups = np.array([0, 0, 1, 1, 2, 2, 3, 3, 4, 4])  # b: 2 samples
    expected = fold_shortfall(y, groups, 3)
    X = np.arange(20, dtype=float).reshape(10, 2)
    with pytest.raises(ValueError) as permutation:
        permutation_test(KNeighborsClassifier(1), X, y, groups, cv=None, n_permutations=1)
    assert str(permutation.value) == fold_shortfall(y, groups, 5)
    with pytest.raises(ValueError) as explained:
        import pandas as pd

        explain_held_out(HybridClassifier(features=None), None, y, groups, n_splits=3,
                         table=pd.DataFrame(X, columns=["phys__a", "phys__b"]))
    assert str(explained.value) == expected
    splits = np.where(np.isin(groups, [0, 3]), "test", "train")  # b keeps one sample for training
    with pytest.raises(ValueError) as fixed:
        grouped_splits(y, groups, FixedTestSplit(splits, n_splits=2))
    assert str(fixed.value).endswith(fold_shortfall(y[splits != "test"], groups[splits != "test"], 2))
    assert "b has 1 sample(s)" in str(fixed.value)
    manifest = tmp_path / "manifest.csv"
    rows = [f"f{i}.tif,{c},{g}\n" for i, (c, g) in enumerate(zip(y, groups, strict=True))]
    manifest.write_text("path,label,group\n" + "".join(rows))
    from hybridtmd.io import load_dataset

    with pytest.raises(ValueError) as dataset:
        load_dataset(manifest).check_folds(3)
    assert str(dataset.value) == expected
