"""Grouped evaluation: folds never share a sample, modalities only change the training side,
scores come from real fits."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.dummy import DummyClassifier
from sklearn.model_selection import KFold
from sklearn.neighbors import KNeighborsClassifier

from hybridtmd._utils.progress import counting_fits
from hybridtmd.evaluation import (
    ablation,
    evaluate,
    evaluate_low_data,
    evaluate_multilabel,
    evaluate_sequential,
    plot_confusion,
    plot_evaluation,
)
from hybridtmd.evaluation.cv import cap_per_class
from hybridtmd.evaluation.modalities import element_targets, low_data_fit_count
from hybridtmd.splits import GroupLeakError, check_grouped_split, grouped_splits

CLASSES = np.array(["MoS2", "WS2", "WSe2", "MoSe2"])


@pytest.fixture(scope="module")
def data():
    """40 samples x 3 images, 4 classes separable in the first (physical) column."""
    rng = np.random.default_rng(0)
    groups = np.repeat(np.arange(40), 3)
    y = CLASSES[groups % 4]
    X = rng.normal(size=(120, 4))
    X[:, 0] += (groups % 4) * 4.0
    table = pd.DataFrame(X, columns=["phys__sq_nm", "latent__0000", "latent__0001", "latent__0002"])
    return table, y, groups


def models():
    return {"knn": KNeighborsClassifier(3), "dummy": DummyClassifier()}


def test_evaluate_metrics_confusion_and_summary(data):
    X, y, groups = data
    result = evaluate(models(), X, y, groups, n_repeats=2)
    assert len(result.folds) == 2 * 5 * 2
    assert {"accuracy", "balanced_accuracy", "macro_f1", "recall[MoS2]", "fit_seconds"} <= set(result.folds)
    summary = result.summary()
    assert summary.loc["knn", ("accuracy", "mean")] > 0.85
    assert summary.loc["dummy", ("balanced_accuracy", "mean")] == pytest.approx(0.25)
    assert result.confusion["knn"].to_numpy().sum() == 2 * len(y)  # every image tested once per repeat
    assert "knn" in result.format() and result.to_markdown().startswith("| model |")


def test_folds_in_parallel_are_the_serial_ones(data):
    """Issue 33: ``n_jobs`` fits folds at once; rows, their order and the confusion are the serial run's."""
    X, y, groups = data
    serial, parallel = (ablation(KNeighborsClassifier(3), X, y, groups, n_jobs=n) for n in (1, 2))
    timing = ["fit_seconds", "predict_seconds"]
    pd.testing.assert_frame_equal(serial.folds.drop(columns=timing), parallel.folds.drop(columns=timing))
    assert list(serial.folds["model"].unique()) == ["descriptors", "embeddings", "hybrid"]
    assert all(serial.confusion[m].equals(parallel.confusion[m]) for m in serial.confusion)


def test_repeats_reshuffle_and_a_leaky_cv_is_refused(data):
    X, y, groups = data
    splits = grouped_splits(y, groups, n_repeats=2)
    assert not np.array_equal(splits[0].test, splits[5].test)
    assert all(not set(groups[s.train]) & set(groups[s.test]) for s in splits)
    with pytest.raises(GroupLeakError):
        evaluate(models(), X, y, groups, cv=KFold(5, shuffle=True, random_state=0))
    with pytest.raises(GroupLeakError, match="1 sample"):
        check_grouped_split(np.array([0, 2]), np.array([1, 3]), np.array(["a", "a", "b", "c"]))


def test_low_data_caps_training_only(data):
    X, y, groups = data
    result = evaluate_low_data({"knn": KNeighborsClassifier(1)}, X, y, groups, caps=(8, 4), protocol="balanced_cap")
    full = evaluate({"knn": KNeighborsClassifier(1)}, X, y, groups)
    assert set(result.folds["cap"]) == {8, 4}
    assert (result.folds.groupby("cap")["n_train"].max() <= 4 * np.array([4, 8])).all()
    # the test side is untouched: same test sizes as the full evaluation
    assert list(result.folds.query("cap == 8")["n_test"]) == list(full.folds["n_test"])


def test_paper_low_data_caps_only_the_newest_class(data):
    """The paper's protocol: k classes in the paper's order, only the k-th capped, the others keep
    every training image; whole samples first; test = the k classes' test images, uncapped."""
    X, y, groups = data
    calls = []

    class Recording(KNeighborsClassifier):
        def fit(self, X, y, groups=None):
            calls.append((len(y), dict(zip(*np.unique(y, return_counts=True), strict=True)),
                          None if groups is None else groups))
            return super().fit(X, y)

        def fit_continue(self, X, y, groups=None):
            return self.fit(X, y, groups)

    fits = []
    with counting_fits(fits.append):  # the CLI's progress total is the number of fits made
        result = evaluate_low_data({"knn": Recording(1)}, X, y, groups, caps=(4,), n_classes=(3, 4),
                                   cv=KFold_groups())
    assert sum(fits) == len(calls) == low_data_fit_count({"knn": Recording(1)}, y, 3, caps=(4,), n_classes=(3, 4))
    plain = {"knn": KNeighborsClassifier(1), "again": KNeighborsClassifier(3)}  # no previous variant, no chain
    assert low_data_fit_count(plain, y, 3, caps=(4,), n_classes=(3, 4)) == 3 * 2 * 2 * 2
    folds = result.folds
    assert set(folds["setting"]) == {"3", "3-4", "4", "4-4", "2-3", "2-3-4", "2-4", "2-4-4"}
    order = ["MoS2", "WS2", "WSe2", "MoSe2"]  # the paper's order, restricted to the classes present
    for (_, k, _), rows in folds.groupby(["variant", "k", "fold"]):
        full, capped = rows.set_index("cap").loc[0], rows.set_index("cap").loc[4]
        assert capped["n_train_newest"] == 4 < full["n_train_newest"]
        # every older class keeps all its training images
        assert full["n_train"] - full["n_train_newest"] == capped["n_train"] - capped["n_train_newest"]
        assert full["n_test"] == capped["n_test"]  # test side untouched
        assert np.isnan(capped[[f"recall[{c}]" for c in set(CLASSES) - set(order[:k])]].astype(float)).all()
    # 4 images of the newest class = one whole sample (3 images) + one image of a second
    capped_fits = [c for c in calls if c[1].get("WSe2") == 4 and "MoSe2" not in c[1]]
    assert capped_fits and all(c[1]["MoS2"] > 4 and c[1]["WS2"] > 4 for c in capped_fits)
    for *_, fit_groups in capped_fits:
        newest_groups = fit_groups[np.isin(fit_groups, groups[y == "WSe2"])]
        assert len(np.unique(newest_groups)) == 2  # one whole sample of 3 images + 1 of another


def KFold_groups():  # noqa: N802 (reads as the splitter it returns)
    from sklearn.model_selection import StratifiedGroupKFold

    return StratifiedGroupKFold(3, shuffle=True)


def test_low_data_and_sequential_report_the_newest_class(data):
    """Issue 27: beside accuracy, every setting says how well the class just added is recognised
    (its recall), with balanced accuracy and macro-F1, in the summary and the Markdown table."""
    X, y, groups = data
    low = evaluate_low_data({"knn": KNeighborsClassifier(1)}, X, y, groups, caps=(4,), n_classes=(3,),
                            variants=("imagenet",), cv=KFold_groups())
    folds = low.folds
    assert (folds["newest"] == "WSe2").all()
    np.testing.assert_array_equal(folds["newest_recall"], folds["recall[WSe2]"])
    summary = low.summary()
    assert {"accuracy", "balanced_accuracy", "macro_f1", "newest_recall"} <= set(summary.columns.get_level_values(0))
    assert "newest_recall" in low.to_markdown(("accuracy", "newest_recall"))
    sequential = evaluate_sequential({"knn": KNeighborsClassifier(3)}, X, y, groups,
                                     class_order=["WSe2", "MoS2", "WS2", "MoSe2"])
    three = sequential.folds.query("n_classes == 3")
    assert (three["newest"] == "WS2").all()
    np.testing.assert_array_equal(three["newest_recall"], three["recall[WS2]"])


def test_low_data_refuses_a_newest_class_too_small_for_the_folds(data):
    """A newest class with images in fewer samples than the folds need (one per test fold) is
    one error naming the class and its count, not NaN recalls or a scikit-learn traceback."""
    X, y, groups = data
    few = ~((y == "MoSe2") & (groups >= 12))  # MoSe2 keeps 3 samples (9 images) for 5 folds
    with pytest.raises(ValueError, match=r"newest class 'MoSe2' has 9 images in 3 samples.*5 folds"):
        evaluate_low_data({"knn": KNeighborsClassifier(1)}, X[few], y[few], groups[few], caps=(4,),
                          n_classes=(4,), variants=("imagenet",))


def test_cap_per_class_takes_whole_samples_first():
    y = np.array(["a"] * 9 + ["b"] * 2)
    groups = np.array([0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3])
    kept = cap_per_class(np.arange(11), y, groups, 4, np.random.default_rng(0))
    assert (y[kept] == "a").sum() == 4 and (y[kept] == "b").sum() == 2
    assert len(np.unique(groups[kept][y[kept] == "a"])) == 2  # one whole sample + part of another


def test_sequential_adds_classes_in_order(data):
    X, y, groups = data
    result = evaluate_sequential({"knn": KNeighborsClassifier(3)}, X, y, groups,
                                 class_order=["WSe2", "MoS2", "WS2", "MoSe2"])
    assert list(result.folds["n_classes"].unique()) == [2, 3, 4]
    two = result.folds.query("n_classes == 2")
    assert np.isnan(two["recall[WS2]"]).all() and (two["recall[WSe2]"] > 0.9).all()
    with pytest.raises(ValueError, match="every class"):
        evaluate_sequential(models(), X, y, groups, class_order=["MoS2", "WS2"])


def test_sequential_continues_models_with_fit_continue(data):
    X, y, groups = data
    calls = []

    class Continuing(KNeighborsClassifier):
        def fit_continue(self, X, y, groups=None):
            calls.append(len(np.unique(y)))
            return self.fit(X, y)

    evaluate_sequential({"c": Continuing(3)}, X, y, groups, cv=None)
    assert calls[:2] == [3, 4]


def test_element_targets_and_multilabel(data):
    targets = element_targets(["MoS2", "Mo-WSe2", "WS2"])
    assert list(targets.columns) == ["Mo", "S", "W", "Se"]
    assert targets.loc[1].tolist() == [True, False, True, True]
    X, y, groups = data
    result = evaluate_multilabel({"knn": KNeighborsClassifier(3)}, X, y, groups)
    assert {"hamming_accuracy", "subset_accuracy", "accuracy[Mo]", "accuracy[Se]"} <= set(result.folds)
    assert result.summary().loc["knn", ("subset_accuracy", "mean")] > 0.9


def test_ablation_uses_identical_folds_and_column_halves(data):
    X, y, groups = data
    result = ablation(KNeighborsClassifier(3), X, y, groups)
    assert list(result.folds["model"].unique()) == ["descriptors", "embeddings", "hybrid"]
    acc = result.summary()[("accuracy", "mean")]
    assert acc["descriptors"] > 0.95 and acc["embeddings"] < 0.5  # only the physical column separates
    sizes = result.folds.groupby("model")["n_test"].apply(list)
    assert sizes["descriptors"] == sizes["embeddings"] == sizes["hybrid"]


def test_plots(data):
    X, y, groups = data
    result = evaluate(models(), X, y, groups)
    assert plot_evaluation(result).patches
    assert plot_confusion(result.confusion["knn"]).images
