"""Fine-tuning baseline: shapes, determinism, learning, persistence, frozen mode, grouped
validation split, sequential continuation, backbone fallback, FLOP counts.

Every fit uses the offline efficientnet_lite0 (ResNet weights are never on the test machine) at
32 px inputs, 1-4 epochs and one thread, so the module stays well under a minute on 2 cores.
"""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch
from sklearn.base import clone

from hybridtmd.baseline import BackboneFallbackWarning, FineTuneClassifier, estimate_flops
from hybridtmd.baseline import classifier as classifier_module
from hybridtmd.datasets import make_synthetic_dataset
from hybridtmd.embeddings import WeightsNotFoundError
from hybridtmd.embeddings.backbones import load_efficientnet_lite0
from hybridtmd.errors import ModelFileError
from hybridtmd.io import AFMImage
from hybridtmd.preprocess import Preprocessor
from hybridtmd.splits import grouped_validation_split

#: Small and fast: the properties tested do not depend on the 224 px default.
SMALL = {"backbone": "efficientnet_lite0", "input_size": 32, "batch_size": 8, "epochs": 1, "progress": False,
         "n_threads": 1}


@pytest.fixture(scope="module")
def data():
    """18 levelled 64 px images of 9 samples, 3 classes (5/2/2 samples)."""
    d = make_synthetic_dataset(n_samples=9, images_per_sample=2, size_px=64, materials=["MoS2", "WS2", "WSe2"],
                               seed=3)
    return Preprocessor().fit_transform(d.images), d.labels, d.groups


@pytest.fixture(scope="module")
def fitted(data):
    X, y, groups = data
    return FineTuneClassifier(**SMALL, random_state=0).fit(X, y, groups)


def _separable(n_per_class: int = 4, seed: int = 0) -> tuple[list[AFMImage], np.ndarray]:
    """Fine random roughness vs broad stripes: trivially told apart."""
    rng = np.random.default_rng(seed)
    cols = np.arange(64)[None, :] * np.ones((64, 1))
    images, labels = [], []
    for _ in range(n_per_class):
        images.append(AFMImage(rng.normal(0, 1, (64, 64)), 10.0))
        labels.append("rough")
        images.append(AFMImage(np.sin(cols / 6 + rng.uniform(0, 6)) + rng.normal(0, 0.05, (64, 64)), 10.0))
        labels.append("striped")
    return images, np.array(labels, dtype=object)


def test_predict_proba_shapes_and_fitted_attributes(fitted, data):
    X, y, _ = data
    proba = fitted.predict_proba(X)
    assert proba.shape == (len(X), 3)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-6)
    assert list(fitted.classes_) == ["MoS2", "WS2", "WSe2"]
    assert set(fitted.predict(X)) <= set(fitted.classes_)
    assert 0.0 <= fitted.score(X, y) <= 1.0
    assert fitted.backbone_used_ == "efficientnet_lite0" and fitted.n_features_ == 1280
    assert fitted.n_epochs_ == 1 and fitted.best_epoch_ == 1 and len(fitted.history_) == 1
    entry = fitted.history_[0]
    assert set(entry) == {"epoch", "train_loss", "val_loss", "val_accuracy", "val_macro_f1", "seconds"}
    assert entry["val_loss"] is not None  # MoS2 has 5 samples: one is held out
    assert fitted.flops_per_image_ > estimate_flops("efficientnet_lite0", 32)  # backbone + head
    assert fitted.fit_flops_ >= 3 * fitted.flops_per_image_ * (len(X) - len(fitted.validation_indices_))
    assert fitted.predict_proba(X[:0]).shape == (0, 3)


def test_same_seed_gives_identical_model(fitted, data):
    X, y, groups = data
    again = FineTuneClassifier(**SMALL, random_state=0).fit(X, y, groups)
    np.testing.assert_array_equal(again.predict_proba(X), fitted.predict_proba(X))
    other = FineTuneClassifier(**SMALL, random_state=1).fit(X, y, groups)
    assert not np.array_equal(other.predict_proba(X), fitted.predict_proba(X))


def test_fit_leaves_global_torch_state_alone():
    X, y = _separable(2)
    torch.manual_seed(123)
    expected = torch.rand(3)
    threads = torch.get_num_threads()
    torch.manual_seed(123)
    FineTuneClassifier(**SMALL, frozen=True, validation_fraction=0.0).fit(X, y)
    assert torch.equal(torch.rand(3), expected)  # the fit ran on a forked RNG
    assert torch.get_num_threads() == threads
    assert not torch.are_deterministic_algorithms_enabled()


def test_training_loss_falls():
    X, y = _separable()
    clf = FineTuneClassifier(**{**SMALL, "epochs": 4}, lr=1e-3, validation_fraction=0.0, augment=False).fit(X, y)
    losses = [h["train_loss"] for h in clf.history_]
    assert clf.n_epochs_ == 4 and clf.best_epoch_ == 4  # no validation set: the last epoch is kept
    assert losses[-1] < 0.8 * losses[0], losses


def test_save_load_round_trip(fitted, data, tmp_path):
    X, _, _ = data
    fitted.save(tmp_path / "model")
    loaded = FineTuneClassifier.load(tmp_path / "model")
    np.testing.assert_array_equal(loaded.predict_proba(X), fitted.predict_proba(X))
    np.testing.assert_array_equal(loaded.predict(X), fitted.predict(X))
    assert loaded.get_params() == fitted.get_params()
    assert loaded.history_ == fitted.history_ and loaded.backbone_used_ == fitted.backbone_used_
    manifest = json.loads((tmp_path / "model" / "manifest.json").read_text())
    assert manifest["backbone_used"] == "efficientnet_lite0" and manifest["classes"] == ["MoS2", "WS2", "WSe2"]
    assert "torch" in manifest["versions"]


def _as_format_1(directory):
    """The manifest as format 1 wrote it (before the hybrid's model directory): no files list,
    no digest, the weights' SHA-256 as ``weights_sha256``."""
    path = directory / "manifest.json"
    manifest = json.loads(path.read_text())
    digest = manifest.pop("files")["model.pt"]
    for entry in ("directory_digest", "signed", "created"):
        manifest.pop(entry)
    manifest |= {"format_version": 1, "weights_file": "model.pt", "weights_sha256": digest}
    path.write_text(json.dumps(manifest, indent=1))
    return manifest


def test_load_rejects_missing_or_tampered_files(fitted, data, tmp_path):
    """The hybrid's checks: the directory digest covers the manifest, each file's SHA-256 the
    weights; a signed model needs its key. Format 1 directories still load and are checked."""
    directory = fitted.save(tmp_path / "model")
    manifest_path = directory / "manifest.json"
    good = manifest_path.read_text()

    manifest_path.write_text(good[: len(good) // 2])  # truncated
    with pytest.raises(ModelFileError, match="manifest.json"):
        FineTuneClassifier.load(directory)
    manifest = json.loads(good)
    manifest["classes"] = ["WS2", "MoS2", "WSe2"]
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(ModelFileError, match="manifest.json: directory_digest does not match"):
        FineTuneClassifier.load(directory)
    manifest_path.write_text(good)
    weights = (directory / "model.pt").read_bytes()
    (directory / "model.pt").write_bytes(weights[:-1] + bytes([weights[-1] ^ 1]))
    with pytest.raises(ModelFileError, match="model.pt: content differs"):
        FineTuneClassifier.load(directory)
    (directory / "model.pt").write_bytes(weights)

    old = _as_format_1(directory)  # what release 0.1.0 wrote: still loads, still checked
    X, _, _ = data
    np.testing.assert_array_equal(FineTuneClassifier.load(directory).predict_proba(X), fitted.predict_proba(X))
    manifest_path.write_text(json.dumps({**old, "weights_sha256": "0" * 64}))
    with pytest.raises(ModelFileError, match="model.pt"):
        FineTuneClassifier.load(directory)
    manifest_path.write_text(json.dumps({k: v for k, v in old.items() if k != "classes"}))
    with pytest.raises(ModelFileError, match="classes"):
        FineTuneClassifier.load(directory)
    manifest_path.unlink()
    with pytest.raises(ModelFileError, match="manifest.json"):
        FineTuneClassifier.load(directory)


def test_saving_is_signed_and_atomic_like_the_hybrid(fitted, tmp_path, monkeypatch):
    directory = fitted.save(tmp_path / "model", key="secret")
    assert json.loads((directory / "manifest.json").read_text())["signed"] is True
    with pytest.raises(ModelFileError, match="signed; pass its key"):
        FineTuneClassifier.load(directory)
    assert FineTuneClassifier.load(directory, key="secret").classes_.tolist() == fitted.classes_.tolist()
    with pytest.raises(ModelFileError, match="the key is wrong"):
        FineTuneClassifier.load(directory, key="other")
    (tmp_path / "thesis").mkdir()
    (tmp_path / "thesis" / "chapter1.tex").write_text("...")
    with pytest.raises(ModelFileError, match="will not replace it with a model"):
        fitted.save(tmp_path / "thesis")
    import torch

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(OSError, match="No space left"):
        fitted.save(directory, key="secret")
    assert FineTuneClassifier.load(directory, key="secret").classes_.tolist() == fitted.classes_.tolist()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_frozen_mode_leaves_backbone_unchanged(data):
    X, y, groups = data
    clf = FineTuneClassifier(**{**SMALL, "epochs": 2}, frozen=True, lr=1e-3).fit(X, y, groups)
    pretrained = load_efficientnet_lite0().state_dict()
    trained = clf.model_.features.inner.state_dict()
    assert trained.keys() == pretrained.keys()
    for key, tensor in pretrained.items():  # weights and batch-norm statistics alike
        assert torch.equal(trained[key], tensor), key
    fresh = FineTuneClassifier(**SMALL, frozen=True).fit(X, y, groups)
    assert not torch.equal(fresh.model_.head[0].weight, clf.model_.head[0].weight)  # the head did train


def test_grouped_validation_split_never_shares_a_group(fitted, data):
    _, y, groups = data
    for seed in range(5):
        train, val = grouped_validation_split(y, groups, 0.4, seed)
        assert not set(groups[train]) & set(groups[val])
        assert sorted(np.concatenate([train, val]).tolist()) == list(range(len(y)))
        assert set(y[train]) == set(y)  # every class keeps at least one training group
    val = fitted.validation_indices_
    assert len(val) > 0
    train = np.setdiff1d(np.arange(len(y)), val)
    assert not set(groups[val]) & set(groups[train])
    # without groups each image is its own group
    train, val = grouped_validation_split(y, None, 0.5, 0)
    assert len(val) > 0 and not set(train) & set(val)


def test_fit_continue_keeps_old_rows_and_adds_new_classes(data):
    X, y, groups = data
    X = np.array(X, dtype=object)
    two = np.isin(y, ["MoS2", "WS2"])
    clf = FineTuneClassifier(**SMALL).fit(list(X[two]), y[two], groups[two])
    assert list(clf.classes_) == ["MoS2", "WS2"]
    out = clf.model_.head[-1]
    old_w, old_b = out.weight.detach().clone(), out.bias.detach().clone()

    clf.set_params(lr=1e-12)  # so small a step that the copied rows stay put to ~1e-12
    clf.fit_continue(list(X), y, groups)
    assert list(clf.classes_) == ["MoS2", "WS2", "WSe2"]
    new = clf.model_.head[-1]
    assert new.weight.shape == (3, old_w.shape[1])
    torch.testing.assert_close(new.weight[:2], old_w, atol=1e-9, rtol=0)
    torch.testing.assert_close(new.bias[:2], old_b, atol=1e-9, rtol=0)
    assert not torch.allclose(new.weight[2], torch.zeros_like(new.weight[2]))  # freshly initialised row
    assert clf.predict_proba(list(X)).shape == (len(X), 3)
    assert [s["stage"] for s in clf.stages_] == ["fit", "continue"]
    assert clf.stages_[1]["classes"] == ["MoS2", "WS2", "WSe2"]


def test_missing_resnet_weights_fall_back_once(monkeypatch):
    monkeypatch.setattr(classifier_module, "_FALLBACK_WARNED", set())
    clf = FineTuneClassifier()  # resnet18 requested; its weights are absent here
    with pytest.warns(BackboneFallbackWarning, match="resnet18"):
        assert clf._resolve_backbone().name == "efficientnet_lite0"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the second time is silent
        assert clf._resolve_backbone().name == "efficientnet_lite0"
    with pytest.raises(WeightsNotFoundError):
        FineTuneClassifier(fallback=None)._resolve_backbone()
    with pytest.raises(WeightsNotFoundError):  # an explicit weights file is never silently replaced
        FineTuneClassifier(weights="/nonexistent/resnet18.pth")._resolve_backbone()


def test_estimate_flops():
    conv = torch.nn.Conv2d(3, 8, 3, padding=1, bias=False)
    assert estimate_flops(conv, 16) == 2 * 8 * 3 * 9 * 16 * 16
    assert 3.5e9 < estimate_flops("resnet18", 224) < 3.8e9  # 1.8 GMAC, no weights file needed


def test_input_validation_and_clone(data):
    X, y, groups = data
    with pytest.raises(ValueError, match="one label per image"):
        FineTuneClassifier(**SMALL).fit(X, y[:-1])
    with pytest.raises(ValueError, match="at least 2 classes"):
        FineTuneClassifier(**SMALL).fit(X[:2], y[:2])
    with pytest.raises(ValueError, match="epochs"):
        FineTuneClassifier(**{**SMALL, "epochs": 0}).fit(X, y)
    with pytest.raises(TypeError, match="AFMImage"):
        FineTuneClassifier(**SMALL).fit([np.zeros((8, 8))] * 2, ["a", "b"])
    params = FineTuneClassifier(**SMALL, frozen=True).get_params()
    assert clone(FineTuneClassifier(**params)).get_params() == params


def test_compare_command_uses_identical_folds_for_every_model(tmp_path):
    """`hybridtmd compare`: hybrid, its halves and fine-tuning on the same folds, with a report."""
    import pandas as pd
    from typer.testing import CliRunner

    from hybridtmd.cli import app
    from hybridtmd.datasets import write_synthetic_dataset

    write_synthetic_dataset(tmp_path / "data", n_samples=12, images_per_sample=2, size_px=64,
                            materials=["MoS2", "WSe2"], seed=1)
    config = tmp_path / "cfg.toml"
    config.write_text('[descriptors]\nfamilies = ["areal"]\n[embeddings]\ninput_size = 64\n'
                      '[model]\nood_neighbors = 3\n[model.xgboost]\nn_estimators = 20\n')
    result = CliRunner().invoke(app, ["compare", str(tmp_path / "data"), "-o", str(tmp_path / "cmp"), "--config",
                                      str(config), "--epochs", "1", "--min-steps", "1", "--folds", "3",
                                      "--max-folds", "2", "--input-size", "64"])
    assert result.exit_code == 0, result.output
    folds = pd.read_csv(tmp_path / "cmp" / "compare_folds.csv")
    assert sorted(folds["model"].unique()) == ["descriptors", "embeddings", "fine-tune", "hybrid"]
    sizes = folds.pivot(index="fold", columns="model", values="n_test")
    assert len(sizes) == 2 and (sizes.nunique(axis=1) == 1).all()  # identical test folds
    assert (folds["fit_flops"] > 0).where(folds["model"] != "descriptors", True).all()
    report = (tmp_path / "cmp" / "compare.md").read_text()
    assert "Cost ratio fine-tune / hybrid" in report and (tmp_path / "cmp" / "compare.png").stat().st_size > 0
    assert "Backbones actually used" in report and "efficientnet_lite0" in report and "Nadeau & Bengio" in report
    assert (tmp_path / "cmp" / "curves.png").stat().st_size > 0 and "sample_accuracy" in folds
