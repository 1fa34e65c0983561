"""Issue 17/16 regressions: the evaluation's feature cache key, batch-invariant embeddings, the
sequential fine-tune's validation split, compare's per-fold feature fitting, the device plan."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from hybridtmd.baseline import FineTuneClassifier
from hybridtmd.baseline.network import DevicePlan, torch_settings
from hybridtmd.datasets import make_synthetic_dataset
from hybridtmd.embeddings import CNNEmbedder
from hybridtmd.evaluation.cv import model_inputs
from hybridtmd.model import HybridClassifier, HybridFeatures
from hybridtmd.model.features import unlevelled_extractor
from hybridtmd.preprocess import LevelConfig, Preprocessor

SMALL = {"backbone": "efficientnet_lite0", "input_size": 32, "batch_size": 8, "epochs": 1, "progress": False,
         "n_threads": 1}


@pytest.fixture(scope="module")
def images():
    d = make_synthetic_dataset(n_samples=12, images_per_sample=2, size_px=48,
                               materials=["MoS2", "WS2", "WSe2"], seed=5)
    return Preprocessor().fit_transform(d.images), d.labels, d.groups


class ElidedRepr(HybridFeatures):
    """scikit-learn elides the middle of long reprs: two configurations, one repr."""

    def __repr__(self, N_CHAR_MAX: int = 700) -> str:  # noqa: N803 (scikit-learn's signature)
        return "HybridFeatures(...)"


def test_feature_cache_is_keyed_on_all_nested_parameters(images):
    X, y, _ = images
    X = X[:4]
    one = ElidedRepr(descriptors=None, embedder=CNNEmbedder(input_size=32, batch_size=4),
                     level_config=LevelConfig(row_order=1))
    two = ElidedRepr(descriptors=None, embedder=CNNEmbedder(input_size=48, batch_size=4),
                     level_config=LevelConfig(row_order=1))
    assert repr(one) == repr(two)
    inputs = model_inputs({"a": HybridClassifier(features=one), "b": HybridClassifier(features=two)}, X)
    assert not inputs["a"][1].equals(inputs["b"][1])  # each model is scored on its own table


def test_embedding_does_not_depend_on_the_rest_of_the_batch(images):
    X, _, _ = images
    embedder = CNNEmbedder(input_size=32, batch_size=8, device="cpu")
    alone = embedder.transform([X[3]]).to_numpy()
    for batch in (X[:5], X[:8], X[:13]):
        together = embedder.transform(list(batch)).to_numpy()[3]
        np.testing.assert_array_equal(together, alone[0])


def test_sequential_validation_samples_were_never_trained_on(images):
    """Stage k's validation samples must not have been training samples of an earlier stage."""
    X, y, groups = images
    X = np.array(X, dtype=object)
    clf = FineTuneClassifier(**SMALL, frozen=True, validation_fraction=0.4, random_state=3)
    trained: set = set()
    for k in (2, 3):
        keep = np.isin(y, ["WS2", "WSe2", "MoS2"][:k])  # the new class sorts first: the old split shifted
        clf.fit_continue(list(X[keep]), y[keep], groups[keep])
        val_groups = set(groups[keep][clf.validation_indices_])
        train_groups = set(groups[keep]) - val_groups
        assert not val_groups & trained, f"stage {k}: validation samples trained on before"
        trained |= train_groups


def test_compare_fits_learnt_features_inside_training_folds(images, monkeypatch):
    """An embedder PCA must never see a test fold: compare fits it on each training fold only."""
    from sklearn.model_selection import StratifiedGroupKFold

    from hybridtmd.evaluation import compare
    from hybridtmd.splits import split_limit

    X, y, groups = images
    seen: list[int] = []
    original = CNNEmbedder._fit

    def spy(self, images_):
        if self.pca_components is not None:
            seen.append(len(images_))
        return original(self, images_)

    monkeypatch.setattr(CNNEmbedder, "_fit", spy)
    embedder = CNNEmbedder(input_size=32, batch_size=8, pca_components=3)
    features = HybridFeatures(descriptors=unlevelled_extractor(["areal"]), embedder=embedder)
    hybrid = HybridClassifier(features=features, ood_neighbors=None, n_jobs=1)
    cv = split_limit(StratifiedGroupKFold(3, shuffle=True), 1)
    result = compare(X, y, groups, hybrid=hybrid, fine_tune=FineTuneClassifier(**SMALL, frozen=True), cv=cv,
                     same_input_size=True)
    n_train = int(result.folds.query("model == 'hybrid'")["n_train"].iloc[0])
    assert seen and max(seen) <= n_train < len(X)
    assert set(result.folds["model"]) == {"hybrid", "descriptors", "embeddings", "fine-tune"}
    # issue 33: the comparison reports its own time and each arm's (fit + predict over its folds)
    from hybridtmd.evaluation.compare import arm_seconds
    from hybridtmd.reporting.evaluation import time_line

    arms = arm_seconds(result)
    assert list(arms) == ["hybrid", "descriptors", "embeddings", "fine-tune"] and all(v > 0 for v in arms.values())
    assert arms["hybrid"] > arms["descriptors"]  # the hybrid pays for both halves' features
    line = time_line(result, seconds=12.34)
    assert line.startswith("Time: 12.3 s wall in all; per arm") and f"fine-tune {arms['fine-tune']:.1f} s" in line


def test_device_plan_dispatch_without_a_gpu():
    """The CUDA path is chosen from the device string alone; checked here on a CPU machine."""
    import torch

    cuda, cpu = DevicePlan("cuda:0", amp="fp16", channels_last=True), DevicePlan("cpu")
    assert cuda.is_cuda and cuda.resident and not cpu.is_cuda and not cpu.resident
    x = torch.zeros(2, 3, 8, 8)
    assert cpu.inputs(x) is x and cpu.move(x) is x  # nothing copied on CPU
    assert DevicePlan("cpu", channels_last=True).inputs(x).is_contiguous(memory_format=torch.channels_last)
    assert isinstance(DevicePlan("cpu", amp="bf16").autocast(), torch.autocast)
    assert cpu.grad_scaler() is None and DevicePlan("cpu", amp="fp16").grad_scaler() is None
    if not torch.cuda.is_available():
        with pytest.raises((RuntimeError, AssertionError)):
            cuda.inputs(x)  # really dispatches to CUDA


def test_seeded_cuda_run_sets_the_cublas_workspace(monkeypatch):
    import torch

    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.random, "fork_rng", lambda devices: __import__("contextlib").nullcontext())
    with torch_settings(None, seed=0, device="cuda"):
        import os

        assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"


def test_multilabel_head_trains_on_elements_and_predicts_materials(images):
    X, y, groups = images
    clf = FineTuneClassifier(**SMALL, multilabel=True, selection="macro_f1", min_steps=4).fit(X, y, groups)
    assert clf.elements_ == ["Mo", "S", "W", "Se"]
    assert clf.model_.head[-1].out_features == 4
    proba = clf.predict_proba(X)
    assert proba.shape == (len(X), 3) and np.allclose(proba.sum(1), 1)
    assert sum(s["n_steps"] for s in clf.stages_) >= 4  # min_steps extends the one-epoch budget
    assert set(clf.predict(X)) <= set(clf.classes_)
    assert isinstance(pd.DataFrame(clf.history_), pd.DataFrame)


def test_pool_samples_mean_log_probability():
    from hybridtmd.model.samples import pool_samples, sample_accuracy

    proba = np.array([[0.9, 0.1], [0.4, 0.6], [0.2, 0.8], [0.99, 0.01]])
    frame = pool_samples(proba, ["s1", "s1", "s2", "s2"], np.array(["a", "b"]))
    p1 = np.exp(np.log([0.9, 0.1]) / 2 + np.log([0.4, 0.6]) / 2)
    assert frame.loc["s1", "p_a"] == pytest.approx(p1[0] / p1.sum())
    assert frame.loc["s1", "label"] == "a" and frame.loc["s1", "agreement"] == 0.5
    # a confident image outweighs a hesitant one (the product rule), unlike a mean of probabilities
    assert frame.loc["s2", "label"] == "a" and list(frame["n_images"]) == [2, 2]
    assert sample_accuracy(["a", "a", "b", "b"], ["s1", "s1", "s2", "s2"], frame) == 0.5


def test_permutation_is_between_samples_and_paired_differences_are_corrected():
    from sklearn.dummy import DummyClassifier
    from sklearn.neighbors import KNeighborsClassifier

    from hybridtmd.evaluation import evaluate, paired_differences, permutation_test
    from hybridtmd.evaluation.significance import permute_between_samples

    rng = np.random.default_rng(0)
    groups = np.repeat(np.arange(30), 2)
    y = np.array(["a", "b", "c"])[groups % 3]
    perm = permute_between_samples(y, groups, rng)
    assert all(len(set(perm[groups == g])) == 1 for g in range(30))  # a sample keeps one label
    assert sorted(perm) == sorted(y)
    X = pd.DataFrame({"x": (groups % 3) * 3.0 + rng.normal(size=60)})
    test = permutation_test(KNeighborsClassifier(3), X, y, groups, n_permutations=9)
    assert test["observed"] > 0.8 and test["p_value"] == pytest.approx(0.1) and test["null_mean"] < 0.6
    result = evaluate({"knn": KNeighborsClassifier(3), "dummy": DummyClassifier()}, X, y, groups, n_repeats=2)
    paired = paired_differences(result)
    row = paired.iloc[0]
    assert (row["model_a"], row["model_b"]) == ("knn", "dummy") and row["n_folds"] == 10
    diff = result.folds.pivot_table(index=["repeat", "fold"], columns="model", values="accuracy")
    d = (diff["knn"] - diff["dummy"]).to_numpy()
    naive_se = d.std(ddof=1) / np.sqrt(10)
    assert row["mean_difference"] == pytest.approx(d.mean())
    assert (row["ci_high"] - row["ci_low"]) / 2 > 2.26 * naive_se  # the correction widens the interval
    assert "sample_accuracy" in result.folds and (result.folds["n_test_samples"] < result.folds["n_test"]).all()


def test_evaluation_report_has_sample_accuracy_permutation_and_paired_differences(tmp_path):
    from sklearn.neighbors import KNeighborsClassifier

    from hybridtmd.evaluation import ablation
    from hybridtmd.reporting.evaluation import write_evaluation_report

    rng = np.random.default_rng(1)
    groups = np.repeat(np.arange(20), 2)
    y = np.array(["a", "b"])[groups % 2]
    table = pd.DataFrame({"phys__h": (groups % 2) * 2.0 + rng.normal(size=40), "latent__0": rng.normal(size=40)})
    result = ablation(KNeighborsClassifier(3), table, y, groups)
    perm = {"observed": 0.9, "null_mean": 0.5, "null_std": 0.1, "p_value": 0.05, "n_permutations": 19}
    summary = write_evaluation_report({"hybrid": result}, tmp_path, title="t", protocol="p",
                                      permutation=perm).read_text()
    assert "sample_accuracy" in summary and "p = 0.05" in summary and "Nadeau & Bengio" in summary
    paired = pd.read_csv(tmp_path / "hybrid_paired.csv")
    assert {"mean_difference", "ci_low", "ci_high", "p_value"} <= set(paired.columns) and len(paired) == 3
    assert "sample_accuracy" in pd.read_csv(tmp_path / "hybrid_folds.csv")


def test_permutations_keep_the_classes_of_every_training_fold():
    """Found on four real instrument files: a permuted labelling left a training fold with one class
    and the refit crashed. Permutations keep each training fold's classes, so every fold refits."""
    from hybridtmd.evaluation.significance import fold_compatible_permutation

    y = np.repeat(["A", "B"], 4)
    groups = np.arange(8)
    splits = [(np.array([0, 1, 4, 5]), np.array([2, 3, 6, 7])), (np.array([2, 3, 6, 7]), np.array([0, 1, 4, 5]))]
    rng = np.random.default_rng(0)
    for _ in range(20):
        permuted = fold_compatible_permutation(y, groups, splits, rng)
        assert sorted(permuted) == sorted(y)
        assert all(set(permuted[train]) == {"A", "B"} for train, _ in splits)
    # eight one-sample classes, leave-one-out folds: only the real labelling keeps every fold's classes
    y8, all_samples = np.array(list("ABCDEFGH")), np.arange(8)
    loo = [(np.delete(all_samples, i), np.array([i])) for i in range(8)]
    with pytest.raises(ValueError, match="too few samples for a permutation test"):
        fold_compatible_permutation(y8, all_samples, loo, np.random.default_rng(0))


def permutation_data():
    rng = np.random.default_rng(3)
    groups = np.repeat(np.arange(24), 2)
    y = np.array(["a", "b", "c"])[groups % 3]
    X = pd.DataFrame({"x": (groups % 3) * 1.0 + rng.normal(size=48)})
    return X, y, groups


def test_permutation_test_reuses_observed_folds_and_is_parallel_as_serial():
    """Issue 33: the evaluate command already has the real-label folds of the hybrid; the test
    takes them instead of refitting (only the permutations are fitted, counted by the progress
    listener), and its permutations in parallel give exactly the serial result for a seed."""
    from sklearn.model_selection import StratifiedGroupKFold
    from sklearn.neighbors import KNeighborsClassifier

    from hybridtmd.evaluation import evaluate, permutation_test
    from hybridtmd.evaluation.cv import counting_fits

    X, y, groups = permutation_data()
    knn, cv = KNeighborsClassifier(5), StratifiedGroupKFold(3, shuffle=True)
    serial = permutation_test(knn, X, y, groups, n_permutations=4, cv=cv, random_state=2)
    observed = evaluate({"knn": knn}, X, y, groups, cv=cv, random_state=2).folds
    fits = []
    with counting_fits(fits.append):
        reused = permutation_test(knn, X, y, groups, n_permutations=4, cv=cv, random_state=2, observed=observed)
    assert reused == serial and sum(fits) == 4 * 3  # the permutations' fits only: the observed ones reused
    assert len(set(serial.values())) > 2  # a real result (observed, null mean and std, p differ)
    for backend in ("loky", "threading"):
        fits = []
        with counting_fits(fits.append):
            assert permutation_test(knn, X, y, groups, n_permutations=4, cv=cv, random_state=2, n_jobs=2,
                                    backend=backend, observed=observed) == serial
        assert sum(fits) == 4 * 3  # the workers' fits counted by the caller
    with pytest.raises(ValueError, match="3 fold rows that are not the 4 folds drawn here"):
        permutation_test(knn, X, y, groups, n_permutations=2, cv=StratifiedGroupKFold(4, shuffle=True),
                         random_state=2, observed=observed)


def test_fold_scores_do_not_warn_when_a_prediction_names_a_class_absent_from_the_fold():
    """Issue 33: every fold whose predictions named a class its test images lack printed
    scikit-learn's "y_pred contains classes not in y_true"; the balanced accuracy is the same
    (mean recall of the classes present), without the warning."""
    import warnings

    from sklearn.metrics import balanced_accuracy_score

    from hybridtmd.evaluation.cv import score_fold

    y_true, y_pred = np.array(["a", "a", "b", "b"]), np.array(["a", "c", "b", "a"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = balanced_accuracy_score(y_true, y_pred)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        row = score_fold(y_true, y_pred, np.array(["a", "b", "c"]))
    assert row["balanced_accuracy"] == pytest.approx(expected) and row["balanced_accuracy"] == pytest.approx(0.5)
    assert np.isnan(row["recall[c]"])


def test_progress_bar_stages_are_lines_in_a_log(capsys):
    """Issue 33: off a terminal each stage of a long command is one line (done / total, seconds);
    a stage that counted nothing (the opening title) leaves none; show=False prints nothing."""
    from hybridtmd._utils.progress import ProgressBar

    with ProgressBar(True, None, "evaluate") as bar:
        bar.stage("cross-validation", 3)
        bar.advance(3)
        bar.stage("permutation test", 10)
        bar.advance(4)
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 2 and lines[0].startswith("cross-validation: 3/3 in ")
    assert lines[1].startswith("permutation test: 4/10 in ") and lines[1].endswith(" s")
    with ProgressBar(False, None, "evaluate") as bar:
        bar.stage("cross-validation", 3)
        bar.advance(3)
    assert capsys.readouterr().err == ""
    with ProgressBar(True, None, "evaluate", lines=False) as bar:  # rich's bars: one per stage, the title gone
        bar.stage("cross-validation", 3)
        bar.advance(3)
        bar.stage("permutation test", 10)
        assert [task.description for task in bar._bar.tasks] == ["cross-validation", "permutation test"]


def test_fixed_test_split_is_the_papers():
    """The paper's protocol: the _test images are the test side of every split; each split trains
    on all other folds but one (the paper's validation fold), by sample."""
    from hybridtmd.splits import FixedTestSplit, GroupLeakError, grouped_splits

    groups = np.repeat(np.arange(30), 2)
    y = np.array(["a", "b", "c"])[groups % 3]
    splits = np.where(groups < 6, "test", "train")
    folds = grouped_splits(y, groups, FixedTestSplit(splits, n_splits=4))
    test = np.flatnonzero(splits == "test")
    assert len(folds) == 4
    left_out = []
    for fold in folds:
        assert np.array_equal(fold.test, test)
        assert not set(groups[fold.train]) & set(groups[test])
        left_out.append(np.setdiff1d(np.flatnonzero(splits != "test"), fold.train))
    # every non-test image is left out (the validation fold) exactly once, whole samples at a time
    assert np.array_equal(np.sort(np.concatenate(left_out)), np.flatnonzero(splits != "test"))
    assert all(not set(groups[a]) & set(groups[b]) for i, a in enumerate(left_out) for b in left_out[i + 1:])
    leaky = splits.copy()
    leaky[12] = "test"  # one image of sample 6 in the test split, its twin in training
    with pytest.raises(GroupLeakError):
        grouped_splits(y, groups, FixedTestSplit(leaky, n_splits=4))
    with pytest.raises(ValueError, match="needs images whose split is 'test'"):
        grouped_splits(y, groups, FixedTestSplit(["train"] * len(y), n_splits=4))
    with pytest.raises(ValueError, match="the images outside the test split cannot be divided into folds"):
        # three samples outside the test split, one per class: too few for 4 folds
        grouped_splits(y, groups, FixedTestSplit(np.where(groups < 3, "train", "test"), n_splits=4))


def test_evaluate_takes_the_fixed_test_split(tmp_path):
    from typer.testing import CliRunner

    from hybridtmd.cli import app
    from hybridtmd.datasets import write_synthetic_dataset

    data = tmp_path / "data"
    write_synthetic_dataset(data, n_samples=12, images_per_sample=2, size_px=48, materials=["MoS2", "WSe2"], seed=2)
    manifest = pd.read_csv(data / "manifest.csv", dtype=str)
    test_samples = manifest.groupby("label")["group"].first()
    manifest["split"] = np.where(manifest["group"].isin(test_samples), "test", "train")
    manifest.to_csv(data / "fixed.csv", index=False)
    config = tmp_path / "cfg.toml"
    config.write_text('[descriptors]\nfamilies = ["areal"]\n[embeddings]\nenabled = false\n'
                      '[model]\nood_neighbors = 3\n[model.xgboost]\nn_estimators = 10\n')
    runner = CliRunner()
    result = runner.invoke(app, ["evaluate", str(data / "fixed.csv"), "-o", str(tmp_path / "report"),
                                 "--config", str(config), "--folds", "3", "--fixed-test", "--permutations", "0",
                                 "--no-ablation"])
    assert result.exit_code == 0, result.output
    folds = pd.read_csv(tmp_path / "report" / "hybrid_folds.csv")
    n_test = int((manifest["split"] == "test").sum())
    assert len(folds) == 3 and (folds["n_test"] == n_test).all()
    assert "fixed test split" in (tmp_path / "report" / "summary.md").read_text()
    result = runner.invoke(app, ["evaluate", str(data), "-o", str(tmp_path / "r2"), "--config", str(config),
                                 "--folds", "3", "--fixed-test"])
    assert result.exit_code == 2 and "--fixed-test needs images whose split is test" in result.output


def test_training_curves_mark_the_kept_epoch():
    import json

    from hybridtmd.evaluation.figures import plot_curves, training_curves

    history = [{"epoch": e, "train_loss": 1.0 / e, "val_loss": 1.0, "val_accuracy": 0.5, "val_macro_f1": f}
               for e, f in zip(range(1, 6), [0.2, 0.6, 0.4, 0.6, 0.5], strict=True)]
    folds = pd.DataFrame({"model": ["fine-tune", "hybrid"], "repeat": [0, 0], "fold": [0, 0],
                          "history": [json.dumps(history), None], "kept_epoch": [2, None]})
    curves = training_curves(folds)
    assert len(curves) == 5 and curves.loc[curves["kept"], "epoch"].tolist() == [2]
    figure = plot_curves(curves)
    assert len(figure.axes[1].lines) == 2  # the curve and the kept-epoch dot
