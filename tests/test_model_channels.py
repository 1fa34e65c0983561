"""Multichannel models: HybridFeatures(channels=...), its model files, the loaders that read the
channels a model needs, the [descriptors] channels config and the commands (train, evaluate,
predict, explain, extract) with --channels; a real Bruker file with height and phase."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from corpus.files import shared_afm_files
from typer.testing import CliRunner

from hybridtmd.cli import app
from hybridtmd.config import Config, ConfigError, load_config
from hybridtmd.descriptors import DescriptorExtractor, channel_selections
from hybridtmd.io import AFMImage, load_channels, load_images
from hybridtmd.model import HybridClassifier, HybridFeatures

runner = CliRunner()
CHANNELS = {"height": ["areal"], "phase": ["areal", "texture"]}


def _phase(height: AFMImage, seed: int) -> AFMImage:
    """A phase map (degrees) of a height image: film contrast plus noise, in its own unit."""
    rng = np.random.default_rng(seed)
    z = height.height
    phase = AFMImage(12.0 * (z > np.median(z)) + rng.normal(0, 0.5, z.shape), height.pixel_size_nm, "Phase",
                     height.source, z_unit="deg")
    return phase


@pytest.fixture(scope="module")
def scans(small_synthetic):
    return [{"height": im, "phase": _phase(im, k)} for k, im in enumerate(small_synthetic.images)]


def _features(channels=CHANNELS) -> HybridFeatures:
    return HybridFeatures(descriptors=DescriptorExtractor(families=["areal"], level_images=False), embedder=None,
                          channels=channels)


def test_features_pass_channels_to_the_extractor_and_level_only_the_height(scans):
    features = _features()
    assert features.get_params()["channels"] is CHANNELS  # stored unchanged
    with pytest.warns(UserWarning, match="coarser than the reference"):
        table = features.fit_transform(scans)
    assert {"phys__sq_nm", "phys__phase__sq", "phys__phase__glcm_contrast_d1px"} <= set(table.columns)
    assert features.descriptors_.channels == CHANNELS
    assert list(features.feature_groups_) == ["areal", "phase__areal", "phase__texture"]
    assert features.feature_units_["phys__phase__sq"] == "deg" and features.feature_units_["phys__sq_nm"] == "nm"
    # the height half is the levelled height map, the phase half the phase map as read
    direct = DescriptorExtractor(channels=CHANNELS, progress=False)
    with warnings.catch_warnings(record=True) as again:
        warnings.simplefilter("always")
        expected = direct.fit_transform(scans)
    assert not [w for w in again if "coarser" in str(w.message)]  # once per run (issue 26.11)
    np.testing.assert_allclose(table.to_numpy(), expected.add_prefix("phys__").to_numpy(), rtol=1e-12)
    with pytest.raises(ValueError, match="'channels' parameter"):
        _features({"ph ase": ["areal"]}).fit(scans)
    with pytest.raises(ValueError, match="needs the descriptors half"):
        HybridFeatures(descriptors=None, embedder="default", channels=CHANNELS).fit(scans)
    with pytest.raises(TypeError, match="height maps only"):
        _features(None).fit(scans)
    with pytest.raises(ValueError, match="differ from channels"):
        HybridFeatures(descriptors=DescriptorExtractor(channels={"phase": ["areal"]}), embedder=None,
                       channels=CHANNELS).fit(scans)


def test_multichannel_model_saves_its_channels_and_predicts_the_same_after_loading(scans, small_synthetic, tmp_path):
    model = HybridClassifier(features=_features(), random_state=0, calibration=None)
    with pytest.warns(UserWarning):
        model.fit(scans, small_synthetic.labels, groups=small_synthetic.groups)
    model.save(tmp_path / "m")
    manifest = json.loads((tmp_path / "m" / "manifest.json").read_text())
    saved = manifest["features"]["channels"]
    assert list(saved) == ["height", "phase"] and "sq_nm" in saved["phase"] and "glcm_contrast_d1px" in saved["phase"]
    assert "phase__texture" in manifest["feature_groups"]
    loaded = HybridClassifier.load(tmp_path / "m")
    assert loaded.features_.channels == saved
    # each channel's unit as seen at fit, not a.u. (issue 26.10)
    assert loaded.features_.feature_units_["phys__phase__sq"] == "deg"
    assert manifest["features"]["channel_units"] == {"height": "nm", "phase": "deg"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # coarser than the reference: said once, at fit
        np.testing.assert_array_equal(loaded.predict_proba(scans), model.predict_proba(scans))
    # a forged manifest (digest recomputed) asking a height-only family of the phase map: one clear error
    from corpus.tampering import forge_manifest

    from hybridtmd.errors import ModelFileError

    forged = json.loads(json.dumps(manifest["features"]))
    forged["channels"]["phase"] = ["grains"]
    forge_manifest(tmp_path / "m", features=forged)
    with pytest.raises(ModelFileError, match="invalid feature settings.*height maps only"):
        HybridClassifier.load(tmp_path / "m")
    # a bare height image lacks the phase channel: its phase columns are NaN, the model still answers
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # coarser than the reference: said once, at fit
        table = loaded.transform_features([scans[0]["height"]])
    assert table.filter(like="phys__phase__").isna().all(axis=None) and np.isfinite(table["phys__sq_nm"]).all()


def _gwy(path: Path, images: dict[str, AFMImage]) -> Path:
    """A Gwyddion file with one data field per channel (heights in m, others in their unit)."""
    from gwyfile.objects import GwyContainer, GwyDataField, GwySIUnit

    container = GwyContainer()
    for i, (title, image) in enumerate(images.items()):
        px, py = image.pixel_size_nm
        rows, cols = image.shape
        length = image.z_unit == "nm"
        container[f"/{i}/data/title"] = title
        container[f"/{i}/data"] = GwyDataField(
            image.height * (1e-9 if length else 1.0), xreal=cols * px * 1e-9, yreal=rows * py * 1e-9,
            si_unit_xy=GwySIUnit(unitstr="m"), si_unit_z=GwySIUnit(unitstr="m" if length else image.z_unit))
    container.tofile(str(path))
    return path


@pytest.fixture(scope="module")
def gwy_dataset(small_synthetic, scans, tmp_path_factory):
    """The synthetic set's two classes with several samples (MoS2, WS2) as two-channel .gwy
    files named by the paper's convention, plus one height-only file."""
    folder = tmp_path_factory.mktemp("gwy")
    for k, (scan, label, group) in enumerate(zip(scans, small_synthetic.labels, small_synthetic.groups,
                                                 strict=True)):
        if label not in ("MoS2", "WS2"):
            continue
        _gwy(folder / f"syn_{label}_2um_{group}_img{k}.gwy", {"Height": scan["height"], "Phase": scan["phase"]})
    lone = _gwy(tmp_path_factory.mktemp("lone") / "x_MoS2_a_99_img0.gwy", {"Height": scans[0]["height"]})
    return folder, lone


def test_loaders_read_the_channels_asked_and_skip_a_file_without_one(gwy_dataset):
    folder, lone = gwy_dataset
    first = sorted(folder.glob("*.gwy"))[0]
    channels = load_channels(first, ["height", "phase"])
    assert list(channels) == ["height", "phase"] and channels["phase"].z_unit == "deg"
    assert channels["height"].z_unit == "nm"
    report = load_images([first, lone], channels=["height", "phase"])
    assert len(report.images) == 1 and set(report.images[0]) == {"height", "phase"}
    assert report.errors == [(str(lone), "has no 'phase' channel (its channels: height (Height))")]


def test_config_channels_list_or_table(tmp_path):
    listed = Config.from_dict({"descriptors": {"families": ["areal"], "channels": ["height", "Phase"]}})
    assert listed.descriptors.channels == channel_selections(["height", "phase"], ["areal"])
    assert listed.descriptors.channels["phase"] == ["areal", "spectral", "texture"]
    model = HybridClassifier.from_config(listed)
    assert model.features.channels == listed.descriptors.channels
    config = tmp_path / "c.toml"
    config.write_text('[descriptors]\nchannels = {height = ["areal"], phase = ["texture"]}\n')
    assert load_config(config).descriptors.channels == {"height": ["areal"], "phase": ["texture"]}
    assert load_config(config).to_dict()["descriptors"]["channels"] == {"height": ["areal"], "phase": ["texture"]}
    config.write_text('[descriptors]\nchannels = {phase = ["grains"]}\n')
    with pytest.raises(ConfigError, match=r"c.toml: \[descriptors\] .*height maps only"):
        load_config(config)
    config.write_text('[descriptors]\nchannels = {phase = ["areal"], "a b" = ["areal"]}\n')
    with pytest.raises(ConfigError, match=r"\[descriptors\] channels: keys must be channel names"):
        load_config(config)
    config.write_text('[descriptors]\nchannels = ["height"]\nchanels = 3\n')
    with pytest.raises(ConfigError, match="chanels"):
        load_config(config)


def test_train_evaluate_predict_explain_with_channels(gwy_dataset, tmp_path):
    folder, lone = gwy_dataset
    config = tmp_path / "c.toml"
    config.write_text('[descriptors]\nfamilies = ["areal"]\n[embeddings]\nenabled = false\n'
                      '[model]\nclassifier = "xgboost"\ncalibration_folds = 2\n[model.xgboost]\nn_estimators = 20\n')
    model_dir = tmp_path / "model"
    result = runner.invoke(app, ["train", str(folder), "-o", str(model_dir), "--config", str(config),
                                 "--channels", "height,phase"])
    assert result.exit_code == 0, result.output
    assert "phase__areal" in result.output and "phase__texture" in result.output
    manifest = json.loads((model_dir / "manifest.json").read_text())
    assert list(manifest["features"]["channels"]) == ["height", "phase"]
    # predict reads both channels of each file; the height-only file is skipped with its reason
    files = sorted(folder.glob("*.gwy"))[:3]
    out = tmp_path / "p.csv"
    result = runner.invoke(app, ["predict", str(model_dir), *map(str, files), str(lone), "-o", str(out)])
    assert result.exit_code == 1, result.output
    assert "has no 'phase' channel" in result.output and lone.name in result.output
    table = pd.read_csv(out)
    assert table["file"].tolist() == [str(f) for f in files]
    expected = HybridClassifier.load(model_dir).predict([load_channels(f, ["height", "phase"]) for f in files])
    assert table["label"].tolist() == expected.tolist()
    report = tmp_path / "explain"
    result = runner.invoke(app, ["explain", str(model_dir), *map(str, files), "-o", str(report), "--max-images", "1",
                                 "--group-by", "channel"])
    assert result.exit_code == 0, result.output
    attribution = pd.read_csv(report / "group_attribution.csv")
    assert set(attribution["group"]) == {"height", "phase"}
    evaluation = tmp_path / "eval"
    result = runner.invoke(app, ["evaluate", str(folder), "-o", str(evaluation), "--config", str(config),
                                 "--channels", "height,phase", "--folds", "2", "--permutations", "0",
                                 "--no-ablation"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["train", str(folder), "-o", str(tmp_path / "m2"), "--channels", "height,ph ase"])
    assert result.exit_code == 2 and "identifiers" in result.output


def test_real_bruker_file_extract_and_features_with_height_and_phase(tmp_path):
    """di-3.di (Bruker Dimension Icon): channels ZSensor, AmplitudeError, Phase, Height."""
    folder = shared_afm_files()
    if folder is None or not (folder / "di-3.di").is_file():
        pytest.skip("../shared/data/afm_files/di-3.di is absent")
    path = folder / "di-3.di"
    manifest = tmp_path / "manifest.csv"
    manifest.write_text(f"path,label,group\n{path},film,s1\n")
    out = tmp_path / "features.csv"
    result = runner.invoke(app, ["extract", str(manifest), "-o", str(out), "--families", "areal",
                                 "--channels", "height,phase"])
    assert result.exit_code == 0, result.output
    table = pd.read_csv(out)
    assert table.loc[0, ["sq_nm", "phase__sq", "phase__glcm_contrast_d1px"]].notna().all()
    channels = load_channels(path, ["height", "phase"])
    assert channels["height"].channel == "Height" and channels["phase"].channel == "Phase"
    assert channels["phase"].z_unit != "nm"
    features = _features({"height": ["areal"], "phase": ["areal", "texture"]})
    row = features.fit_transform([channels])
    assert features.feature_units_["phys__phase__sq"] == channels["phase"].z_unit
    np.testing.assert_allclose(row.loc[0, "phys__phase__sq"], table.loc[0, "phase__sq"], rtol=1e-6)
    assert row.loc[0, "phys__sq_nm"] == pytest.approx(table.loc[0, "sq_nm"], rel=1e-6)
    # --channel picks the height channel (ZSensor instead of Height)
    sensor = load_channels(path, ["height", "phase"], channel="ZSensor")
    assert sensor["height"].channel == "ZSensor"


def test_held_out_explanations_of_channel_maps_group_by_channel(scans, small_synthetic):
    from hybridtmd.explanation import explain_held_out

    keep = np.isin(small_synthetic.labels, ["MoS2", "WS2"])
    items = [scan for scan, kept in zip(scans, keep, strict=True) if kept]
    model = HybridClassifier(features=_features(), classifier="xgboost", calibration=None, ood_neighbors=None,
                             random_state=0)
    with pytest.warns(UserWarning):
        explained = explain_held_out(model, items, small_synthetic.labels[keep], small_synthetic.groups[keep],
                                     n_splits=2, group_by="channel")
    assert list(explained.groups.feature_names) == ["height", "phase"]
    assert explained.names == [scan["height"].name for scan in items]
    assert all(isinstance(im, AFMImage) for im in explained.train_images)  # height maps for the thumbnails


def test_feature_store_with_channels_equals_the_in_memory_rows(gwy_dataset, tmp_path):
    pytest.importorskip("pyarrow")
    from hybridtmd.model.store import extract_to_store, features_table, read_manifest, store_features

    folder, lone = gwy_dataset
    paths = [*sorted(folder.glob("*.gwy"))[:4], lone]
    extractor = DescriptorExtractor(families=["areal"], channels=CHANNELS, progress=False)
    report = extract_to_store(paths, tmp_path / "s", extractor=extractor, partition_size=2, progress=False)
    assert report.complete and [Path(p).name for p, _ in report.errors] == [lone.name]  # it lacks the phase
    assert read_manifest(tmp_path / "s")["load"]["channels"] == ["height", "phase"]
    rows = features_table(tmp_path / "s")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        memory = _features().fit_transform(load_images(paths[:4], channels=["height", "phase"]).images)
    pd.testing.assert_frame_equal(rows.table, memory, check_exact=True)
    assert store_features(tmp_path / "s").feature_units_["phys__phase__sq"] == "deg"  # the unit seen in the files
