"""Predicting folders (hybridtmd.model.predicting, hybridtmd.io.files): passes of a bounded
number of files, a bad file never loses the others, the readable files of a folder, the
prediction sets of a table - one function each for ``hybridtmd predict`` and the napari plugin."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hybridtmd.datasets import make_synthetic_dataset
from hybridtmd.descriptors import DescriptorExtractor
from hybridtmd.errors import AFMInputError
from hybridtmd.io import readable_files, save_image
from hybridtmd.io.files import needed_channels, source_of
from hybridtmd.model import HybridClassifier, HybridFeatures, default_head, predicting
from hybridtmd.model.conformal import OOD_SET_NOTE
from hybridtmd.model.predicting import predict_files, predict_isolating, prediction_set_columns


@pytest.fixture(scope="module")
def dataset():
    return make_synthetic_dataset(n_samples=12, images_per_sample=2, size_px=48, scan_size_um=(0.25, 0.45),
                                  materials=["MoS2", "WSe2"], seed=2)


def descriptor_model(conformal=None):
    features = HybridFeatures(descriptors=DescriptorExtractor(families=["areal"]), embedder=None)
    head = default_head(0, n_jobs=1).set_params(n_estimators=20, learning_rate=0.3)
    return HybridClassifier(features=features, classifier=head, conformal=conformal)


@pytest.fixture(scope="module")
def model(dataset):
    return descriptor_model().fit(dataset.images, dataset.labels, groups=dataset.groups)


@pytest.fixture(scope="module")
def folder(dataset, tmp_path_factory) -> Path:
    """Seven readable scans, two files that cannot be read, a hidden file and a note."""
    folder = tmp_path_factory.mktemp("scans")
    for i in range(7):
        save_image(dataset.images[i], folder / f"scan{i}.tif")
    np.save(folder / "bare.npy", dataset.images[0].height)  # no pixel size
    (folder / "broken.gwy").write_bytes(b"not a gwyddion file")
    save_image(dataset.images[0], folder / ".hidden.tif")
    (folder / "notes.txt").write_text("not a scan")
    return folder


def test_readable_files_are_the_folders_files_with_a_reader(folder, tmp_path):
    names = [p.name for p in readable_files(folder)]
    assert names == ["bare.npy", "broken.gwy"] + [f"scan{i}.tif" for i in range(7)]  # sorted; no .hidden, no .txt
    with pytest.raises(AFMInputError, match="not a folder"):
        readable_files(tmp_path / "absent")


def test_files_are_predicted_in_passes_of_a_bounded_size(model, dataset, folder, monkeypatch):
    read, predicted, done = [], [], []
    load_images, predict_frame = predicting.load_images, model.predict_frame
    monkeypatch.setattr(predicting, "load_images", lambda paths, **kw: read.append(len(paths)) or load_images(paths,
                                                                                                             **kw))
    monkeypatch.setattr(model, "predict_frame", lambda items, **kw: predicted.append(len(items)) or predict_frame(
        items, **kw))
    paths = readable_files(folder)
    table, skipped = predict_files(model, paths, pass_size=3, progress=done.append)
    assert read == [3, 3, 3] and max(predicted) <= 3 and done == [3, 3, 3]  # never more than a pass in memory
    assert [Path(f).name for f in table["file"]] == [f"scan{i}.tif" for i in range(7)]
    expected = model.predict_frame(dataset.images[:7])
    assert table["label"].tolist() == expected["label"].tolist()
    np.testing.assert_allclose(table["confidence"], expected["confidence"], atol=1e-9)
    assert [Path(f).name for f, _ in skipped] == ["bare.npy", "broken.gwy"]
    assert "no pixel size" in skipped[0][1] and skipped[1][1]


def test_one_file_that_cannot_be_predicted_loses_only_itself(model, folder, monkeypatch):
    predict_frame = model.predict_frame

    def failing(items, index=None):  # the features of scan4 cannot be computed
        if any(str(name).endswith("scan4.tif") for name in index):
            raise RuntimeError("descriptor computation failed")
        return predict_frame(items, index=index)

    monkeypatch.setattr(model, "predict_frame", failing)
    table, skipped = predict_files(model, readable_files(folder), pass_size=4)
    assert [Path(f).name for f in table["file"]] == [f"scan{i}.tif" for i in range(7) if i != 4]
    assert (str(folder / "scan4.tif"), "RuntimeError: descriptor computation failed") in skipped
    frame, errors = predict_isolating(model, [], [])
    assert frame is None and errors == []


def test_nothing_predicted_is_an_empty_table_with_the_reasons(model, folder):
    table, skipped = predict_files(model, [folder / "bare.npy", folder / "broken.gwy"])
    assert table.empty and list(table.columns[:1]) == ["file"] and len(skipped) == 2
    with pytest.raises(ValueError, match="pass_size"):
        predict_files(model, [], pass_size=0)


def test_the_cli_predicts_through_the_same_function(model, folder, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from hybridtmd.cli import app

    model_dir = model.save(tmp_path / "model")
    calls = []
    monkeypatch.setattr(predicting, "predict_files", lambda *a, **kw: calls.append(a[1]) or predict_files(*a, **kw))
    out = tmp_path / "p.csv"
    result = CliRunner().invoke(app, ["predict", str(model_dir), str(folder), "-o", str(out)])
    assert result.exit_code != 0 and "bare.npy" in result.output  # skipped files make a non-zero exit
    assert calls == [readable_files(folder)]
    table, _ = predict_files(HybridClassifier.load(model_dir), readable_files(folder))
    written = pd.read_csv(out)
    assert written["file"].tolist() == table["file"].tolist() and written["label"].tolist() == table["label"].tolist()


def test_prediction_sets_of_a_table_give_ood_rows_every_class(dataset):
    model = descriptor_model("marginal").fit(dataset.images, dataset.labels, groups=dataset.groups)
    table = model.predict_frame(dataset.images[:4]).reset_index(drop=True)
    table.loc[1, "out_of_distribution"] = True
    sets = prediction_set_columns(model, table, alpha=0.5)
    assert list(sets.columns) == ["set", "set_size", "set_note"] and sets.index.equals(table.index)
    expected = model.predict_set(dataset.images[:4], alpha=0.5)
    assert sets.loc[0, "set_size"] == expected[0].sum()
    assert sets.loc[1, "set"] == "MoS2|WSe2" and sets.loc[1, "set_note"] == OOD_SET_NOTE
    with pytest.raises(ValueError, match="without conformal"):
        prediction_set_columns(descriptor_model().fit(dataset.images, dataset.labels), table, 0.5)


def test_needed_channels_and_source_of():
    assert needed_channels(HybridFeatures()) is None
    assert needed_channels(DescriptorExtractor(channels={"height": None, "phase": ["texture"]})) == ["height", "phase"]
    from hybridtmd.io import AFMImage

    image = AFMImage(np.zeros((32, 32)), (5.0, 5.0), source="a.tif")
    phase = AFMImage(np.zeros((32, 32)), (5.0, 5.0), source="b.tif", channel="phase", z_unit="deg")
    assert source_of(image) == "a.tif" and source_of({"phase": phase, "height": image}) == "a.tif"
