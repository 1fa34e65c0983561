"""Issue 32, the last hostile-input cases: values that overflow float32, file names that are not
text, the same content twice at the front door, manifest paths outside its folder and rows naming
devices and FIFOs, text in a feature table, length units no AFM uses, staging folders a crashed
save left, and malformed model-format versions. Each test failed before its fix (or, where marked
"guard", already worked and is kept working)."""

from __future__ import annotations

import json
import os
import shutil
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from corpus.files import skipped_reasons
from corpus.make_corpus import make_good, surface
from hybridtmd.cli import app
from hybridtmd.errors import AFMInputError, AFMInputWarning, ModelFileError
from hybridtmd.io import load_dataset, load_image, write_manifest

ENV = {"COLUMNS": "1000"}
CONFIG = ('[descriptors]\nfamilies = ["areal"]\n[embeddings]\nenabled = false\n'
          '[model]\nood_neighbors = 2\n[model.xgboost]\nn_estimators = 5\n')


def run(*args):
    return CliRunner().invoke(app, [str(a) for a in args], env=ENV)


def _manifest(folder: Path, rows: list[tuple[str, str, str]]) -> Path:
    path = folder / "manifest.csv"
    path.write_text("path,label,group\n" + "".join(f"{p},{label},{group}\n" for p, label, group in rows))
    return path


def _good_rows(folder: Path, n: int) -> list[tuple[str, str, str]]:
    return [(p.name, ("MoS2", "WSe2")[i % 2], f"s{i}") for i, p in enumerate(make_good(folder, n=n))]


# ------------------------------------------------------------------ 1. values beyond float32


def test_one_file_of_1e300_heights_is_skipped_and_named_and_the_rest_trains(tmp_path):
    """XGBoost's 'Input data contains inf' C++ stack, naming no file, stopped the whole run before."""
    data = tmp_path / "data"
    rows = _good_rows(data, 6)
    np.save(data / "huge.npy", surface(seed=9) * 1e300)
    _manifest(data, [*rows, ("huge.npy", "MoS2", "s9")])
    config = tmp_path / "cfg.toml"
    config.write_text(CONFIG)
    result = run("train", data, "-o", tmp_path / "model", "--pixel-size-nm", "8", "--config", config)
    assert result.exit_code == 1, result.output
    assert "trained on 6 images of 6 samples" in result.output and (tmp_path / "model" / "manifest.json").is_file()
    assert skipped_reasons(result.output)["huge.npy"].startswith("values up to 1.11e+300 nm (limit 1e+12 nm")


def test_a_table_value_beyond_float32_names_its_row_and_column():
    from hybridtmd.model import HybridClassifier, NonFiniteFeatureError, default_head

    table = pd.DataFrame(np.random.default_rng(0).normal(size=(8, 3)), columns=["a", "b", "c"])
    table.iloc[3, 1] = 1e300  # finite in float64: inf once XGBoost casts it to float32
    model = HybridClassifier(features=None, classifier=default_head(0, 1).set_params(n_estimators=3),
                             ood_neighbors=None, calibration=None)
    with pytest.raises(NonFiniteFeatureError, match="row 3: b infinite or beyond float32"):
        model.fit(table, ["x", "y"] * 4)


# ------------------------------------------------------------------ 2. names that are not text


def test_a_name_written_escaped_reads_back_as_that_file(tmp_path):
    """A dataset written as a manifest (names with ``\\xNN``) loads the same files again; extract
    to parquet takes such names (guard)."""
    folder = tmp_path / "bytes"
    good = make_good(folder, n=2)
    try:
        named = folder / os.fsdecode(b"corpus_MoS2_c_caf\xe9_good.tif")
        shutil.copy(good[0], named)
    except (OSError, UnicodeError):
        pytest.skip("the file system refuses names that are not UTF-8")
    dataset = load_dataset(folder)
    manifest = write_manifest(dataset, tmp_path / "manifest.csv")
    assert "caf\\xe9" in manifest.read_text()
    again = load_dataset(manifest)
    assert sorted(map(os.fsencode, again.paths)) == sorted(map(os.fsencode, dataset.paths))
    assert load_image(again.paths[list(again.groups).index("caf\\xe9")]).height.shape == (64, 64)
    result = run("extract", folder, "-o", tmp_path / "x.parquet", "--families", "areal")
    assert result.exit_code == 0, result.output
    assert any(p.endswith("caf\\xe9_good.tif") for p in pd.read_parquet(tmp_path / "x.parquet")["path"])


# ------------------------------------------------------------------ 3 and 4. the manifest's rows


def test_dataset_reports_the_same_content_under_two_samples_and_twice_in_one(tmp_path):
    data = tmp_path / "data"
    rows = _good_rows(data, 4)
    shutil.copy(data / rows[0][0], data / "copy_other.tif")
    shutil.copy(data / rows[0][0], data / "copy_same.tif")
    _manifest(data, [*rows, ("copy_other.tif", "WSe2", "s1"), ("copy_same.tif", "MoS2", "s0")])
    result = run("dataset", data / "manifest.csv")
    assert result.exit_code == 0, result.output
    out = result.output
    assert f"{data}/copy_other.tif: same content as a file of another sample (s1 vs s0): a train/test leak" in out
    assert f"{data}/copy_same.tif: same content listed twice in sample s0: one scan counted twice" in out


def test_paths_outside_the_manifest_folder_are_said_and_devices_and_fifos_never_read(tmp_path):
    data = tmp_path / "data"
    rows = _good_rows(data, 4)
    outside = make_good(tmp_path / "elsewhere", n=1)[0]
    os.mkfifo(data / "fifo.tif")
    extra = [(f"../elsewhere/{outside.name}", "MoS2", "s7"), ("../../../../../../etc/hostname", "MoS2", "s8"),
             ("/dev/null", "WSe2", "s9"), ("fifo.tif", "WSe2", "s10")]
    manifest = _manifest(data, [*rows, *extra])
    with pytest.warns(AFMInputWarning, match=r"3 path\(s\) point outside the manifest's folder .*elsewhere.*"
                                             r"/etc/hostname, /dev/null$"):
        dataset = load_dataset(manifest)
    assert len(dataset) == 6 and [reason for _, reason in dataset.skipped] == [
        "not a regular file (a folder, FIFO, device or broken link)"] * 2
    result = run("dataset", manifest)  # the FIFO is never opened: this returns
    assert result.exit_code == 0, result.output  # a check: it lists what a batch command would skip
    assert "6 images" in result.output and set(skipped_reasons(result.output)) == {"null", "fifo.tif"}


# ------------------------------------------------------------------ 5. text in a feature table


def test_a_text_cell_in_a_feature_table_names_its_column_and_row():
    from hybridtmd.model import HybridClassifier, NonNumericFeatureError, default_head

    table = pd.DataFrame(np.random.default_rng(0).normal(size=(8, 3)), columns=["a", "b", "c"]).astype(object)
    table.iloc[3, 1] = "abc"
    table.iloc[5, 1] = "n/a"
    model = HybridClassifier(features=None, classifier=default_head(0, 1).set_params(n_estimators=3),
                             ood_neighbors=None, calibration=None)
    with pytest.raises(NonNumericFeatureError, match=r"column 'b', row 3: 'abc' is not a number \(1 more cell"):
        model.fit(table, ["x", "y"] * 4)


# ------------------------------------------------------------------ 6. length units


@pytest.mark.parametrize(("unit", "factor"), [("pm", 1e-3), ("Å", 0.1), ("nm", 1.0), ("mm", 1e6), ("m", 1e9),
                                              ("fm", None), ("km", None), ("parsec", None), ("inch", None)])
def test_length_units_from_picometres_to_metres_only(tmp_path, unit, factor):
    path = tmp_path / "unit.npz"
    heights = surface()
    np.savez(path, height=heights, pixel_size_nm=8.0, z_unit=unit)
    if factor is None:
        with pytest.raises(AFMInputError, match=f"z unit '{unit}' is a length no AFM height is stored in"):
            load_image(path)
        return
    image = load_image(path)
    assert image.z_unit == "nm"
    np.testing.assert_allclose(image.height, heights * factor, rtol=1e-12)


def test_a_signal_unit_is_still_a_signal(tmp_path):
    """Guard: units that are not lengths (V, deg) stay a non-height channel in their unit."""
    path = tmp_path / "phase.npz"
    np.savez(path, height=surface(), pixel_size_nm=8.0, z_unit="deg")
    assert load_image(path).z_unit == "deg"


# ------------------------------------------------------------------ 7. staging folders of crashed saves


def test_the_next_save_removes_stale_staging_folders_and_names_recent_ones(tmp_path):
    from hybridtmd.model.leftovers import STALE_AFTER_S
    from hybridtmd.model.persistence import write_model_directory

    def write(folder: Path) -> None:
        (folder / "manifest.json").write_text("{}")

    target = tmp_path / "model"
    stale, recent = tmp_path / ".model.new-crashed", tmp_path / ".model.new-running"
    for folder in (stale, recent):
        folder.mkdir()
        (folder / "classifier.json").write_text("half a model")
    past = time.time() - STALE_AFTER_S - 60
    for path in (stale / "classifier.json", stale):
        os.utime(path, (past, past))
    other = tmp_path / ".othermodel.new-x"  # another model's: not this save's business
    other.mkdir()
    os.utime(other, (past, past))
    with pytest.warns(UserWarning, match=r"staging folder\(s\) of another save of model .*: \.model\.new-running$"):
        write_model_directory(target, write)
    assert (target / "manifest.json").is_file()
    assert not stale.exists() and recent.is_dir() and other.is_dir()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        write_model_directory(target, write)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".model.new-running", ".othermodel.new-x", "model"]


# ------------------------------------------------------------------ 8. model-format versions


@pytest.mark.parametrize(("version", "match"), [
    ("2", r"format_version '2' is not a whole number: the manifest was edited or damaged"),
    (2.0, r"format_version 2\.0 is not a whole number"),
    (True, r"format_version True is not a whole number"),
    (None, r"format_version None is not a whole number"),
    (0, r"model format 0 is older than this hybridtmd \(.*\) reads \(formats 1 to 5"),
    (99, r"model format 99 is newer than this hybridtmd \(.*\) reads \(format 5\); upgrade hybridtmd"),
])
def test_a_malformed_an_older_and_a_newer_format_version_each_have_their_message(tmp_path, version, match):
    from hybridtmd.model.persistence import read_manifest

    (tmp_path / "manifest.json").write_text(json.dumps({"format": "hybridtmd.test", "format_version": version}))
    with pytest.raises(ModelFileError, match=match):
        read_manifest(tmp_path, "hybridtmd.test", 5, required=(), files=())
