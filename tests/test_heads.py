"""Issue 20: the stack head and ``classifier="auto"`` (head chosen by inner grouped CV)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from hybridtmd.errors import ModelFileError
from hybridtmd.model import HybridClassifier, KernelSVMHead, StackHead, default_head
from hybridtmd.model.columns import SVM_PROBA_PREFIX
from hybridtmd.model.selection import select_head
from hybridtmd.model.split_points import centre_splits


def small_xgb(seed: int = 0):
    return default_head(seed, n_jobs=1).set_params(n_estimators=15)


def small_svm(seed: int = 0, l2="all"):
    return KernelSVMHead(C_grid=(1.0, 10.0), gamma_grid=(1.0,), l2_normalize=l2, random_state=seed)


@pytest.fixture(scope="module")
def table():
    """Three classes; the embedding block separates them along a direction no single column
    does (what trees on single dimensions miss), one physical column helps a little."""
    rng = np.random.default_rng(1)
    n = 60
    y = np.array(["MoS2", "WS2", "WSe2"] * (n // 3))
    code = pd.Series(y).map({"MoS2": 0, "WS2": 1, "WSe2": 2}).to_numpy()
    latent = np.abs(rng.normal(size=(n, 6))) + 0.8 * np.eye(3)[code] @ rng.random((3, 6))
    X = pd.DataFrame(latent, columns=[f"latent__{i:04d}" for i in range(6)])
    X.insert(0, "phys__sq_nm", code * 0.3 + rng.normal(size=n))
    groups = np.repeat(np.arange(n // 2), 2)
    return X, y, groups


def test_stack_trains_xgboost_on_out_of_fold_svm_probabilities(table):
    X, y, groups = table
    Xa = X.to_numpy()
    stack = StackHead(latent_columns=list(range(1, 7)), svm=small_svm(), xgboost=small_xgb()).fit(Xa, y, groups=groups)
    assert stack.svm_.n_features_in_ == 6  # the SVM sees the embedding only
    oof = stack.svm_.oof_proba_
    in_sample = stack.svm_.predict_proba(Xa[:, 1:])
    assert oof.shape == (len(y), 3) and not np.allclose(oof, in_sample)  # never in-sample
    # the booster was trained on the out-of-fold probabilities: refitting XGBoost on them (and
    # centring its splits, as the stack does) reproduces it
    augmented = stack._augment(Xa, oof)
    refit = small_xgb().fit(augmented, np.unique(y, return_inverse=True)[1])
    centre_splits(refit, augmented)
    np.testing.assert_allclose(refit.predict_proba(stack.transform(Xa)), stack.predict_proba(Xa), rtol=1e-6)
    names = stack.get_feature_names_out(list(X.columns), ["MoS2", "WS2", "WSe2"])
    assert names[-3:] == [f"{SVM_PROBA_PREFIX}{c}" for c in ("MoS2", "WS2", "WSe2")]
    assert stack.transform(Xa).shape == (len(y), 10)


def test_stack_treeshap_is_exact_on_its_margin_and_svm_features_are_latent(table):
    import xgboost

    X, y, groups = table
    model = HybridClassifier(classifier=StackHead(svm=small_svm(), xgboost=small_xgb(),
                                                  latent_columns=list(range(1, 7)))).fit(X, y, groups=groups)
    head_table = model.classifier_.transform(model.transform_features(X).to_numpy())
    booster = model.classifier_.get_booster()
    matrix = xgboost.DMatrix(head_table, feature_names=None)
    contributions = booster.predict(matrix, pred_contribs=True)  # exact TreeSHAP, (n, classes, features + 1)
    margin = booster.predict(matrix, output_margin=True)
    np.testing.assert_allclose(contributions.sum(axis=-1), margin, rtol=1e-4, atol=1e-4)  # additivity
    assert model.head_feature_names_[-3:] == [f"latent_svm__p_{c}" for c in model.classes_]
    assert set(model.head_feature_groups_["latent"]) >= set(model.head_feature_names_[-3:])
    assert "latent_svm__p_MoS2" not in model.feature_groups_["latent"]  # the input table's groups stay as they are


def test_auto_chooses_by_inner_grouped_cv_and_records_it(table, tmp_path):
    X, y, groups = table
    candidates = [small_xgb(), small_svm(l2=tuple(range(1, 7))),
                  StackHead(svm=small_svm(), xgboost=small_xgb(), latent_columns=list(range(1, 7)))]
    model = HybridClassifier(classifier=candidates).fit(X, y, groups=groups)
    record = model.head_selection_
    assert record["candidates"] == ["XGBClassifier", "KernelSVMHead", "StackHead"]
    assert record["inner_folds"] == 2 and record["grouped_by"] == "sample"
    assert record["choice"] == max(record["mean"], key=record["mean"].get)
    assert type(model.classifier_).__name__ == record["choice"]
    for name in record["candidates"]:
        assert len(record["scores"][name]) == 2 and record["std"][name] >= 0 and record["fit_seconds"][name] > 0
    card = model.predict_frame(X.iloc[:2]).attrs["model_card"]
    assert card["head"] == record["choice"] and card["head_selection"]["mean"] == record["mean"]
    loaded = HybridClassifier.load(model.save(tmp_path / "m"))
    assert loaded.head_selection_ == json.loads(json.dumps(record))
    np.testing.assert_allclose(loaded.predict_proba(X), model.predict_proba(X), rtol=1e-6)


def test_selection_sees_training_rows_only(table):
    """The inner folds split the rows given, by their groups: no row outside them is touched."""
    X, y, groups = table
    y_enc = np.unique(y, return_inverse=True)[1]
    train = np.arange(40)
    record = select_head({"a": small_xgb(), "b": small_svm()}, X.to_numpy()[train], y_enc[train],
                         np.ones(40), groups[train], 3, 0)
    record_again = select_head({"a": small_xgb(), "b": small_svm()}, X.to_numpy()[train], y_enc[train],
                               np.ones(40), groups[train], 3, 0)
    assert record["scores"] == record_again["scores"]  # same seed, same choice
    changed = X.to_numpy().copy()
    changed[40:] = 0.0  # rows outside the training data cannot change the choice
    assert select_head({"a": small_xgb(), "b": small_svm()}, changed[train], y_enc[train], np.ones(40),
                       groups[train], 3, 0)["scores"] == record["scores"]


def test_default_is_auto_and_descriptor_only_tables_have_no_stack(table):
    X, y, groups = table
    assert HybridClassifier().classifier == "auto"
    phys = X[["phys__sq_nm"]].assign(phys__sa_nm=np.random.default_rng(0).normal(size=len(X)))
    from hybridtmd.model.selection import candidate_heads

    assert list(candidate_heads("auto", list(phys.columns), 0, 1)) == ["xgboost", "svm", "discriminant"]
    assert list(candidate_heads("auto", list(X.columns), 0, 1)) == ["xgboost", "svm", "stack", "discriminant"]
    with pytest.raises(ValueError, match="stack head needs embedding columns"):
        HybridClassifier(classifier="stack").fit(phys, y)


def test_too_few_samples_for_inner_folds_take_the_first_candidate():
    X = pd.DataFrame({"latent__0000": [0.0, 1.0, 0.1, 0.9], "latent__0001": [1.0, 0.0, 0.9, 0.1]})
    # two samples, one per class: no inner fold could train on both classes
    model = HybridClassifier(classifier=[small_xgb(), small_svm()], ood_neighbors=None).fit(
        X, ["a", "b", "a", "b"], groups=[0, 1, 0, 1])
    assert model.head_selection_["choice"] == "XGBClassifier"
    assert "fewer samples than the 2 folds" in model.head_selection_["reason"]


def test_a_user_head_in_the_list_can_win_but_cannot_be_saved(table, tmp_path):
    X, y, groups = table
    logistic = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500))
    model = HybridClassifier(classifier=[logistic, small_xgb()]).fit(X, y, groups=groups)
    assert model.head_selection_["candidates"] == ["Pipeline", "XGBClassifier"]
    if model.head_selection_["choice"] == "Pipeline":
        with pytest.raises(ModelFileError, match="without pickle"):
            model.save(tmp_path / "m")


def test_stack_saved_without_pickle_predicts_identically(table, tmp_path):
    X, y, groups = table
    model = HybridClassifier(classifier="stack").fit(X, y, groups=groups)
    directory = model.save(tmp_path / "m")
    manifest = json.loads((directory / "manifest.json").read_text())
    assert manifest["head"] == "stack" and manifest["params"]["classifier"] == "stack"
    loaded = HybridClassifier.load(directory)
    np.testing.assert_array_equal(loaded.predict_proba(X), model.predict_proba(X))
    assert loaded.head_feature_names_ == model.head_feature_names_
    assert loaded.get_params()["classifier"] == "stack"  # refitting chooses the same way


def test_explain_gives_exact_treeshap_for_the_stack_head(table):
    """explain / group_explanation on the stack: TreeSHAP of its trees' table (issue 20), values adding
    up to the margin, the SVM-probability columns summed into the latent group."""
    from hybridtmd.explanation import explain
    from hybridtmd.explanation.shapley import group_explanation

    X, y, groups = table
    model = HybridClassifier(classifier=StackHead(svm=small_svm(), xgboost=small_xgb(),
                                                  latent_columns=list(range(1, 7)))).fit(X, y, groups=groups)
    explanation = explain(model, X)
    assert list(explanation.feature_names) == model.head_feature_names_
    margin = model.classifier_.xgboost_.predict(model.classifier_.transform(X.to_numpy()), output_margin=True)
    np.testing.assert_allclose(explanation.values.sum(axis=1) + explanation.base_values, margin, atol=1e-4)
    grouped = group_explanation(model, X)
    assert grouped.method == "treeshap"
    latent = grouped.groups.values[:, list(grouped.groups.feature_names).index("latent")]
    members = [model.head_feature_names_.index(c) for c in model.head_feature_groups_["latent"]]
    assert any(model.head_feature_names_[i].startswith("latent_svm__p_") for i in members)
    np.testing.assert_allclose(latent, explanation.values[:, members].sum(axis=1), atol=1e-9)


def test_svm_head_on_few_samples_whose_inner_test_folds_hold_one_class():
    """Seven samples of two classes, two selection and calibration folds: the SVM's usable inner
    test folds held one class only and Platt scaling raised "needs samples of at least 2
    classes". The head now votes one-hot there, and ``auto`` trains."""
    import pandas as pd

    from hybridtmd.model import HybridClassifier

    rng = np.random.default_rng(0)
    groups = np.repeat(np.arange(7), 3)
    y = np.where(groups < 3, "a", "b")
    X = pd.DataFrame(rng.normal(size=(len(y), 6)),
                     columns=[f"phys__f{i}" for i in range(3)] + [f"latent__{i:04d}" for i in range(3)])
    for seed in range(4):
        model = HybridClassifier(features=None, selection_folds=2, calibration_folds=2, ood_neighbors=None,
                                 random_state=seed).fit(X, y, groups=groups)
        proba = model.predict_proba(X)
        assert proba.shape == (len(y), 2) and np.allclose(proba.sum(axis=1), 1.0)
