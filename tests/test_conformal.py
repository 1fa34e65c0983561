"""Conformal prediction sets (hybridtmd.model.conformal): coverage, grouping, determinism,
persistence and bad input."""

from __future__ import annotations

import dataclasses
import json
import re
import warnings

import numpy as np
import pandas as pd
import pytest
from scipy.stats import betabinom

from hybridtmd.errors import ModelFileError
from hybridtmd.model import HybridClassifier, default_head
from hybridtmd.model.conformal import (
    ConformalCalibration,
    ConformalError,
    calibration_split,
    points_needed,
    set_columns,
    set_labels,
)
from hybridtmd.model.samples import pool_samples

CLASSES = np.array(["MoS2", "WS2", "WSe2"])


def small_head(seed: int = 0):
    return default_head(seed, n_jobs=1).set_params(n_estimators=30, learning_rate=0.3)


def generated(n_samples: int, images_per_sample: int, seed: int, first_sample: int = 0):
    """Overlapping classes (so sets of 2-3 classes happen); images of a sample independent given
    its class, so image-level conformal coverage is exact (no sample effect to share)."""
    rng = np.random.default_rng(seed)
    sample_class = rng.integers(0, len(CLASSES), n_samples)
    groups = np.repeat(np.arange(first_sample, first_sample + n_samples), images_per_sample).astype(str)
    codes = np.repeat(sample_class, images_per_sample)
    centres = np.array([[0.0, 0.0], [1.2, 0.0], [0.6, 1.0]])
    X = centres[codes] + rng.normal(size=(len(codes), 2))
    X = np.column_stack([X, rng.normal(size=(len(codes), 2))])
    return pd.DataFrame(X, columns=[f"x{i}" for i in range(4)]), CLASSES[codes], groups


def conformal_model(mode: str, seed: int = 0, **params) -> HybridClassifier:
    return HybridClassifier(features=None, classifier=small_head(seed), conformal=mode, ood_neighbors=None,
                            random_state=seed, **params)


@pytest.fixture(scope="module")
def training():
    return generated(400, 2, seed=1)


@pytest.fixture(scope="module")
def fresh():
    """New samples drawn like the training ones."""
    return generated(1500, 2, seed=2, first_sample=10_000)


@pytest.fixture(scope="module")
def class_model(training):
    X, y, groups = training
    return conformal_model("class").fit(X, y, groups=groups)


def coverage_interval(n_calibration: int, n_test: int, alpha: float) -> tuple[float, float]:
    """99.9% interval of the covered fraction of ``n_test`` new points. A class is in the set when
    at least ``m`` calibration scores are at or above its score, ``m`` the fewest with crepes'
    p-value ``(m + 1) / (n + 1) >= 1 - (1 - alpha)``; so coverage given the calibration set is
    Beta(k, n + 1 - k) with k = n + 1 - m, and the count of covered points is beta-binomial
    (Vovk 2012; Angelopoulos & Bates 2021, appendix C; k = ceil((n + 1)(1 - alpha)) when
    alpha (n + 1) is not a whole number)."""
    m = next(c for c in range(n_calibration + 2) if (c + 1) / (n_calibration + 1) >= 1 - (1 - alpha))
    k = n_calibration + 1 - m
    low, high = betabinom(n_test, k, n_calibration + 1 - k).interval(0.999)
    return low / n_test, high / n_test


def covered(sets: np.ndarray, labels: np.ndarray, classes: np.ndarray) -> np.ndarray:
    return sets[np.arange(len(labels)), np.searchsorted(classes, labels)]


@pytest.mark.parametrize("alpha", [0.1, 0.2])
def test_image_coverage_within_its_interval(class_model, fresh, alpha):
    X, y, _ = fresh
    marginal = dataclasses.replace(class_model.conformal_, mode="marginal")
    sets = marginal.image_sets(class_model.predict_proba(X), alpha, class_model.classes_)
    low, high = coverage_interval(len(marginal.image_labels), len(y), alpha)
    assert low <= covered(sets, y, class_model.classes_).mean() <= high
    assert 1.0 < sets.sum(1).mean() < len(CLASSES)  # neither trivial nor always full
    # class-conditional: each class's coverage within the interval of that class's calibration count
    sets = class_model.predict_set(X, alpha)
    assert 1.0 < sets.sum(1).mean() < len(CLASSES)
    hit = covered(sets, y, class_model.classes_)
    counts = np.bincount(class_model.conformal_.image_labels)
    for c, name in enumerate(class_model.classes_):
        low, high = coverage_interval(counts[c], int((y == name).sum()), alpha)
        assert low <= hit[y == name].mean() <= high, (name, hit[y == name].mean(), low, high)


def test_sample_coverage_within_its_interval(class_model, fresh):
    X, y, groups = fresh
    sets = class_model.predict_sample_sets(X, groups, alpha=0.2)
    truth = pd.Series(y, index=groups)
    truth = truth[~truth.index.duplicated()].loc[sets.index].to_numpy()
    hit = covered(sets.to_numpy(), truth, class_model.classes_)
    low, high = coverage_interval(len(class_model.conformal_.sample_labels), len(truth), 0.2)
    assert low <= hit.mean() <= high
    assert list(sets.columns) == list(class_model.classes_) and sets.index.name == "sample"
    assert list(sets.index) == list(dict.fromkeys(groups))  # order of first appearance, as --by-sample


def test_sample_sets_pool_images_as_by_sample(class_model, fresh):
    """A sample's set comes from the same pooled probabilities as predict --by-sample's verdict."""
    X, _, groups = fresh
    pooled = pool_samples(class_model.predict_proba(X), groups, class_model.classes_)
    expected = class_model.conformal_.sample_sets(pooled[[f"p_{c}" for c in class_model.classes_]].to_numpy(),
                                                  0.1, class_model.classes_)
    np.testing.assert_array_equal(class_model.predict_sample_sets(X, groups, 0.1).to_numpy(), expected)


def test_class_sets_equal_crepes_wrapped_classifier(class_model, training, fresh):
    """Our sample-grouped calibration + Mondrian sets equal crepes' own class-conditional
    WrapClassifier calibrated on the same held-out rows."""
    with warnings.catch_warnings():
        from crepes import WrapClassifier
    X, y, groups = training
    _, held = calibration_split(np.searchsorted(CLASSES, y), groups, "class", 0)
    wrapped = WrapClassifier(class_model)
    wrapped.calibrate(X.iloc[held], y[held], class_cond=True)
    X_new = fresh[0].iloc[:300]
    theirs = wrapped.predict_set(X_new, confidence=0.9, smoothing=False, labels=False).astype(bool)
    np.testing.assert_array_equal(class_model.predict_set(X_new, alpha=0.1), theirs)


def test_calibration_never_shares_a_sample(training):
    X, y, groups = training
    y_enc = np.searchsorted(CLASSES, y)
    for seed in range(5):
        fit, held = calibration_split(y_enc, groups, "class", seed)
        assert not set(groups[fit]) & set(groups[held])
        assert len(fit) + len(held) == len(y) and len(held) > 0
        assert set(y_enc[fit]) == set(y_enc[held]) == {0, 1, 2}


@pytest.mark.filterwarnings("ignore:RecordingHead takes no sample_weight")
def test_head_is_fitted_without_the_calibration_samples(training):
    """The head sees whole samples only, and none of those the sets are calibrated on."""
    X, y, groups = training
    ids = pd.DataFrame({"sample_id": groups.astype(float)}, index=X.index)
    seen = {}

    class RecordingHead(type(small_head())):
        def fit(self, X, y, **kwargs):
            seen["samples"] = X[:, 0].copy()
            return super().fit(X, y, **kwargs)

    model = HybridClassifier(features=None, classifier=RecordingHead(**small_head().get_params()),
                             conformal="marginal", ood_neighbors=None).fit(pd.concat([ids, X], axis=1), y,
                                                                           groups=groups)
    fitted = seen["samples"]
    images_per_sample = pd.Series(groups.astype(float)).value_counts()
    assert (pd.Series(fitted).value_counts() == images_per_sample.loc[np.unique(fitted)]).all()  # whole samples
    assert len(fitted) + model.conformal_.summary()["calibration_images"] == len(y)  # the rest calibrates
    assert model.conformal_.summary()["calibration_samples"] == len(set(groups) - set(fitted.astype(int).astype(str)))


def test_sets_are_deterministic_for_a_seed(training, fresh):
    X, y, groups = training
    X_new = fresh[0].iloc[:200]
    first, again = (conformal_model("class", seed=3).fit(X, y, groups=groups).predict_set(X_new) for _ in range(2))
    np.testing.assert_array_equal(first, again)
    other = conformal_model("class", seed=4).fit(X, y, groups=groups)
    assert not np.array_equal(other.conformal_.image_scores, conformal_model("class", seed=3).fit(
        X, y, groups=groups).conformal_.image_scores)  # another seed holds out other samples


def test_save_load_round_trip(class_model, fresh, tmp_path):
    X, _, groups = fresh
    class_model.save(tmp_path / "m")
    manifest = json.loads((tmp_path / "m" / "manifest.json").read_text())
    assert manifest["params"]["conformal"] == "class"
    assert manifest["conformal"]["head_refitted"] is False
    loaded = HybridClassifier.load(tmp_path / "m")
    np.testing.assert_array_equal(loaded.predict_set(X, 0.1), class_model.predict_set(X, 0.1))
    pd.testing.assert_frame_equal(loaded.predict_sample_sets(X, groups, 0.2),
                                  class_model.predict_sample_sets(X, groups, 0.2))


def test_forged_conformal_entries_are_refused(class_model, tmp_path):
    from corpus.tampering import forge_manifest

    for case, change in {"mode": {"conformal": {**class_model.conformal_.summary(), "mode": "marginal"}},
                         "count": {"conformal": {**class_model.conformal_.summary(), "calibration_images": 3}},
                         "missing": {"conformal": None}}.items():
        directory = class_model.save(tmp_path / case)
        forge_manifest(directory, **change)
        with pytest.raises(ModelFileError, match="arrays.npz: .*conformal"):
            HybridClassifier.load(directory)


def test_model_without_conformal_says_so(training, tmp_path):
    X, y, groups = training
    model = HybridClassifier(features=None, classifier=small_head(), ood_neighbors=None).fit(X, y, groups=groups)
    loaded = HybridClassifier.load(model.save(tmp_path / "plain"))
    assert loaded.conformal_ is None
    with pytest.raises(ValueError, match="conformal=None"):
        loaded.predict_set(X)


@pytest.mark.parametrize("alpha", [0, 1, -0.1, 1.5, float("nan"), True, "0.1", None])
def test_alpha_outside_zero_one_is_refused(class_model, fresh, alpha):
    with pytest.raises(ValueError, match=r"alpha must be a number in \(0, 1\)"):
        class_model.predict_set(fresh[0].iloc[:5], alpha)
    with pytest.raises(ValueError, match=r"alpha must be a number in \(0, 1\)"):
        class_model.predict_sample_sets(fresh[0].iloc[:5], fresh[2][:5], alpha)


def test_too_few_calibration_samples_names_the_class_and_count(class_model, fresh):
    X, _, groups = fresh
    counts = np.bincount(class_model.conformal_.sample_labels)
    rarest = int(np.argmin(counts))
    alpha = 0.9 / counts[rarest]  # needs about 1.1 x the rarest class's calibration samples
    with pytest.raises(ConformalError, match=rf"class '{CLASSES[rarest]}' has {counts[rarest]} calibration samples"):
        class_model.predict_sample_sets(X, groups, alpha)
    marginal = dataclasses.replace(class_model.conformal_, mode="marginal")
    with pytest.raises(ConformalError, match=rf"{len(marginal.image_labels)} calibration images"):
        marginal.image_sets(class_model.predict_proba(X.iloc[:5]), 0.5 / len(marginal.image_labels), CLASSES)


@pytest.mark.parametrize("alpha", [0.1, 0.2, 0.05, 0.3, 0.5])
def test_points_needed_is_where_a_class_can_first_be_left_out(alpha):
    """With points_needed calibration points an image sure of another class leaves a class out;
    with one fewer that class would be in every set, so it is an error instead."""
    needed = points_needed(alpha)

    def calibration(n: int) -> ConformalCalibration:
        labels = np.zeros(n, dtype=np.int64)
        return ConformalCalibration("marginal", 2, np.full(n, 0.5), labels, np.full(n, 0.5), labels)

    sure_of_b = np.array([[0.0, 1.0]])  # class a scores 1.0, above every calibration score
    np.testing.assert_array_equal(calibration(needed).image_sets(sure_of_b, alpha, ["a", "b"]), [[False, True]])
    message = f"{needed - 1} calibration images; alpha={alpha:g} needs at least {needed}"
    with pytest.raises(ConformalError, match=message):
        calibration(needed - 1).image_sets(sure_of_b, alpha, ["a", "b"])


def test_too_few_samples_to_hold_out_is_one_clear_error():
    X, y, groups = generated(3, 2, seed=5)  # one sample per class at most
    with pytest.raises(ConformalError, match="too few samples to hold any out"):
        conformal_model("marginal").fit(X, y, groups=groups)


def test_set_labels_join_classes():
    assert set_labels(np.array([[True, False, True], [False, False, False]]), CLASSES) == ["MoS2|WSe2", ""]


def test_set_columns_give_out_of_distribution_rows_every_class():
    columns = set_columns(np.array([[True, False, False], [True, False, False]]), CLASSES, [False, True])
    assert list(columns["set"]) == ["MoS2", "MoS2|WS2|WSe2"] and list(columns["set_size"]) == [1, 3]
    assert columns["set_note"].iloc[0] == "" and "out of distribution" in columns["set_note"].iloc[1]


@pytest.fixture(scope="module")
def cli_data(tmp_path_factory):
    """A small image data set and a conformal model trained on it by the CLI (descriptors only)."""
    from typer.testing import CliRunner

    from hybridtmd.cli import app
    from hybridtmd.datasets import write_synthetic_dataset

    root = tmp_path_factory.mktemp("conformal_cli")
    write_synthetic_dataset(root / "data", n_samples=24, images_per_sample=4, size_px=64, materials=["MoS2", "WSe2"],
                            seed=2)
    config = root / "cfg.toml"
    # ood_quantile 0.2: most new images score above it, so the OOD rule of the sets is exercised
    config.write_text('[descriptors]\nfamilies = ["areal", "spectral"]\n[embeddings]\nenabled = false\n'
                      '[model]\nclassifier = "xgboost"\nconformal = "marginal"\nood_neighbors = 3\n'
                      'ood_quantile = 0.2\n[model.xgboost]\nn_estimators = 20\n')
    result = CliRunner().invoke(app, ["train", str(root / "data"), "-o", str(root / "model"), "--config", str(config)])
    assert result.exit_code == 0, result.output
    return root, config


def test_predict_alpha_writes_sets_per_image_and_sample(cli_data):
    from typer.testing import CliRunner

    from hybridtmd.cli import app

    root, _ = cli_data
    out = root / "preds.csv"
    result = CliRunner().invoke(app, ["predict", str(root / "model"), str(root / "data"), "-o", str(out),
                                      "--by-sample", "--alpha", "0.2"])
    assert result.exit_code == 0, result.output
    preds = pd.read_csv(out, keep_default_na=False)
    model = HybridClassifier.load(root / "model")
    assert {"set", "set_size", "set_note"} <= set(preds)
    ood = preds["out_of_distribution"].astype(str) == "True"
    assert ood.any() and (preds.loc[ood, "set_size"] == 2).all()
    assert preds.loc[ood, "set_note"].str.contains("out of distribution").all()
    expected = model.conformal_.image_sets(preds[["p_MoS2", "p_WSe2"]].to_numpy(), 0.2, model.classes_)
    np.testing.assert_array_equal(preds.loc[~ood, "set_size"], expected[~ood.to_numpy()].sum(1))
    samples = pd.read_csv(root / "preds_samples.csv", keep_default_na=False)
    assert {"set", "set_size"} <= set(samples) and len(samples) == 24
    assert all(set(s.split("|")) <= {"MoS2", "WSe2"} for s in samples["set"] if s)


@pytest.mark.parametrize("alpha, message", [
    ("1.5", r"alpha must be a number in \(0, 1\)"),
    ("0.01", rf"calibration images; alpha=0.01 needs at least {points_needed(0.01)}")])
def test_predict_bad_alpha_is_one_clear_error(cli_data, alpha, message):
    from typer.testing import CliRunner

    from hybridtmd.cli import app

    root, _ = cli_data
    result = CliRunner().invoke(app, ["predict", str(root / "model"), str(root / "data"), "-o",
                                      str(root / "bad.csv"), "--alpha", alpha])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "model" in result.output and re.search(message, " ".join(result.output.split()))
    assert not (root / "bad.csv").exists()


def test_evaluate_reports_coverage_over_grouped_folds(cli_data):
    from typer.testing import CliRunner

    from hybridtmd.cli import app

    root, config = cli_data
    result = CliRunner().invoke(app, ["evaluate", str(root / "data"), "-o", str(root / "report"), "--config",
                                      str(config), "--folds", "3", "--permutations", "0", "--no-ablation"])
    assert result.exit_code == 0, result.output
    assert "conformal sets at alpha 0.1" in result.output and "mean_set_size" in result.output
    folds = pd.read_csv(next((root / "report").glob("*folds.csv")))
    assert {"coverage", "coverage[MoS2]", "coverage[WSe2]", "mean_set_size"} <= set(folds)
    assert folds["coverage"].between(0, 1).all() and folds["mean_set_size"].between(1, 2).all()


def test_unknown_conformal_option_is_refused(training):
    X, y, groups = training
    with pytest.raises(ValueError, match="'conformal' parameter of HybridClassifier must be"):
        conformal_model("yes").fit(X, y, groups=groups)


def test_a_calibration_sample_is_scored_for_its_majority_label():
    """A sample whose images carry two labels is calibrated on its most common label (ties to
    the first class name in sorted order), the rule evaluate and the report score samples by."""
    proba = np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.2, 0.7, 0.1], [0.6, 0.3, 0.1], [0.3, 0.6, 0.1]])
    y_enc = np.array([0, 1, 1, 1, 0])  # s1: WS2 twice, MoS2 once (MoS2 first); s2: one each (tie)
    groups = np.array(["s1", "s1", "s1", "s2", "s2"])
    calibration = ConformalCalibration.from_probabilities("class", proba, y_enc, groups, CLASSES)
    np.testing.assert_array_equal(calibration.sample_labels, [1, 0])  # WS2 (majority), MoS2 (tie: sorted first)
    pooled = pool_samples(proba, groups, CLASSES)
    np.testing.assert_allclose(calibration.sample_scores, [1 - pooled["p_WS2"].iloc[0], 1 - pooled["p_MoS2"].iloc[1]])


def test_evaluate_predicts_each_test_fold_once(training, monkeypatch):
    """One feature table and one predict_proba per fold: labels, sample verdicts and coverage
    all come from it."""
    from sklearn.model_selection import StratifiedGroupKFold

    from hybridtmd.evaluation import evaluate

    X, y, groups = training
    calls = {"predict_proba": 0, "transform_features": 0}
    for name in calls:
        original = getattr(HybridClassifier, name)

        def counted(self, *args, _original=original, _name=name, **kwargs):
            calls[_name] += 1
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(HybridClassifier, name, counted)
    result = evaluate(conformal_model("class"), X, y, groups, cv=StratifiedGroupKFold(3))
    assert calls == {"predict_proba": 3, "transform_features": 3}
    folds = result.folds
    assert folds["coverage"].between(0.7, 1).all() and folds["mean_set_size"].between(1, len(CLASSES)).all()


def test_explain_report_shows_each_image_set_beside_its_label(class_model, fresh, tmp_path):
    """The report's predictions and cards carry each image's set, the model's own predict_set."""
    from hybridtmd.reporting import write_report

    X, y, _ = fresh
    page = write_report(class_model, X.iloc[:40], tmp_path, labels=y[:40], max_images=2, alpha=0.2)
    table = pd.read_csv(tmp_path / "predictions.csv", keep_default_na=False)
    expected = class_model.predict_set(X.iloc[:40], alpha=0.2)
    assert table["set"].tolist() == set_labels(expected, class_model.classes_)
    np.testing.assert_array_equal(table["set_size"], expected.sum(1))
    text = page.read_text(encoding="utf-8")
    first = table.iloc[0]  # a card summary: predicted label, then its set
    assert "Prediction sets (conformal, alpha 0.2)" in text
    assert re.search(r"predicted <b>[^<]+</b>, set \{[^}]*\}", text)
    assert any(f"set {{{s.replace('|', ', ')}}}" in text for s in table["set"]) and first["set"]


def test_explain_command_shows_held_out_sets_or_why_not(cli_data):
    """Held out, each image's set comes from its fold model's calibration; an alpha the fold
    calibrations cannot serve is said in the report."""
    from typer.testing import CliRunner

    from hybridtmd.cli import app

    root, _ = cli_data
    out = root / "explained"
    result = CliRunner().invoke(app, ["explain", str(root / "model"), str(root / "data"), "-o", str(out),
                                      "--alpha", "0.3", "--max-images", "1", "--folds", "3"])
    assert result.exit_code == 0, result.output
    table = pd.read_csv(out / "predictions.csv", keep_default_na=False)
    assert {"set", "set_size", "set_note"} <= set(table) and table["set_size"].between(0, 2).all()
    ood = table["out_of_distribution"].astype(str) == "True"
    assert (table.loc[ood, "set_size"] == 2).all()
    assert "Prediction sets (conformal, alpha 0.3)" in (out / "report.html").read_text(encoding="utf-8")
    result = CliRunner().invoke(app, ["explain", str(root / "model"), str(root / "data"), "-o", str(root / "few"),
                                      "--alpha", "0.05", "--max-images", "0", "--folds", "3"])
    assert result.exit_code == 0, result.output
    text = " ".join((root / "few" / "report.html").read_text(encoding="utf-8").split())
    assert "No prediction sets at alpha 0.05: fold 0 model:" in text and "needs at least" in text


def test_smoothed_sets_are_seeded_subsets_of_the_model_sets(class_model, fresh):
    """crepes' smoothed p-values are never above the non-smoothed ones, so the sets the
    benchmark compares are inside the model's own, and the same on every call (seed 0)."""
    proba = class_model.predict_proba(fresh[0].iloc[:500])
    for mode in ("marginal", "class"):
        plain = dataclasses.replace(class_model.conformal_, mode=mode)
        smooth = dataclasses.replace(plain, smoothing=True)
        sets = smooth.image_sets(proba, 0.2, CLASSES)
        np.testing.assert_array_equal(sets, smooth.image_sets(proba, 0.2, CLASSES))
        full = plain.image_sets(proba, 0.2, CLASSES)
        assert not (sets & ~full).any() and sets.sum() <= full.sum()
    assert class_model.conformal_.smoothing is False
