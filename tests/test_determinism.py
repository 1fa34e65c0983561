"""Issue 9, determinism and safety of model files: same seed -> identical predictions (two runs,
n_jobs=1 vs 2, after save/load); DescriptorExtractor identical for n_jobs=1 and 2; loading a model
never unpickles (a crafted pickle is rejected and its payload never runs)."""

from __future__ import annotations

import json
import pickle
import shutil

import numpy as np
import pandas as pd
import pytest

from hybridtmd._utils.digests import file_sha256
from hybridtmd.datasets import make_synthetic_dataset
from hybridtmd.descriptors import DescriptorExtractor
from hybridtmd.model import HybridClassifier, HybridFeatures, ModelFileError, default_head


@pytest.fixture(scope="module")
def data():
    return make_synthetic_dataset(n_samples=8, size_px=64, materials=["MoS2", "WSe2"], seed=5)


def _model(n_jobs: int = 1, seed: int = 3) -> HybridClassifier:
    features = HybridFeatures(descriptors=DescriptorExtractor(families=["areal", "spectral"], level_images=False,
                                                              n_jobs=n_jobs), embedder=None)
    head = default_head(seed, n_jobs=n_jobs).set_params(n_estimators=20)
    return HybridClassifier(features=features, classifier=head, random_state=seed, n_jobs=n_jobs,
                            calibration="temperature", calibration_folds=2)


def test_same_seed_same_predictions_and_shap_two_runs_and_n_jobs(data, tmp_path):
    from hybridtmd.explanation import explain

    frames, shap_values = [], []
    for n_jobs in (1, 1, 2):
        model = _model(n_jobs).fit(data.images, data.labels, groups=data.groups)
        frames.append(model.predict_frame(data.images))
        shap_values.append(explain(model, data.images).values)
    pd.testing.assert_frame_equal(frames[0], frames[1], check_exact=True)  # two runs
    pd.testing.assert_frame_equal(frames[0], frames[2], check_exact=True)  # n_jobs=1 vs 2
    assert np.array_equal(shap_values[0], shap_values[1]) and np.array_equal(shap_values[0], shap_values[2])
    model.save(tmp_path / "m")
    pd.testing.assert_frame_equal(HybridClassifier.load(tmp_path / "m").predict_frame(data.images), frames[0],
                                  check_exact=True)


def test_descriptor_tables_identical_for_n_jobs_1_and_2(data):
    images = data.images[:6]
    serial = DescriptorExtractor(n_jobs=1, progress=False)
    parallel = DescriptorExtractor(n_jobs=2, progress=False)
    (a, reasons_a), (b, reasons_b) = (e.fit(images).transform_with_reasons(images) for e in (serial, parallel))
    pd.testing.assert_frame_equal(a, b, check_exact=True)
    pd.testing.assert_frame_equal(reasons_a, reasons_b)


# ------------------------------------------------------------------------------------- no pickle


class _Payload:
    """Unpickling this runs code: it writes a marker file. Loading a model must never do it."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.fixture(scope="module")
def saved(data, tmp_path_factory):
    return _model().fit(data.images, data.labels, groups=data.groups).save(tmp_path_factory.mktemp("m") / "m")


def _crafted(saved, tmp_path, where: str):
    d = tmp_path / "model"
    shutil.copytree(saved, d)
    marker = tmp_path / "pwned"
    blob = pickle.dumps(_Payload(str(marker)))
    manifest = json.loads((d / "manifest.json").read_text())
    if where in ("classifier.json", "arrays.npz"):  # replaced by a pickle, manifest hash updated to match
        (d / where).write_bytes(blob)
        manifest["files"][where] = file_sha256(d / where)
    elif where == "listed":  # the manifest points to an extra pickle file
        (d / "model.pkl").write_bytes(blob)
        manifest["files"]["model.pkl"] = file_sha256(d / "model.pkl")
    elif where == "object_npz":  # a real npz whose array needs pickle
        with open(d / "arrays.npz", "wb") as fh:
            np.savez(fh, ood_reference=np.array([_Payload(str(marker))], dtype=object),
                     ood_center=np.zeros(1), ood_scale=np.ones(1))
        manifest["files"]["arrays.npz"] = file_sha256(d / "arrays.npz")
    from corpus.tampering import write_forged

    write_forged(d, manifest)  # a forger recomputes the digest too
    return d, marker


@pytest.mark.parametrize("where, match", [
    ("classifier.json", r"classifier.json: not a readable XGBoost model"),
    ("arrays.npz", r"arrays.npz: not a plain-array npz"),
    ("object_npz", r"arrays.npz: not a plain-array npz .*Object arrays cannot be loaded"),
    ("listed", r"manifest.json: manifest lists unexpected files .*model.pkl"),
])
def test_crafted_pickle_is_rejected_and_never_runs(saved, tmp_path, where, match):
    d, marker = _crafted(saved, tmp_path, where)
    with pytest.raises(ModelFileError, match=match):
        HybridClassifier.load(d)
    assert not marker.exists()


def test_loading_never_calls_pickle(saved, data, monkeypatch, tmp_path):
    """A pickle next to the model files is ignored, and loading works with pickle disabled."""
    shutil.copytree(saved, tmp_path / "m")
    marker = tmp_path / "pwned"
    (tmp_path / "m" / "classifier.pkl").write_bytes(pickle.dumps(_Payload(str(marker))))

    def refuse(*args, **kwargs):
        raise AssertionError("pickle used while loading a model")

    for name in ("load", "loads", "Unpickler"):
        monkeypatch.setattr(pickle, name, refuse)
    model = HybridClassifier.load(tmp_path / "m")
    assert not marker.exists()
    monkeypatch.undo()
    assert set(model.predict(data.images[:2])) <= {"MoS2", "WSe2"}
