"""HybridFeatures and HybridClassifier: scikit-learn behaviour, image and table paths, OOD,
calibration, and model files that load without pickle."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.model_selection import GroupKFold, cross_val_score
from sklearn.utils.estimator_checks import parametrize_with_checks

from hybridtmd.descriptors import DescriptorExtractor
from hybridtmd.embeddings import CNNEmbedder
from hybridtmd.model import (
    FeatureMismatchError,
    HybridClassifier,
    HybridFeatures,
    KernelSVMHead,
    ModelFileError,
    default_head,
    latent_table,
)
from hybridtmd.model.columns import align_columns, feature_groups_from_columns
from hybridtmd.model.heads import power_l2_normalise


def small_head(seed: int = 0):
    head = default_head(seed, n_jobs=1)
    return head.set_params(n_estimators=30, learning_rate=0.3)


def _expected_failures(estimator):
    # integer sample weights equal repeated rows only for deterministic fitting; the XGBoost head
    # subsamples rows and columns at random (subsample=0.8, colsample_bytree=0.3) by design, and
    # the SVM head's inner folds split repeated rows differently from weighted ones
    return {"check_sample_weight_equivalence_on_dense_data": "randomised or fold-based fitting"}


@parametrize_with_checks([HybridClassifier(classifier=small_head()),
                          KernelSVMHead(C_grid=(1.0, 10.0), gamma_grid=(1.0,))],
                         expected_failed_checks=_expected_failures)
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


@pytest.fixture(scope="module")
def blobs():
    """Two well-separated classes in a table with physical and latent columns; 3 images/sample."""
    rng = np.random.default_rng(0)
    n = 60
    groups = np.repeat(np.arange(n // 3), 3)
    y = np.where(groups % 2 == 0, "MoS2", "WSe2")
    X = rng.normal(size=(n, 6))
    X[:, 0] += np.where(y == "MoS2", -3.0, 3.0)
    cols = ["phys__sq_nm", "phys__grain_density_per_um2", "latent__0000", "latent__0001", "latent__0002",
            "latent__0003"]
    return pd.DataFrame(X, columns=cols), y, groups


def test_table_path_string_labels_and_groups(blobs):
    X, y, groups = blobs
    model = HybridClassifier(classifier=small_head()).fit(X, y, groups=groups)
    assert list(model.classes_) == ["MoS2", "WSe2"]
    assert model.predict(X).dtype.kind == "U" and model.score(X, y) > 0.95
    assert list(model.feature_names_in_) == list(X.columns)
    assert model.feature_groups_ == {"areal": ["phys__sq_nm"], "grains": ["phys__grain_density_per_um2"],
                                     "latent": [c for c in X.columns if c.startswith("latent__")]}
    proba = model.predict_proba(X)
    assert proba.shape == (len(X), 2) and np.allclose(proba.sum(axis=1), 1)
    # works in GroupKFold cross-validation and with clone
    scores = cross_val_score(HybridClassifier(classifier=small_head()), X, y, groups=groups, cv=GroupKFold(3))
    assert scores.mean() > 0.9
    assert clone(model).get_params()["classifier"].get_params()["n_estimators"] == 30


def test_balanced_class_weights_change_the_fit(blobs):
    X, y, groups = blobs
    keep = np.r_[np.flatnonzero(y == "MoS2"), np.flatnonzero(y == "WSe2")[:6]]
    Xi, yi = X.iloc[keep].copy(), y[keep]
    Xi.iloc[:, 0] = np.random.default_rng(1).normal(size=len(keep))  # overlap: weights now matter
    def proba(class_weight):
        model = HybridClassifier(classifier=small_head(), class_weight=class_weight, ood_neighbors=None)
        return model.fit(Xi, yi).predict_proba(Xi)

    p_bal, p_none = proba("balanced"), proba(None)
    # upweighting the rare class raises its mean probability
    assert p_bal[:, 1].mean() > p_none[:, 1].mean() + 0.02


def test_columns_are_aligned_by_name_at_predict(blobs):
    X, y, groups = blobs
    model = HybridClassifier(classifier=small_head()).fit(X, y, groups=groups)
    reordered = X[X.columns[::-1]]
    assert np.array_equal(model.predict_proba(reordered), model.predict_proba(X))
    with pytest.warns(UserWarning, match="does not use"):
        model.predict(X.assign(extra=1.0))
    with pytest.raises(FeatureMismatchError, match="phys__sq_nm"):
        model.predict(X.drop(columns="phys__sq_nm"))
    with pytest.raises(FeatureMismatchError):
        align_columns(X, ["nope"])


def test_out_of_distribution_flags_far_images(blobs):
    X, y, groups = blobs
    model = HybridClassifier(classifier=small_head()).fit(X, y, groups=groups)
    inside = model.is_out_of_distribution(X).mean()
    assert inside <= 0.1  # threshold is the 99 % quantile of leave-sample-out scores
    far = X + 25.0
    assert model.is_out_of_distribution(far).all()
    frame = model.predict_frame(far)
    assert frame["out_of_distribution"].all() and {"label", "confidence", "p_MoS2", "p_WSe2"} <= set(frame)


def test_temperature_scaling_keeps_predictions(blobs):
    X, y, groups = blobs
    X = X.copy()
    X.iloc[:, 0] = X.iloc[:, 0] / 3  # overlapping classes: overconfident trees get T > 1
    plain = HybridClassifier(classifier=small_head(), ood_neighbors=None).fit(X, y, groups=groups)
    calibrated = HybridClassifier(classifier=small_head(), ood_neighbors=None, calibration="temperature").fit(
        X, y, groups=groups)
    assert calibrated.temperature_ > 0 and calibrated.temperature_ != 1.0
    assert np.array_equal(plain.predict(X), calibrated.predict(X))
    assert not np.allclose(plain.predict_proba(X), calibrated.predict_proba(X))


def test_feature_groups_from_names_and_latent_table():
    groups = feature_groups_from_columns(["phys__sq_nm", "phys__my_own", "latent__0001", "age"])
    assert groups == {"areal": ["phys__sq_nm"], "physical": ["phys__my_own"], "latent": ["latent__0001"],
                      "other": ["age"]}
    table = latent_table(np.zeros((3, 12)))
    assert list(table.columns[:2]) == ["latent__0000", "latent__0001"]


@pytest.fixture(scope="module")
def tiny_images():
    from hybridtmd.datasets import make_synthetic_dataset

    data = make_synthetic_dataset(n_samples=12, images_per_sample=2, size_px=64, materials=["MoS2", "WSe2"], seed=3)
    return data.images, data.labels, data.groups


def test_hybrid_features_names_groups_and_halves(tiny_images):
    images, _, _ = tiny_images
    features = HybridFeatures(descriptors=DescriptorExtractor(families=["areal", "grains"], level_images=False),
                              embedder=CNNEmbedder(input_size=64, device="cpu"))
    table = features.fit_transform(images[:4])
    assert table.shape[0] == 4
    assert list(table.columns) == list(features.get_feature_names_out())
    assert table.columns[0].startswith("phys__") and table.columns[-1] == "latent__1279"
    assert set(features.feature_groups_) == {"areal", "grains", "latent"}
    assert features.feature_units_["phys__sq_nm"] == "nm"
    assert np.allclose(features.transform(images[:4]).to_numpy(), table.to_numpy(), equal_nan=True)
    only_phys = HybridFeatures(descriptors=DescriptorExtractor(families="areal", level_images=False), embedder=None)
    assert all(c.startswith("phys__") for c in only_phys.fit_transform(images[:2]).columns)
    with pytest.raises(ValueError, match="both are None"):
        HybridFeatures(descriptors=None, embedder=None).fit(images[:2])


def test_image_path_save_load_round_trip(tiny_images, tmp_path):
    images, labels, groups = tiny_images
    features = HybridFeatures(descriptors=DescriptorExtractor(families=["areal", "spectral"], level_images=False),
                              embedder=CNNEmbedder(input_size=64, device="cpu"))
    model = HybridClassifier(features=features, classifier=small_head(), calibration="temperature",
                             calibration_folds=3).fit(images, labels, groups=groups)
    assert model.features_ is not None and model.n_features_in_ == 9 + 7 + 1280  # spectral: 7 by default (issue 19)
    before = model.predict_frame(images)
    model.save(tmp_path / "m", metrics={"accuracy": 0.5})
    assert not list((tmp_path / "m").glob("*.pkl"))
    loaded = HybridClassifier.load(tmp_path / "m")
    after = loaded.predict_frame(images)
    pd.testing.assert_frame_equal(before, after)
    assert loaded.metrics_ == {"accuracy": 0.5}
    # the same model predicts from its own feature table (cached features)
    table = model.transform_features(images)
    assert np.array_equal(loaded.predict(table), model.predict(images))

    manifest = tmp_path / "m" / "manifest.json"
    data = json.loads(manifest.read_text())
    (tmp_path / "m" / "classifier.json").write_text((tmp_path / "m" / "classifier.json").read_text() + " ")
    with pytest.raises(ModelFileError, match="classifier.json"):
        HybridClassifier.load(tmp_path / "m")
    manifest.write_text(json.dumps({**data, "format_version": 999}))
    with pytest.raises(ModelFileError, match="newer"):
        HybridClassifier.load(tmp_path / "m")
    manifest.unlink()
    with pytest.raises(ModelFileError, match="manifest.json"):
        HybridClassifier.load(tmp_path / "m")


def test_images_to_table_only_model_is_a_clear_error(tiny_images, blobs):
    images, labels, _ = tiny_images
    X, y, groups = blobs
    with pytest.raises(TypeError, match="features=None"):
        HybridClassifier(features=None).fit(images, labels)
    model = HybridClassifier(classifier=small_head()).fit(X, y)
    with pytest.raises(TypeError, match="feature table"):
        model.predict(images)


@pytest.mark.parametrize("n_classes", [2, 4])
def test_svm_head_arrays_reproduce_scikit_learn(n_classes):
    """The fitted head keeps only arrays; its decision values and probabilities equal those of the
    scikit-learn pipeline and logistic calibrator they came from."""
    from sklearn.datasets import make_classification
    from sklearn.linear_model import LogisticRegression

    X, y = make_classification(160, 12, n_informative=6, n_classes=n_classes, random_state=n_classes)
    X[::13, 2] = np.nan
    head = KernelSVMHead(C_grid=(1.0, 10.0), gamma_grid=(1.0,)).fit(X, y, groups=np.arange(len(y)) // 2)
    pipeline = head._pipeline((head.best_C_, head.best_gamma_factor_)).fit(X, y)
    assert np.allclose(head.decision_function(X), pipeline.decision_function(X), atol=1e-9)
    reference = pipeline.decision_function(X).reshape(len(X), -1)
    assert np.array_equal(head.predict(X), head.classes_[head._vote(reference)])
    calibrator = LogisticRegression(max_iter=1000).fit(reference, y)
    head.calibration_coef_, head.calibration_intercept_ = calibrator.coef_, calibrator.intercept_
    head.calibration_classes_ = calibrator.classes_
    assert np.allclose(head.predict_proba(X), calibrator.predict_proba(reference), atol=1e-9)


def test_svm_head_saves_without_pickle(blobs, tmp_path):
    X, y, groups = blobs
    model = HybridClassifier(classifier="svm").fit(X, y, groups=groups)
    model.save(tmp_path / "svm")
    manifest = json.loads((tmp_path / "svm" / "manifest.json").read_text())
    assert manifest["head"] == "kernel_svm"
    loaded = HybridClassifier.load(tmp_path / "svm")
    assert np.array_equal(loaded.predict_proba(X), model.predict_proba(X))
    assert np.array_equal(loaded.ood_score(X), model.ood_score(X))
    assert loaded.classifier_.best_C_ == model.classifier_.best_C_
    assert clone(loaded).fit(X, y, groups=groups).classifier_.cv_scores_ == model.classifier_.cv_scores_
    # a head file that is not the head's JSON is named in the error
    (tmp_path / "svm" / "classifier.json").write_text("{}")
    manifest["files"]["classifier.json"] = __import__("hashlib").sha256(b"{}").hexdigest()
    from corpus.tampering import write_forged

    write_forged(tmp_path / "svm", manifest)  # as a forger would
    with pytest.raises(ModelFileError, match="classifier.json.*kernel-SVM"):
        HybridClassifier.load(tmp_path / "svm")


def test_power_l2_normalise_scales_only_the_embedding_block():
    X = np.array([[4.0, 9.0, 3.0, 4.0], [-16.0, 0.0, 0.0, 0.0]])
    Z = power_l2_normalise(X, np.array([1, 2, 3]))
    assert np.allclose(Z[:, 0], [2.0, -4.0])  # outside the block: signed square root only
    assert np.allclose(Z[0, 1:], np.array([3.0, np.sqrt(3.0), 2.0]) / 4.0)  # sqrt, then unit norm (|.| = 4)
    assert np.allclose(Z[1, 1:], 0.0)  # an all-zero block stays zero instead of dividing by zero
    assert np.allclose(power_l2_normalise(X, np.zeros(0, int)), np.sign(X) * np.sqrt(np.abs(X)))


def test_svm_head_l2_normalises_the_latent_columns(blobs):
    X, y, groups = blobs
    model = HybridClassifier(classifier="svm", ood_neighbors=None).fit(X, y, groups=groups)
    assert model.classifier_.l2_columns_.tolist() == [2, 3, 4, 5]  # the latent__ columns, not phys__
    # a per-image rescaling of the embedding changes nothing; of a physical column it does
    scaled = X.copy()
    scaled.iloc[:, 2:] *= 7.0
    assert np.allclose(model.predict_proba(scaled), model.predict_proba(X))
    scaled.iloc[:, 0] *= 7.0
    assert not np.allclose(model.predict_proba(scaled), model.predict_proba(X))
    assert KernelSVMHead().fit(X.to_numpy(), y).l2_columns_.tolist() == list(range(6))
    assert KernelSVMHead(l2_normalize=None).fit(X.to_numpy(), y).l2_columns_.size == 0
    with pytest.raises(ValueError, match="l2_normalize"):
        KernelSVMHead(l2_normalize=[0, 9]).fit(X.to_numpy(), y)
    # a head saved before l2_normalize existed (no l2_columns_ array) loads as square root only
    settings, arrays = model.classifier_.to_state()
    del settings["params"]["l2_normalize"], arrays["l2_columns_"]
    assert KernelSVMHead.from_state(settings, arrays).l2_columns_.size == 0


def test_same_seed_same_predictions(blobs):
    X, y, groups = blobs
    a = HybridClassifier(random_state=3).fit(X, y, groups=groups).predict_proba(X)
    b = HybridClassifier(random_state=3).fit(X, y, groups=groups).predict_proba(X)
    assert np.array_equal(a, b)


def test_svm_head_tunes_C_on_inner_grouped_folds(blobs):
    X, y, groups = blobs
    model = HybridClassifier(classifier="svm", ood_neighbors=None).fit(X, y, groups=groups)
    head = model.classifier_
    assert head.best_C_ in head.C_grid and len(head.cv_scores_) == len(head.C_grid) * len(head.gamma_grid)
    assert model.score(X, y) > 0.95
    proba = model.predict_proba(X)
    assert np.allclose(proba.sum(axis=1), 1) and (proba.argmax(axis=1) == (y == "WSe2")).mean() > 0.9
    with pytest.raises(ValueError, match="'svm'"):
        HybridClassifier(classifier="forest").fit(X, y)
