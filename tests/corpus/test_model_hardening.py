"""Issue 16, models: tampered manifests, the directory digest (and HMAC key), atomic saving,
resolved families, cache paths and entries, non-finite features and NaN/inf OOD scores. Each test
fails on the code before the fix (a silent wrong result or a traceback there)."""

from __future__ import annotations

import json
import os
import shutil
import time
import warnings

import numpy as np
import pandas as pd
import pytest

from corpus.tampering import forge_manifest
from hybridtmd.embeddings.cache import CacheWarning, EmbeddingCache
from hybridtmd.errors import ModelFileError
from hybridtmd.model import HybridClassifier, HybridFeatures, NonFiniteFeatureError, default_head
from hybridtmd.model.leftovers import STALE_AFTER_S


@pytest.fixture(scope="module")
def table():
    rng = np.random.default_rng(0)
    n = 36
    y = np.array(["MoS2", "WS2", "WSe2"] * (n // 3))
    X = pd.DataFrame(rng.normal(size=(n, 4)), columns=["phys__sq_nm", "phys__sa_nm", "latent__0000", "latent__0001"])
    X["phys__sq_nm"] += pd.Series(y).map({"MoS2": -3.0, "WS2": 0.0, "WSe2": 3.0}).to_numpy()
    return X, y


def small_model() -> HybridClassifier:
    return HybridClassifier(classifier=default_head(0, n_jobs=1).set_params(n_estimators=10))


@pytest.fixture(scope="module")
def saved(table, tmp_path_factory):
    X, y = table
    return small_model().fit(X, y).save(tmp_path_factory.mktemp("model") / "m")


def copy_of(saved, tmp_path):
    return shutil.copytree(saved, tmp_path / "copy")




# ------------------------------------------------------------------------------------- manifest schema

@pytest.mark.parametrize("edit, match", [
    (lambda m: {"classes": [m["classes"][1], m["classes"][0], m["classes"][2]]}, "classes.*sorted"),
    (lambda m: {"classes": m["classes"][:2]}, "head outputs 3 classes"),
    (lambda m: {"classes": ["MoS2", "MoS2", "WSe2"]}, "labels repeat"),
    (lambda m: {"classes_dtype": "<U1"}, "does not hold the labels"),
    (lambda m: {"classes_dtype": "<f8"}, "not a string or integer dtype"),
    (lambda m: {"ood_threshold": 1e300}, "switch the OOD flag off"),
    (lambda m: {"ood_threshold": float("nan")}, "finite positive"),
    (lambda m: {"ood_threshold": -1.0}, "finite positive"),
    (lambda m: {"ood_threshold": "high"}, "finite positive"),
    (lambda m: {"temperature": 0.05}, "temperature"),
    (lambda m: {"temperature": float("inf")}, "temperature"),
    (lambda m: {"n_features_in": 3}, "feature_names"),
    (lambda m: {"feature_groups": {"evil": ["not_a_column"]}}, "feature_groups"),
])
def test_forged_manifest_values_are_refused(saved, tmp_path, edit, match):
    directory = copy_of(saved, tmp_path)
    forge_manifest(directory, **edit(json.loads((directory / "manifest.json").read_text())))
    with pytest.raises(ModelFileError, match=match):
        HybridClassifier.load(directory)


@pytest.mark.parametrize("edit", [
    lambda d, m: {"metrics": {"accuracy": 0.99}},  # harmless-looking
    lambda d, m: {"classes": list(reversed(m["classes"]))},  # swaps predictions
    lambda d, m: {"ood_threshold": m["ood_threshold"] * 10},  # within range, yet edited
])
def test_any_manifest_edit_breaks_the_directory_digest(saved, tmp_path, edit):
    directory = copy_of(saved, tmp_path)
    path = directory / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest.update(edit(directory, manifest))
    path.write_text(json.dumps(manifest))
    with pytest.raises(ModelFileError, match="directory_digest does not match"):
        HybridClassifier.load(directory)


def test_another_models_arrays_with_an_updated_hash_are_refused(table, saved, tmp_path):
    from hybridtmd._utils.digests import file_sha256

    X, y = table
    other = small_model().fit(X.iloc[::-1], y[::-1]).save(tmp_path / "other")
    directory = copy_of(saved, tmp_path)
    shutil.copy(other / "arrays.npz", directory / "arrays.npz")
    path = directory / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["files"]["arrays.npz"] = file_sha256(directory / "arrays.npz")
    path.write_text(json.dumps(manifest))
    with pytest.raises(ModelFileError, match="directory_digest"):
        HybridClassifier.load(directory)


def test_signed_model_needs_its_key(table, tmp_path, monkeypatch):
    X, y = table
    monkeypatch.delenv("HYBRIDTMD_MODEL_KEY", raising=False)
    model = small_model().fit(X, y)
    directory = model.save(tmp_path / "signed", key="lab secret")
    assert json.loads((directory / "manifest.json").read_text())["signed"] is True
    with pytest.raises(ModelFileError, match="signed; pass its key"):
        HybridClassifier.load(directory)
    with pytest.raises(ModelFileError, match="or the key is wrong"):
        HybridClassifier.load(directory, key="guess")
    monkeypatch.setenv("HYBRIDTMD_MODEL_KEY", "lab secret")
    np.testing.assert_array_equal(HybridClassifier.load(directory).predict_proba(X), model.predict_proba(X))
    forge_manifest(directory, key=None, temperature=None)  # a forger without the key recomputes a plain SHA-256
    with pytest.raises(ModelFileError, match="does not match"):
        HybridClassifier.load(directory)


# ------------------------------------------------------------------------------------------ saving

def test_a_failed_save_leaves_the_previous_model(table, tmp_path, monkeypatch):
    import hybridtmd.model.classifier as classifier_module

    X, y = table
    old = small_model().fit(X, y)
    directory = old.save(tmp_path / "m")
    before = {p.name: p.read_bytes() for p in directory.iterdir()}

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(classifier_module, "write_arrays", full_disk)
    retrained = small_model().set_params(class_weight=None).fit(X, y[::-1])
    with pytest.raises(OSError, match="No space left"):
        retrained.save(directory)
    assert {p.name: p.read_bytes() for p in directory.iterdir()} == before  # untouched, still whole
    assert [p.name for p in tmp_path.iterdir()] == ["m"]  # no temporary left behind
    np.testing.assert_array_equal(HybridClassifier.load(directory).predict_proba(X), old.predict_proba(X))


def test_saving_over_a_model_replaces_it_whole_but_never_a_foreign_folder(table, tmp_path):
    X, y = table
    directory = small_model().fit(X, y).save(tmp_path / "m")
    (directory / "stale.txt").write_text("left from before")
    HybridClassifier(classifier=default_head(1, 1).set_params(n_estimators=5)).fit(X, y).save(directory)
    assert not (directory / "stale.txt").exists()
    assert HybridClassifier.load(directory).classifier_.get_params()["random_state"] == 1
    foreign = tmp_path / "my_thesis"
    foreign.mkdir()
    (foreign / "chapter1.tex").write_text("precious")
    with pytest.raises(ModelFileError, match="will not replace it"):
        small_model().fit(X, y).save(foreign)
    assert (foreign / "chapter1.tex").read_text() == "precious"


class Killed(BaseException):
    """The process dies here: nothing after this point touches the disk."""


#: the file-system steps of a save (each a point where it may be killed or fail)
SAVE_STEPS = (("os", "replace"), ("shutil", "rmtree"), ("tempfile", "mkdtemp"), ("tempfile", "mkstemp"))
#: what a cleanup may call after a failure; a killed process calls none of them
CLEANUPS = (("os", "unlink"), ("os", "rmdir"), ("os", "chmod"), ("os", "rename"))


def interrupted_save(model, directory, monkeypatch, step: int, kill: bool) -> bool:
    """Save ``model`` into ``directory``, stopped at file-system step ``step`` (1, 2...): killed
    (no cleanup runs, as after SIGKILL) or an OSError (the cleanup runs). False when the save
    has fewer steps (it completed)."""
    import importlib

    state = {"n": 0, "dead": False}

    def gate(real, counted):
        def call(*args, **kwargs):
            if state["dead"]:
                return None
            if counted:
                state["n"] += 1
                if state["n"] == step:
                    state["dead"] = kill
                    raise Killed() if kill else OSError(28, "No space left on device")
            return real(*args, **kwargs)
        return call

    with monkeypatch.context() as patch:
        for names, counted in ((SAVE_STEPS, True), (CLEANUPS, False)):
            for module, name in names:
                target = importlib.import_module(module)
                patch.setattr(target, name, gate(getattr(target, name), counted))
        try:
            model.save(directory)
        except (Killed, OSError):
            return True
    return False


@pytest.mark.parametrize("kill", [True, False], ids=["killed", "failed"])
def test_a_save_stopped_at_any_step_loses_no_model(table, tmp_path, monkeypatch, kill):
    """Issue 34: a save killed between its two renames left the model folder missing, the old
    model hidden in .NAME.old-*; now the next load (or save) puts it back, and an error there
    puts it back at once. At every step, the folder loads as the old or the new model."""
    X, y = table
    old, new = small_model().fit(X, y), small_model().set_params(class_weight=None).fit(X, y[::-1])
    old_p, new_p = old.predict_proba(X), new.predict_proba(X)
    assert not np.allclose(old_p, new_p)
    directory = tmp_path / "m"
    step = 0
    while True:
        step += 1
        shutil.rmtree(directory, ignore_errors=True)
        old.save(directory)
        if not interrupted_save(new, directory, monkeypatch, step, kill):
            break
        loaded = HybridClassifier.load(directory).predict_proba(X)  # recovers, or the swap was done
        assert np.array_equal(loaded, old_p) or np.array_equal(loaded, new_p), step
        for staging in tmp_path.glob(".m.new-*"):  # a killed save's staging folder, two hours later
            for entry in [staging, *staging.iterdir()]:
                os.utime(entry, (time.time() - 2 * STALE_AFTER_S,) * 2)
        new.save(directory)  # and the next save cleans what the interrupted one left
        assert np.array_equal(HybridClassifier.load(directory).predict_proba(X), new_p)
        assert [p.name for p in tmp_path.iterdir()] == ["m"], step
    assert step > 8  # every step of a whole save was interrupted once


def test_a_model_left_by_a_killed_swap_is_named_when_it_cannot_be_moved_back(table, tmp_path, monkeypatch):
    import os

    X, y = table
    directory = small_model().fit(X, y).save(tmp_path / "m")
    aside = tmp_path / ".m.old-abc123"
    aside.mkdir()
    os.replace(directory, aside / "model")  # the state a kill between the two renames leaves
    with pytest.warns(UserWarning, match=r"restored the previous model from .*\.m\.old-abc123"):
        HybridClassifier.load(directory)
    assert not aside.exists()  # moved back whole
    aside.mkdir()
    os.replace(directory, aside / "model")

    def read_only(*args):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(os, "replace", read_only)
    with pytest.raises(ModelFileError, match=r"previous model in .*\.m\.old-abc123.*move it to"):
        HybridClassifier.load(directory)


# -------------------------------------------------------------------------- families and the cache

def test_saved_features_store_the_resolved_family_list(tmp_path):
    from hybridtmd.datasets import load_example_dataset
    from hybridtmd.descriptors import DescriptorExtractor

    data = load_example_dataset()
    rows = np.concatenate([np.flatnonzero(np.asarray(data.labels) == c)[:3] for c in data.classes[:2]])
    images = [data[int(i)] for i in rows]
    features = HybridFeatures(descriptors=DescriptorExtractor(families=None), embedder=None)
    model = HybridClassifier(features=features, classifier=default_head(0, 1).set_params(n_estimators=5),
                             ood_neighbors=None).fit(images, np.asarray(data.labels)[rows].astype(str))
    directory = model.save(tmp_path / "m")
    families = json.loads((directory / "manifest.json").read_text())["features"]["descriptors"]["families"]
    # the resolved columns (not None, whose meaning would follow the defaults at load time)
    assert isinstance(families, list) and families == list(model.features_.descriptors_.get_feature_names_out())
    reloaded = HybridClassifier.load(directory)
    assert list(reloaded.features_.descriptors_.get_feature_names_out()) == families


def test_a_relative_cache_dir_is_not_followed_from_a_saved_model(tmp_path):
    settings = {"level_images": True, "level_config": None, "descriptors": None,
                "embedder": {"backbone": "efficientnet_lite0", "weights": None, "tta": "none", "input_size": 224,
                             "clip_percentiles": [1.0, 99.0], "tile_size_px": None, "tile_stride_px": None,
                             "batch_size": 16, "device": "cpu", "cache_dir": "relative/cache"}}
    assert HybridFeatures.from_settings(settings).embedder.cache_dir is None
    cache = EmbeddingCache("relative/cache", "resnet18")
    assert cache.root.is_absolute()


def test_swapped_cache_entries_are_detected(tmp_path):
    cache = EmbeddingCache(tmp_path, "resnet18")
    a, b = "a" * 64, "b" * 64
    cache.put(a, np.ones(8))
    cache.put(b, np.zeros(8))
    pa, pb = cache.path(a), cache.path(b)
    swap = pa.read_bytes()
    pa.write_bytes(pb.read_bytes())
    pb.write_bytes(swap)
    with pytest.warns(CacheWarning, match="another key"):
        assert cache.get(a, 8) is None
    cache.put(a, np.ones(8))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        np.testing.assert_array_equal(cache.get(a, 8), np.ones(8, np.float32))


# ------------------------------------------------------------------------ non-finite features and OOD

def test_infinite_features_are_an_error_naming_the_row(table):
    X, y = table
    model = small_model().fit(X, y)
    bad = X.iloc[:3].copy()
    bad.index = ["scan_a.tif", "scan_b.tif", "scan_c.tif"]
    bad.iloc[1, 0] = np.inf
    with pytest.raises(NonFiniteFeatureError, match=r"scan_b\.tif.*phys__sq_nm") as info:
        model.predict_frame(bad)
    assert info.value.rows == [1]
    with pytest.raises(NonFiniteFeatureError, match="infinite"):
        small_model().fit(X.assign(latent__0001=np.where(np.arange(len(X)) == 4, -np.inf, X.latent__0001)), y)


def test_overflowing_and_all_missing_rows_are_flagged_out_of_distribution(table):
    X, y = table
    model = small_model().fit(X, y)
    odd = X.iloc[:3].copy()
    odd.iloc[0, :] = 1e200  # finite, but the squared distances overflow to NaN/inf
    odd.iloc[1, :] = np.nan  # nothing known about this image
    frame = model.predict_frame(odd)
    assert frame["out_of_distribution"].tolist() == [True, True, False]
    assert np.isinf(frame["ood_score"].iloc[1])
    assert model.is_out_of_distribution(odd).tolist() == [True, True, False]
