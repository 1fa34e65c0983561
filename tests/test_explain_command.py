"""The explain command: held out by default on labelled data (out-of-fold models, folds grouped by
sample), in-sample on request and then saying so in its headline, out-of-distribution flags on
the cards."""

from __future__ import annotations

import html
import re
import warnings

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from hybridtmd.cli import app

runner = CliRunner()


@pytest.fixture(scope="module")
def labelled(tmp_path_factory):
    """A labelled dataset folder (WS2 and WSe2, 3 samples each, 2 images per sample) and a small
    descriptors-only model trained on all of it."""
    from hybridtmd.datasets import write_synthetic_dataset
    from hybridtmd.io import load_dataset
    from hybridtmd.model import HybridClassifier, HybridFeatures, default_head

    root = tmp_path_factory.mktemp("explain")
    write_synthetic_dataset(root / "data", n_samples=6, images_per_sample=2, size_px=64, materials=["WS2", "WSe2"],
                            seed=4)
    dataset = load_dataset(root / "data")
    model = HybridClassifier(features=HybridFeatures(embedder=None),
                             classifier=default_head(0, n_jobs=1).set_params(n_estimators=10), ood_neighbors=2)
    with warnings.catch_warnings():  # the synthetic pixels are coarser than the descriptors' reference
        warnings.simplefilter("ignore", UserWarning)
        model.fit(dataset.load().images, dataset.labels, groups=dataset.groups).save(root / "model")
    return root, dataset


def lead(report) -> str:
    """The headline paragraph of a report, as text."""
    text = report.read_text(encoding="utf-8")
    return html.unescape(re.sub("<[^>]+>", "", re.search("<p class='lead'>(.*?)</p>", text, re.S).group(1)))


def test_explain_on_a_labelled_dataset_is_held_out_by_default(labelled):
    root, dataset = labelled
    result = runner.invoke(app, ["explain", str(root / "model"), str(root / "data"), "-o", str(root / "held"),
                                 "--max-images", "1"])
    assert result.exit_code == 0, result.output
    assert "out-of-fold (StratifiedGroupKFold(3) by sample" in result.output  # 3 samples per class: 3 folds
    assert "held-out explanation of 12 input(s) (3 folds: fit, explain): 6/6 in " in result.output  # progress
    assert lead(root / "held" / "report.html").startswith("Accuracy out-of-fold:")
    predictions = pd.read_csv(root / "held" / "predictions.csv", dtype={"sample": str})
    assert sorted(predictions["fold"].unique()) == [0, 1, 2]
    folds_of_sample = predictions.groupby("sample")["fold"].nunique()  # a sample never spans two folds
    assert (folds_of_sample == 1).all() and set(folds_of_sample.index) == set(map(str, dataset.groups))
    assert "out_of_distribution" in predictions and "in_training" not in predictions
    text = (root / "held" / "report.html").read_text(encoding="utf-8")
    assert "Explanation stability" in text and (root / "held" / "explanation_stability.csv").is_file()


def test_explain_in_sample_says_so_in_its_headline(labelled):
    root, _ = labelled
    result = runner.invoke(app, ["explain", str(root / "model"), str(root / "data"), "-o", str(root / "in"),
                                 "--in-sample", "--max-images", "0"])
    assert result.exit_code == 0, result.output
    headline = lead(root / "in" / "report.html")
    assert headline.startswith("Accuracy in-sample (every image trained this model):")
    assert "say nothing about new samples" in headline
    assert pd.read_csv(root / "in" / "predictions.csv")["in_training"].all()


def test_explain_held_out_needs_labels_and_enough_samples(labelled, tmp_path):
    root, _ = labelled
    files = sorted((root / "data").glob("*.tif"))[:2]
    result = runner.invoke(app, ["explain", str(root / "model"), *map(str, files), "-o", str(tmp_path / "a"),
                                 "--held-out"])
    assert result.exit_code == 2 and "no labels" in result.output
    result = runner.invoke(app, ["explain", str(root / "model"), str(root / "data"), "-o", str(tmp_path / "b"),
                                 "--held-out", "--folds", "4"])
    assert result.exit_code == 2 and "WS2 has 3 sample(s)" in result.output and "4 folds" in result.output


def test_cards_show_the_out_of_distribution_flag_predict_gives(labelled, tmp_path):
    """Two training files and a scan unlike any training sample: the report flags what predict flags."""
    from hybridtmd.io import AFMImage, save_image

    root, _ = labelled
    files = sorted((root / "data").glob("*.tif"))[:2]
    strange = save_image(AFMImage(np.random.default_rng(0).normal(0, 50.0, (64, 64)), (2.0, 2.0), source="x"),
                         tmp_path / "strange.tif")
    inputs = [*map(str, files), str(strange)]
    result = runner.invoke(app, ["predict", str(root / "model"), *inputs, "-o", str(tmp_path / "p.csv")])
    assert result.exit_code == 0, result.output
    flagged = pd.read_csv(tmp_path / "p.csv").set_index("file")["out_of_distribution"]
    assert flagged[str(strange)] and not flagged[str(files[0])]
    result = runner.invoke(app, ["explain", str(root / "model"), *inputs, "-o", str(tmp_path / "r"),
                                 "--max-images", "3"])
    assert result.exit_code == 0, result.output
    predictions = pd.read_csv(tmp_path / "r" / "predictions.csv")
    assert predictions["out_of_distribution"].tolist() == flagged.loc[inputs].tolist()
    text = (tmp_path / "r" / "report.html").read_text(encoding="utf-8")
    summaries = [s for s in re.findall("<summary>(.*?)</summary>", text) if "predicted" in s]  # the cards
    assert len(summaries) == 3
    for line in summaries:
        assert ("out of distribution" in line) == line.startswith("strange.tif"), line
    assert "1 of 3 images out of distribution" in lead(tmp_path / "r" / "report.html")


def test_a_table_model_is_explained_held_out_from_a_table_with_label_and_group_columns(labelled, tmp_path):
    from hybridtmd.model import HybridClassifier, default_head

    root, dataset = labelled
    images_model = HybridClassifier.load(root / "model")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        table = images_model.transform_features(dataset.load().images)
    labels, groups = np.asarray(dataset.labels), np.asarray(dataset.groups)
    HybridClassifier(features=None, classifier=default_head(0, n_jobs=1).set_params(n_estimators=10),
                     ood_neighbors=2).fit(table, labels, groups=groups).save(tmp_path / "model")
    table.assign(path=[str(p) for p in dataset.paths], label=labels, group=groups).to_csv(tmp_path / "t.csv",
                                                                                          index=False)
    result = runner.invoke(app, ["explain", str(tmp_path / "model"), str(tmp_path / "t.csv"), "-o",
                                 str(tmp_path / "r"), "--max-images", "1", "--folds", "2"])
    assert result.exit_code == 0, result.output
    assert "out-of-fold (StratifiedGroupKFold(2) by sample" in result.output
    assert lead(tmp_path / "r" / "report.html").startswith("Accuracy out-of-fold:")
    predictions = pd.read_csv(tmp_path / "r" / "predictions.csv")
    assert predictions["image"].tolist() == [str(p) for p in dataset.paths]
    assert (predictions.groupby("sample")["fold"].nunique() == 1).all()
    table.assign(label=labels).to_csv(tmp_path / "no_group.csv", index=False)  # labels, no samples: in-sample
    result = runner.invoke(app, ["explain", str(tmp_path / "model"), str(tmp_path / "no_group.csv"), "-o",
                                 str(tmp_path / "r2"), "--max-images", "0"])
    assert result.exit_code == 0 and "not held out" in result.output
    assert lead(tmp_path / "r2" / "report.html").startswith("Accuracy in-sample")
