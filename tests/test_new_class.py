"""Issue 27: a new material learnt from 8 images - the discriminant head, ``auto``'s balanced
criterion for imbalanced classes, and ``add_classes`` / ``fit_continue`` on a fitted model."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from hybridtmd.evaluation import evaluate_low_data
from hybridtmd.model import HybridClassifier, KernelSVMHead
from hybridtmd.model.discriminant import DiscriminantHead
from hybridtmd.model.selection import selection_metric

D = 32


def embedding_table(seed: int, n_old: int = 40, per_sample: int = 3, new_train: int = 8, new_test_samples: int = 12):
    """Two old classes of ``n_old`` samples x 3 images and a new class with ``new_train``
    training images, ReLU-like embeddings sharing one anisotropic within-class shape (each
    sample its own offset); then test samples of all three. Returns the table, labels, groups
    and the training and test positions."""
    rng = np.random.default_rng(seed)
    shape = rng.normal(size=(D, D)) * np.r_[np.full(4, 3.0), np.ones(D - 4)][:, None]
    centres = rng.normal(size=(3, D)) * 3.0
    rows, labels, groups = [], [], []

    def add(label: int, n_samples: int, first_group: int) -> None:
        for s in range(n_samples):
            offset = rng.normal(size=D) @ shape * 0.2
            for _ in range(per_sample):
                rows.append(centres[label] + offset + rng.normal(size=D) @ shape * 0.5)
                labels.append("ABC"[label])
                groups.append(first_group + s)

    add(0, n_old, 0)
    add(1, n_old, 1000)
    add(2, new_train // per_sample + 1, 2000)
    n_train = len(rows)
    add(0, 10, 3000)
    add(1, 10, 4000)
    add(2, new_test_samples, 5000)
    X = pd.DataFrame(np.abs(np.array(rows)), columns=[f"latent__{i:04d}" for i in range(D)])
    y, groups = np.array(labels), np.array(groups)
    train = np.arange(n_train)
    train = np.r_[train[y[train] != "C"], train[y[train] == "C"][:new_train]]
    return X, y, groups, train, np.arange(n_train, len(y))


@pytest.fixture(scope="module")
def eight_new():
    return embedding_table(2)


@pytest.fixture(scope="module")
def default_model(eight_new):
    X, y, groups, train, _ = eight_new
    return HybridClassifier(features=None, ood_neighbors=None).fit(X.iloc[train], y[train], groups=groups[train])


def test_the_default_estimator_predicts_a_class_learnt_from_8_images(eight_new, default_model):
    """With 120 images of each old class and 8 of the new one, ``auto`` chooses the head by inner
    balanced accuracy over the old classes (the 8 images are too few for inner folds to judge)
    and the few-shot gate names the new class for some of its unseen samples (before: the
    SVM/stack won and never named it; this fails if the class is never predicted)."""
    X, y, groups, train, test = eight_new
    assert (y[train] == "C").sum() == 8
    record = default_model.head_selection_
    assert record["criterion"] == "mean inner balanced accuracy without the few-shot classes"
    assert "discriminant" in record["candidates"]
    assert record["few_shot_classes"] == ["C"]
    predicted = default_model.predict(X.iloc[test])
    newest = y[test] == "C"
    assert np.mean(predicted[newest] == "C") >= 0.15
    assert np.mean(predicted == y[test]) > 0.5
    without = HybridClassifier(features=None, ood_neighbors=None, few_shot=None).fit(
        X.iloc[train], y[train], groups=groups[train])
    assert without.head_selection_["criterion"] == "mean inner balanced accuracy"


def test_selection_metric_is_balanced_accuracy_only_for_imbalanced_classes():
    assert selection_metric(np.array([0] * 10 + [1] * 10)) == "accuracy"
    assert selection_metric(np.array([0] * 10 + [1] * 9 + [2] * 8)) == "accuracy"
    assert selection_metric(np.array([0] * 120 + [1] * 120 + [2] * 8)) == "balanced accuracy"


def test_discriminant_head_saves_without_pickle(eight_new, tmp_path):
    X, y, groups, train, test = eight_new
    model = HybridClassifier(features=None, classifier="discriminant").fit(X.iloc[train], y[train],
                                                                          groups=groups[train])
    assert isinstance(model.classifier_, DiscriminantHead)
    np.testing.assert_allclose(model.classifier_.priors_, 1 / 3)  # balanced class weights: equal priors
    directory = model.save(tmp_path / "m")
    assert json.loads((directory / "manifest.json").read_text())["head"] == "discriminant"
    loaded = HybridClassifier.load(directory)
    np.testing.assert_array_equal(loaded.predict_proba(X.iloc[test]), model.predict_proba(X.iloc[test]))
    unweighted = HybridClassifier(features=None, classifier="discriminant", class_weight=None,
                                  ood_neighbors=None).fit(X.iloc[train], y[train])
    np.testing.assert_allclose(unweighted.classifier_.priors_, np.bincount(np.unique(y[train], return_inverse=True)[1])
                               / len(train))


def test_add_classes_learns_a_new_class_without_refitting(eight_new, tmp_path):
    """A model of A and B learns C from its 8 images: the old class means and the covariance are
    kept, C's images join the OOD reference, and the model saves and loads with three classes."""
    X, y, groups, train, test = eight_new
    old = train[y[train] != "C"]
    new = train[y[train] == "C"]
    model = HybridClassifier(features=None, classifier="discriminant").fit(X.iloc[old], y[old], groups=groups[old])
    means, covariance = model.classifier_.means_.copy(), model.classifier_.covariance_.copy()
    n_reference = len(model.ood_.reference_)
    assert model.can_add_classes()
    model.add_classes(X.iloc[new], y[new], groups=groups[new])
    assert model.classes_.tolist() == ["A", "B", "C"]
    np.testing.assert_array_equal(model.classifier_.means_[:2], means)
    np.testing.assert_array_equal(model.classifier_.covariance_, covariance)
    assert len(model.ood_.reference_) == n_reference + 8
    assert model.training_summary_["class_counts"] == {"A": 120, "B": 120, "C": 8}
    assert model.training_summary_["added_classes"] == ["C"]
    predicted = model.predict(X.iloc[test])
    assert np.mean(predicted[y[test] == "C"] == "C") >= 0.25
    loaded = HybridClassifier.load(model.save(tmp_path / "m"))
    np.testing.assert_array_equal(loaded.predict(X.iloc[test]), predicted)
    with pytest.raises(ValueError, match="no class the model does not know"):
        model.add_classes(X.iloc[new], y[new])


def test_add_classes_needs_the_discriminant_head(eight_new):
    X, y, groups, train, _ = eight_new
    old = train[y[train] != "C"]
    svm = HybridClassifier(features=None, classifier="svm", ood_neighbors=None).fit(X.iloc[old], y[old])
    assert not svm.can_add_classes()
    with pytest.raises(ValueError, match="needs the discriminant head; this model's head is svm"):
        svm.add_classes(X.iloc[train], y[train])


def test_previous_variant_continues_the_discriminant_hybrid_only(eight_new):
    """The paper's ``previous`` variant: the discriminant hybrid adds the k-th class to the model
    of classes 1..k-1; heads that cannot add classes have no ``previous`` rows."""
    from sklearn.model_selection import StratifiedGroupKFold

    X, y, groups, _, _ = eight_new
    svm = KernelSVMHead(C_grid=(1.0,), gamma_grid=(1.0,))
    models = {"discriminant": HybridClassifier(features=None, classifier="discriminant", ood_neighbors=None),
              "svm": HybridClassifier(features=None, classifier=svm, ood_neighbors=None)}
    folds = evaluate_low_data(models, X, y, groups, caps=(8,), n_classes=(3,),
                              cv=StratifiedGroupKFold(3, shuffle=True, random_state=0)).folds
    previous = folds[folds["variant"] == "previous"]
    assert set(previous["model"]) == {"discriminant"} and set(previous["setting"]) == {"2-3", "2-3-8"}
    assert previous["newest_recall"].notna().all()


def test_the_few_shot_gate_makes_the_svm_name_a_class_of_8_images(eight_new, tmp_path):
    """The SVM head alone never names the class of 8 images on these samples; with the gate (the
    default ``few_shot``) it does, and the gated rows' probabilities agree with the label. The
    gate saves and loads with the model; a balanced table gets no gate."""
    X, y, groups, train, test = eight_new
    svm = KernelSVMHead(C_grid=(1.0, 10.0), gamma_grid=(1.0,))
    alone = HybridClassifier(features=None, classifier=svm, few_shot=None, ood_neighbors=None).fit(
        X.iloc[train], y[train], groups=groups[train])
    gated = HybridClassifier(features=None, classifier=svm, ood_neighbors=None).fit(
        X.iloc[train], y[train], groups=groups[train])
    newest = y[test] == "C"
    assert not (alone.predict(X.iloc[test]) == "C").any()
    predicted = gated.predict(X.iloc[test])
    assert np.mean(predicted[newest] == "C") >= 0.15
    assert np.mean(predicted == y[test]) >= np.mean(alone.predict(X.iloc[test]) == y[test])
    assert gated.head_selection_["few_shot_classes"] == ["C"]
    proba = gated.predict_proba(X.iloc[test])
    named = predicted == "C"
    np.testing.assert_array_equal(gated.classes_[proba[named].argmax(axis=1)], predicted[named])
    loaded = HybridClassifier.load(gated.save(tmp_path / "m"))
    np.testing.assert_array_equal(loaded.predict(X.iloc[test]), predicted)
    old = train[y[train] != "C"]
    assert HybridClassifier(features=None, classifier=svm, ood_neighbors=None).fit(
        X.iloc[old], y[old]).few_shot_ is None


def test_few_shot_mask_is_a_tenth_of_the_largest_class():
    from hybridtmd.model.discriminant import few_shot_mask

    assert few_shot_mask([120, 120, 8]).tolist() == [False, False, True]
    assert few_shot_mask([120, 12, 11]).tolist() == [False, False, True]
    assert not few_shot_mask([100, 40, 30]).any()


def test_distance_correction_is_half_the_noise_of_a_class_mean():
    """The discriminant's correction: with every image its own sample, a class mean of n images
    has ``v = tr(Σ⁻¹B) / n``, and the intercepts differ from the uncorrected head's by ``v / 2``
    (so the class of 8 images gains about 15x what a class of 120 gains)."""
    X, y, groups, train, _ = embedding_table(3)
    labels = np.unique(y[train], return_inverse=True)[1]
    plain = DiscriminantHead(distance_correction=False).fit(X.iloc[train].to_numpy(), labels)
    head = DiscriminantHead().fit(X.iloc[train].to_numpy(), labels)  # "few_shot": class 2 has 8 images
    assert head.distance_corrected_
    within, between = head.noise_traces_
    assert within == 0.0 and between > 0
    np.testing.assert_allclose(head.mean_noise_, between / np.bincount(labels), rtol=1e-9)
    np.testing.assert_allclose(head.intercept_ - plain.intercept_, head.mean_noise_ / 2, rtol=1e-9)
    assert head.mean_noise_[2] > 10 * head.mean_noise_[0]
    # images of one sample are not independent: the same 8 images as 2 samples of 4 are a noisier mean
    grouped = DiscriminantHead().fit(X.iloc[train].to_numpy(), labels, groups=groups[train])
    assert grouped.noise_traces_[0] > 0
    assert grouped.mean_noise([4, 4]) > grouped.mean_noise([1] * 8)


def test_svm_probabilities_of_a_class_without_out_of_fold_images_are_not_one_hot():
    """A class of one sample is in no inner test fold that trains on it, so Platt scaling cannot
    be fitted; the head then tempers its decision values instead of returning one-hot votes."""
    X, y, groups, train, test = embedding_table(4, new_train=3)
    one_sample = train[y[train] == "C"]
    assert len(np.unique(groups[one_sample])) == 1
    head = KernelSVMHead(C_grid=(1.0,), gamma_grid=(1.0,)).fit(X.iloc[train].to_numpy(), y[train],
                                                                groups=groups[train])
    assert head.calibration_coef_ is None and head.calibration_temperature_ > 0
    proba = head.predict_proba(X.iloc[test].to_numpy())
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    assert ((proba > 0.01) & (proba < 0.99)).any()


def test_inner_balanced_accuracy_leaves_out_the_few_shot_classes():
    from hybridtmd.model.selection import inner_score

    y_true = np.array([0, 0, 1, 1, 2])
    y_pred = np.array([0, 2, 1, 1, 0])
    assert inner_score("balanced accuracy", y_true, y_pred) == pytest.approx((0.5 + 1 + 0) / 3)
    # an old image called class 2 still counts against the head
    assert inner_score("balanced accuracy", y_true, y_pred, np.array([False, False, True])) == pytest.approx(0.75)


def test_distance_correction_waits_for_a_few_shot_class():
    """``distance_correction="few_shot"`` (the default) adds the correction only when a class has
    fewer than a tenth of the largest class's images: with classes of comparable size the head is
    the uncorrected one (it is a candidate of ``auto`` on every table)."""
    X, y, groups, train, _ = embedding_table(5, new_train=60)  # 63 images against 120: no few-shot class
    labels = np.unique(y[train], return_inverse=True)[1]
    Z = X.iloc[train].to_numpy()
    default = DiscriminantHead().fit(Z, labels, groups=groups[train])
    plain = DiscriminantHead(distance_correction=False).fit(Z, labels, groups=groups[train])
    forced = DiscriminantHead(distance_correction=True).fit(Z, labels, groups=groups[train])
    assert not default.distance_corrected_ and forced.distance_corrected_
    np.testing.assert_array_equal(default.intercept_, plain.intercept_)
    assert not np.allclose(forced.intercept_, plain.intercept_)
