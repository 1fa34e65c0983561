"""The model stage's parts on their own: config sections, the OOD estimator, temperature
scaling, HybridFeatures' NaN reasons, parameter checks and the saved feature settings."""

from __future__ import annotations

import json
import tomllib

import numpy as np
import pandas as pd
import pytest

from hybridtmd.config import Config, ConfigError
from hybridtmd.io import AFMImage
from hybridtmd.model import HybridClassifier, HybridFeatures, KernelSVMHead, NearestNeighborOOD, default_head
from hybridtmd.model.calibration import apply_temperature, fit_temperature, log_probabilities
from hybridtmd.model.classifier import MODEL_FORMAT_VERSION
from hybridtmd.model.features import unlevelled_extractor


def _config(text: str) -> Config:
    return Config.from_dict(tomllib.loads(text), source="cfg.toml")


@pytest.mark.parametrize("text, match", [
    ("[model.xgboost]\nn_estimators = -5\n", r"cfg.toml: \[model.xgboost\] .*'n_estimators'.*got -5"),
    ("[model.xgboost]\nn_trees = 5\n", r"\[model.xgboost\] unknown XGBoost option 'n_trees'"),
    ("[model]\nood_quantile = 2.0\n", r"\[model\] .*'ood_quantile'"),
    ("[model]\nclassifier = \"forest\"\n", r"\[model\] .*'classifier'.*'svm'"),
    ("[model]\nneighbours = 3\n", r"\[model\] unknown model option 'neighbours'"),
    ("[model]\nxgboost = 3\n", r"\[model.xgboost\] must be a table"),
    ("[embeddings]\nbatchsize = 8\n", r"\[embeddings\] unknown CNNEmbedder option 'batchsize'"),
    ("[embeddings]\nenabled = \"no\"\n", r"\[embeddings\] enabled must be true or false"),
    ("[descriptors]\nblob = \"fast\"\n", r"\[descriptors\] .*'blob'"),
    ("[descriptors]\nfamilies = [\"nope\"]\n", r"\[descriptors\] .*'nope'"),
    ("[level]\nbackground_order = 9\n", r"\[level\] .*background_order"),
    ("[modell]\n", r"unknown section.*modell"),
])
def test_every_config_section_names_the_bad_key(text, match):
    with pytest.raises(ConfigError, match=match):
        _config(text)


def test_config_sections_build_the_classifier():
    config = _config('[descriptors]\nfamilies = ["areal"]\nblob_method = "paper"\n[embeddings]\nenabled = false\n'
                     '[model]\nood_neighbors = 3\nclass_weight = {MoS2 = 2.0, WSe2 = 1.0}\n'
                     '[model.xgboost]\nn_estimators = 20\n')
    assert Config.from_dict(config.to_dict(), source="cfg.toml") == config
    model = HybridClassifier.from_config(config)
    assert model.ood_neighbors == 3 and model.class_weight == {"MoS2": 2.0, "WSe2": 1.0}
    assert model.classifier.get_params()["n_estimators"] == 20
    assert model.features.embedder is None and model.features.descriptors.config.blob_method == "paper"
    assert model.features.descriptors.get_params()["families"] == ("areal",)


def test_a_config_with_embedding_pca_builds_the_classifier():
    # the config check asked an unfitted PCA for its column names: "CNNEmbedder instance is not fitted yet"
    model = HybridClassifier.from_config(_config("[embeddings]\npca_components = 3\n"))
    assert model.features.embedder.pca_components == 3
    with pytest.raises(ConfigError, match=r"\[embeddings\] .*nope"):
        HybridClassifier.from_config(_config('[embeddings]\nbackbone = "nope"\n'))


@pytest.fixture(scope="module")
def table():
    rng = np.random.default_rng(1)
    groups = np.repeat(np.arange(20), 2)
    y = np.where(groups % 2 == 0, "a", "b")
    X = pd.DataFrame(rng.normal(size=(40, 5)), columns=["phys__sq_nm", "phys__sa_nm", "latent__0000",
                                                          "latent__0001", "latent__0002"])
    X["phys__sq_nm"] += np.where(y == "a", -1.0, 1.0)
    return X, y, groups


def test_ood_estimator_is_what_the_classifier_uses(table):
    X, y, groups = table
    model = HybridClassifier(classifier=default_head(0, 1).set_params(n_estimators=10)).fit(X, y, groups=groups)
    ood = NearestNeighborOOD(5, 0.99).fit(X.to_numpy(), groups, block=np.array([0, 0, 1, 1, 1], bool))
    assert np.array_equal(ood.score(X.to_numpy()), model.ood_score(X))
    assert ood.threshold_ == model.ood_threshold_ == model.ood_.threshold_
    assert ood.is_outlier(X.to_numpy() + 50).all() and ood.is_outlier(X.to_numpy()).mean() <= 0.1
    with pytest.raises(ValueError, match="'n_neighbors'"):
        NearestNeighborOOD(n_neighbors=0).fit(X.to_numpy())


def test_feature_names_attribute(table):
    X, y, groups = table
    head = default_head(0, 1).set_params(n_estimators=5)
    assert HybridClassifier(classifier=head).fit(X, y).feature_names_ == list(X.columns)
    assert HybridClassifier(classifier=head).fit(X.to_numpy(), y).feature_names_ == [f"x{i}" for i in range(5)]


def test_temperature_scaling():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    proba = np.where(rng.random(200) < 0.7, y, 1 - y)[:, None] == np.arange(2)  # 70 % right, fully confident
    proba = np.clip(proba.astype(float), 0.01, 0.99)
    t = fit_temperature(log_probabilities(proba), y)
    assert t > 1  # overconfident: softened
    softened = apply_temperature(proba, t)
    assert np.allclose(softened.sum(axis=1), 1) and np.array_equal(softened.argmax(1), proba.argmax(1))
    assert np.allclose(apply_temperature(proba, 1.0), proba / proba.sum(axis=1, keepdims=True))


@pytest.mark.parametrize("params, match", [
    ({"ood_quantile": 0.0}, "'ood_quantile'"), ({"ood_neighbors": 0}, "'ood_neighbors'"),
    ({"calibration": "platt"}, "'calibration'"), ({"class_weight": "even"}, "'class_weight'"),
    ({"features": "mine"}, "'features'"),
])
def test_classifier_parameters_are_checked_at_fit(table, params, match):
    X, y, _ = table
    with pytest.raises(ValueError, match=match):
        HybridClassifier(**params).fit(X, y)


@pytest.mark.parametrize("params, match", [({"C_grid": ()}, "'C_grid'"), ({"gamma_grid": (0.0,)}, "'gamma_grid'"),
                                           ({"l2_normalize": "some"}, "'l2_normalize'"),
                                           ({"inner_folds": 0}, "'inner_folds'")])
def test_svm_head_parameters_are_checked_at_fit(table, params, match):
    X, y, _ = table
    with pytest.raises(ValueError, match=match):
        KernelSVMHead(**params).fit(X.to_numpy(), y)


def test_transform_with_reasons_names_table_columns_and_keeps_state():
    flat = AFMImage(np.zeros((64, 64)), (10.0, 10.0), source="flat")
    rough = AFMImage(np.random.default_rng(0).normal(size=(64, 64)), (10.0, 10.0), source="rough")
    features = HybridFeatures(descriptors=unlevelled_extractor("areal"), embedder=None, level_images=False)
    features.fit([rough])
    state = dict(vars(features))
    table, reasons = features.transform_with_reasons([rough, flat])
    assert vars(features).keys() == state.keys() and not hasattr(features, "reasons_")
    assert list(reasons.columns) == ["image", "source", "feature", "reason"]
    assert len(reasons) and set(reasons["image"]) == {1} and reasons["feature"].str.startswith("phys__").all()
    assert set(reasons["feature"]) <= set(table.columns)
    assert all(np.isnan(table.loc[1, f]) for f in reasons["feature"])
    pd.testing.assert_frame_equal(features.transform([rough, flat]), table)


def test_saved_features_use_level_images_and_old_manifests_load(table, tmp_path):
    images = [AFMImage(np.random.default_rng(i).normal(size=(32, 32)), (10.0, 10.0)) for i in range(8)]
    labels = ["a", "b"] * 4
    features = HybridFeatures(descriptors=unlevelled_extractor("areal"), embedder=None, level_images=False)
    model = HybridClassifier(features=features, classifier=default_head(0, 1).set_params(n_estimators=5),
                             ood_neighbors=None).fit(images, labels)
    model.save(tmp_path / "m")
    manifest = json.loads((tmp_path / "m" / "manifest.json").read_text())
    assert manifest["format_version"] == MODEL_FORMAT_VERSION and manifest["features"]["level_images"] is False
    settings = manifest["features"]
    old = {**settings, "level": True, "descriptors": {**settings["descriptors"], "level": True}}
    del old["level_images"], old["descriptors"]["level_images"]
    restored = HybridFeatures.from_settings(old)  # a manifest written before the rename
    assert restored.level_images is True
    assert restored.descriptors.get_params()[next(k for k in ("level_images", "level")
                                                  if k in restored.descriptors.get_params())] is True
    assert np.array_equal(HybridClassifier.load(tmp_path / "m").predict_proba(images), model.predict_proba(images))
