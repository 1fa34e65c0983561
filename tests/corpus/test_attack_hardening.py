"""Issue 16, second round: inputs a hostile or unlucky user gives the command line and the Python
API - a CUDA model on a CPU machine, JSON/TOML nested past the recursion limit, fold counts and
other numbers out of range, folders of unconventional names, file names whose bytes are not text,
outputs that would overwrite inputs, FIFOs and broken links named like scans, label twins, an empty
HMAC key. Each case gave a traceback, a hang or a silent wrong result before its fix (or, where
marked "guard", already worked and is kept working)."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from reproducibility import CROSS_ISA_BOUND
from typer.testing import CliRunner

from corpus.make_corpus import make_good
from corpus.tampering import write_forged
from hybridtmd.cli import app
from hybridtmd.config import ConfigError
from hybridtmd.errors import AFMInputError, AFMInputWarning, ModelFileError
from hybridtmd.io import load_dataset, load_images

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")
RELEASE = Path(__file__).resolve().parents[1] / "fixtures" / "release_0.1.0"
ENV = {"COLUMNS": "1000"}


def run(*args):
    return CliRunner().invoke(app, [str(a) for a in args], env=ENV)


def clean(result, code):
    """The command ended with ``code`` and no Python traceback."""
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output and not isinstance(result.exception, (KeyError, RecursionError,
                                                                                   UnicodeError, TypeError))


@pytest.fixture(scope="module")
def descriptor_model(tmp_path_factory):
    """A small descriptors-only model (areal family, 5 trees) saved to disk: cheap to predict with."""
    from hybridtmd.model import HybridClassifier, HybridFeatures, default_head
    from hybridtmd.model.features import unlevelled_extractor

    folder = tmp_path_factory.mktemp("train")
    paths = make_good(folder, n=6)
    report = load_images(paths)
    labels = ["MoS2", "WSe2"] * 3
    model = HybridClassifier(features=HybridFeatures(descriptors=unlevelled_extractor(["areal"]), embedder=None),
                             classifier=default_head(0, 1).set_params(n_estimators=5), ood_neighbors=2)
    return model.fit(report.images, labels, groups=[f"s{i}" for i in range(6)]).save(folder / "model")


# ------------------------------------------------------------------ models
def test_a_model_saved_for_cuda_predicts_on_a_cpu_machine_with_one_warning(tmp_path):
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    from hybridtmd.datasets import load_example_dataset
    from hybridtmd.model import HybridClassifier

    directory = shutil.copytree(RELEASE / "hybrid_xgboost", tmp_path / "gpu_model")
    manifest = json.loads((directory / "manifest.json").read_text())
    manifest["features"]["embedder"]["device"] = "cuda"  # as saved on a GPU workstation
    (directory / "manifest.json").write_text(json.dumps(manifest))
    expected = json.loads((RELEASE / "expected.json").read_text())
    with pytest.warns(UserWarning, match="no CUDA: embedding on the CPU"):
        model = HybridClassifier.load(directory)
    data = load_example_dataset()
    by_name = {p.name: p for p in data.paths}
    files = [by_name[name] for name in expected["files"][:2]]
    images = load_images(files).images
    np.testing.assert_allclose(model.predict_proba(images), expected["models"]["hybrid_xgboost"]["proba"][:2],
                               rtol=0, atol=CROSS_ISA_BOUND)  # the fixture's numbers are from another CPU
    result = run("predict", directory, *files, "-o", tmp_path / "p.csv")
    clean(result, 0)
    assert sum("warning:" in line and "no CUDA" in line for line in result.output.splitlines()) == 1


def test_a_manifest_nested_past_the_recursion_limit_is_one_error(descriptor_model, tmp_path):
    from hybridtmd.model import HybridClassifier

    directory = shutil.copytree(descriptor_model, tmp_path / "deep")
    text = (directory / "manifest.json").read_text()
    (directory / "manifest.json").write_text(text[:-1] + ', "metrics": ' + "[" * 100_000 + "]" * 100_000 + "}")
    with pytest.raises(ModelFileError, match="manifest.json: not valid JSON \\(nested too deeply"):
        HybridClassifier.load(directory)  # a RecursionError from the Python API before
    result = run("predict", directory, tmp_path, "-o", tmp_path / "p.csv")
    clean(result, 2)
    assert "nested too deeply" in result.output


def test_deep_toml_configs_and_a_folder_as_config_are_one_line(tmp_path):
    from hybridtmd.config import load_config

    deep = tmp_path / "deep.toml"
    deep.write_text("a = " + "[" * 5000 + "]" * 5000 + "\n")
    with pytest.raises(ConfigError, match="nested too deeply"):
        load_config(deep)
    with pytest.raises(ConfigError, match="cannot read the config file"):
        load_config(tmp_path)
    clean(run("level", tmp_path, "-o", tmp_path / "out", "--config", deep), 2)  # level caught neither


def test_a_tiff_description_nested_too_deeply_is_ignored_not_a_crash(tmp_path):
    import tifffile

    path = tmp_path / "deep.tif"
    tifffile.imwrite(path, np.random.default_rng(0).normal(size=(48, 48)).astype("float32"),
                     description='{"pixel_size_nm": ' + "[" * 100_000 + "]" * 100_000 + "}", metadata=None)
    report = load_images([path])
    assert report.errors == [(str(path), "no pixel size in the file; pass pixel_size_nm=...")]
    assert load_images([path], pixel_size_nm=2).images[0].pixel_size_nm == (2.0, 2.0)


def test_an_empty_hmac_key_is_refused_not_a_signature_without_secret(descriptor_model, tmp_path, monkeypatch):
    from hybridtmd.model import HybridClassifier

    model = HybridClassifier.load(descriptor_model)
    with pytest.raises(ValueError, match="key is empty"):
        model.save(tmp_path / "signed", key="")  # was marked signed, with a plain SHA-256 as its "HMAC"
    assert not (tmp_path / "signed").exists()
    monkeypatch.setenv("HYBRIDTMD_MODEL_KEY", "")  # an empty variable means no key (guard)
    assert json.loads((model.save(tmp_path / "plain") / "manifest.json").read_text())["signed"] is False


def test_an_svm_head_trains_when_a_rare_class_is_absent_from_every_held_out_fold():
    from hybridtmd.model.heads import KernelSVMHead

    y = np.array(["MoS2"] * 10 + ["WSe2"] * 2)
    X = np.random.default_rng(0).normal(size=(12, 3)) + (y == "WSe2")[:, None] * 2.0
    groups = np.repeat(np.arange(6), 2)  # WSe2: one sample, so its inner fold is dropped
    head = KernelSVMHead().fit(X, y, groups=groups)  # the calibrator saw one class and raised before
    assert head.calibration_coef_ is None and head.predict_proba(X).shape == (12, 2)


@pytest.mark.parametrize("option, value", [("calibration_folds", 1), ("selection_folds", 1)])
def test_one_fold_in_a_config_is_a_usage_error_before_any_work(tmp_path, option, value):
    config = tmp_path / "cfg.toml"
    config.write_text(f'[model]\ncalibration = "temperature"\n{option} = {value}\n')
    result = run("train", tmp_path, "-o", tmp_path / "m", "--config", config)
    clean(result, 2)
    assert option in result.output


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    """A labelled folder of 4 samples x 1 image (64 px), two per material."""
    folder = tmp_path_factory.mktemp("tiny")
    make_good(folder, n=4)
    return folder


@pytest.mark.parametrize("args", [
    ["evaluate", "DATA", "--folds", "1"],  # guard: a typer range already
    ["compare", "DATA", "--folds", "1"],  # guard
    ["compare", "DATA", "--folds", "2", "--max-folds", "0"],  # a KeyError traceback after all images were read
    ["compare", "DATA", "--lr", "nan"],  # guard
    ["compare", "DATA", "--folds", "2", "--input-size", "3"],
    ["evaluate", "DATA", "--folds", "2", "--seed", "-1"],  # exit 1 after the features of every image
    ["synth", "OUT", "--spread", "nan"],  # an OverflowError traceback
    ["synth", "OUT", "--scan-max-um", "inf"],
    ["explain", "MODEL", "DATA", "-o", "OUT", "--top-latent", "-2"],  # all but two latent maps per card
    ["explain", "MODEL", "DATA", "-o", "OUT", "--max-images", "-1"],  # every card but one, silently
])
def test_numbers_out_of_range_are_usage_errors(tiny_data, descriptor_model, tmp_path, args):
    named = {"DATA": tiny_data, "MODEL": descriptor_model, "OUT": tmp_path / "new"}
    clean(run(*[named.get(a, a) for a in args]), 2)


def test_report_cards_refuse_negative_counts():
    from hybridtmd.reporting import render_report

    with pytest.raises(ValueError, match="top_latent must be a whole number >= 0"):
        render_report(None, "unused", top_latent=-2)


# ------------------------------------------------------------------ folders and file names
def test_predict_a_folder_predicts_every_readable_image_whatever_its_name(descriptor_model, tmp_path):
    """Guard (worked before this round): names following the convention and names following none."""
    folder = tmp_path / "scans"
    good = make_good(folder, n=3)
    shutil.copy(good[0], folder / "scan 1.tif")
    shutil.copy(good[1], folder / "noconvention.tif")
    (folder / "notes.txt").write_text("not an image type: not listed")
    result = run("predict", descriptor_model, folder, "-o", tmp_path / "p.csv")
    clean(result, 0)
    assert sorted(Path(f).name for f in pd.read_csv(tmp_path / "p.csv")["file"]) == sorted(
        [p.name for p in good] + ["scan 1.tif", "noconvention.tif"])


def _byte_names_allowed(folder: Path) -> bool:
    try:
        (folder / os.fsdecode(b"probe\xe9")).write_bytes(b"")
    except (OSError, UnicodeError):
        return False
    (folder / os.fsdecode(b"probe\xe9")).unlink()
    return sys.platform != "darwin"


@pytest.fixture
def byte_named(tmp_path):
    """A folder with two good scans, one good scan whose name holds the byte 0xE9 (Latin-1 "é"),
    an unreadable one with such a name and one that follows no naming convention."""
    folder = tmp_path / "bytes"
    good = make_good(folder, n=2)
    if not _byte_names_allowed(folder):
        pytest.skip("the file system refuses names that are not UTF-8")
    named = folder / os.fsdecode(b"corpus_MoS2_c_caf\xe9_good.tif")
    shutil.copy(good[0], named)
    (folder / os.fsdecode(b"corpus_WSe2_c_b\xff_broken.tif")).write_bytes(b"not a tiff")
    shutil.copy(good[1], folder / os.fsdecode(b"plain\xe9.tif"))
    return folder


def test_extract_store_takes_file_names_that_are_not_text(byte_named, tmp_path):
    from hybridtmd.model.store import read_store

    store = tmp_path / "store"
    result = run("extract", byte_named, "--store", store, "--families", "areal")
    clean(result, 1)  # the partition failed on every rerun (UnicodeEncodeError in the parquet) before
    assert "1 partition(s) written, 0 already done, 0 failed" in result.output
    table = read_store(store)
    # an unlabelled folder is read whole (issue 26.8): the scan named by no convention has its row too
    assert len(table) == 4 and any(p.endswith("corpus_MoS2_c_caf\\xe9_good.tif") for p in table["path"])
    again = run("extract", byte_named, "--store", store, "--families", "areal")
    assert "0 partition(s) written, 1 already done, 0 failed" in again.output
    lines = [line for line in result.output.splitlines() if line.startswith("  skipped")]
    assert len(lines) == 1 and all(line.isprintable() and "\\x" in line for line in lines)


def test_predict_and_extract_tables_take_file_names_that_are_not_text(byte_named, descriptor_model, tmp_path):
    result = run("predict", descriptor_model, byte_named, "-o", tmp_path / "p.csv")
    clean(result, 1)  # the good scans with such names were skipped (UnicodeEncodeError) before
    files = list(pd.read_csv(tmp_path / "p.csv")["file"])
    assert len(files) == 4 and sum("\\xe9" in f for f in files) == 2
    assert [line for line in result.output.splitlines() if "  skipped " in line] == [
        f"  skipped {byte_named}/corpus_WSe2_c_b\\xff_broken.tif: cannot read .tif file (TiffFileError: not a TIFF "
        "file: header=b'not ')"]
    result = run("extract", byte_named, "-o", tmp_path / "f.csv", "--families", "areal")
    clean(result, 1)  # a traceback before
    assert len(pd.read_csv(tmp_path / "f.csv")) == 4  # unlabelled: every readable scan (issue 26.8)


def test_fifos_devices_and_broken_links_named_like_scans_are_reported_not_dropped(descriptor_model, tmp_path):
    folder = tmp_path / "odd"
    make_good(folder, n=2)
    os.mkfifo(folder / "corpus_MoS2_c_fifo_x.tif")  # opening it would block forever
    os.symlink("/dev/zero", folder / "corpus_WSe2_c_zero_x.tif")
    os.symlink(folder / "gone.tif", folder / "corpus_WSe2_c_gone_x.tif")
    dataset = load_dataset(folder)
    assert len(dataset) == 2 and len(dataset.skipped) == 3  # silently left out before
    assert all("not a regular file" in reason for _, reason in dataset.skipped)
    result = run("predict", descriptor_model, folder, "-o", tmp_path / "p.csv")
    clean(result, 1)
    assert "predicted 2 of 5 file(s)" in result.output and result.output.count("  skipped") == 3


def test_a_manifest_row_pointing_at_a_folder_is_that_rows_reason(tmp_path):
    """Guard: the row is skipped with its reason (at the manifest since issue 32: never opened),
    the other rows are read."""
    good = make_good(tmp_path, n=1)
    (tmp_path / "sub").mkdir()
    manifest = tmp_path / "m.csv"
    manifest.write_text(f"path,label,group\n{good[0].name},MoS2,s1\nsub,WSe2,s2\n")
    dataset = load_dataset(manifest)
    report = dataset.load()
    assert len(report.images) == 1 and dataset.skipped[0][1].startswith("not a regular file")


# ------------------------------------------------------------------ outputs that are inputs
@pytest.mark.parametrize("command", [
    ["extract", "DATA", "-o", "DATA/manifest.csv"],
    ["extract", "DATA/manifest.csv", "-o", "DATA/./manifest.csv"],
    ["embed", "DATA", "-o", "DATA/manifest.csv"],
    ["predict", "MODEL", "DATA/manifest.csv", "-o", "DATA/manifest.csv"],
    ["level", "DATA", "-o", "DATA"],  # levelled TIFFs over the raw scans of the same names
])
def test_an_output_that_would_overwrite_an_input_is_refused_first(descriptor_model, tmp_path, command):
    from hybridtmd.datasets import write_synthetic_dataset

    data = tmp_path / "data"
    write_synthetic_dataset(data, n_samples=2, images_per_sample=1, size_px=48, materials=["MoS2"], seed=0)
    before = {p.name: p.read_bytes() for p in data.iterdir()}
    args = [a.replace("DATA", str(data)).replace("MODEL", str(descriptor_model)) for a in command]
    result = run(*args)
    clean(result, 2)
    assert "overwrite" in result.output
    assert {p.name: p.read_bytes() for p in data.iterdir()} == before


# ------------------------------------------------------------------ labels and metadata
def test_unicode_twins_of_labels_and_groups_are_one_class_and_look_alikes_are_warned(tmp_path):
    files = make_good(tmp_path, n=4)
    manifest = tmp_path / "m.csv"
    decomposed, composed = "Mo\u0301S2", "M\u00f3S2"  # what macOS and Linux write for the same name
    manifest.write_text("path,label,group\n" + "".join(
        f"{f.name},{lab},{grp}\n" for f, lab, grp in zip(files, [decomposed, composed, "MoS2", "MoS\u2082"],
                                                          ["caf\u00e9", "cafe\u0301", "s3", "s4"], strict=True)),
        encoding="utf-8")
    with pytest.warns(AFMInputWarning) as caught:
        dataset = load_dataset(manifest)
    assert dataset.classes == sorted([composed, "MoS2", "MoS\u2082"])
    assert dataset.groups[0] == dataset.groups[1]  # one sample, not two (a leak across folds before)
    messages = " ".join(str(w.message) for w in caught)
    assert "Unicode form" in messages and "compatibility characters" in messages


@pytest.mark.parametrize("pixel", [True, [True, True], [1, True]])
def test_boolean_pixel_sizes_are_refused(tmp_path, pixel):
    import tifffile

    path = tmp_path / "flag.tif"
    tifffile.imwrite(path, np.random.default_rng(0).normal(size=(48, 48)).astype("float32"),
                     description=json.dumps({"pixel_size_nm": pixel, "z_unit": "nm"}), metadata=None)
    with pytest.raises(AFMInputError, match="pixel size must be one or two positive numbers"):
        load_images([path], on_error="raise")


def test_a_forged_manifest_can_still_rename_classes(descriptor_model, tmp_path):
    """What the digest does not guarantee (docs/reliability.md): a forger who recomputes it."""
    from hybridtmd.model import HybridClassifier

    directory = shutil.copytree(descriptor_model, tmp_path / "forged")
    manifest = json.loads((directory / "manifest.json").read_text())
    manifest["classes"] = ["AAAA", "BBBB"]
    write_forged(directory, manifest)
    assert list(HybridClassifier.load(directory).classes_) == ["AAAA", "BBBB"]


@pytest.mark.parametrize("downgrade", ["unsigned", "no digest, older format"])
def test_with_a_key_set_a_forger_cannot_pass_a_model_off_as_unsigned(descriptor_model, tmp_path, monkeypatch,
                                                                      downgrade):
    from hybridtmd.model import HybridClassifier

    monkeypatch.delenv("HYBRIDTMD_MODEL_KEY", raising=False)
    model = HybridClassifier.load(descriptor_model)
    directory = model.save(tmp_path / "signed", key="lab secret")
    manifest = json.loads((directory / "manifest.json").read_text())
    manifest["classes"] = list(reversed(manifest["classes"]))  # swaps every prediction
    if downgrade == "unsigned":
        manifest["signed"] = False
        write_forged(directory, manifest)  # a plain SHA-256: no key needed
    else:
        manifest["format_version"] = 3  # formats before 4 wrote no digest
        del manifest["directory_digest"], manifest["signed"]
        (directory / "manifest.json").write_text(json.dumps(manifest))
    monkeypatch.setenv("HYBRIDTMD_MODEL_KEY", "lab secret")
    with pytest.raises(ModelFileError, match="not signed, but a key is set"):
        HybridClassifier.load(directory)  # loaded, with swapped classes, before


@pytest.mark.parametrize("variable, value", [("HYBRIDTMD_MAX_PIXELS", "inf"), ("HYBRIDTMD_MAX_PIXELS", "abc"),
                                             ("HYBRIDTMD_READ_TIMEOUT", "0")])
def test_a_bad_limit_in_the_environment_is_one_usage_error_not_every_files_reason(tmp_path, variable, value):
    files = make_good(tmp_path, n=2)
    result = CliRunner().invoke(app, ["info", *map(str, files)], env={**ENV, variable: value})
    clean(result, 2)  # each file was "skipped" with the variable's error (inf: an OverflowError) before
    assert result.output.count("\n") == 1 and f"environment: {variable}=" in result.output


def test_train_into_a_folder_that_is_not_a_model_fails_before_fitting(tiny_data, tmp_path, monkeypatch):
    import hybridtmd.model.classifier as classifier_module

    def no_fit(*args, **kwargs):
        raise AssertionError("fitted before the output was checked")

    monkeypatch.setattr(classifier_module.HybridClassifier, "fit", no_fit)
    result = run("train", tiny_data, "-o", tiny_data)  # a ModelFileError traceback after the whole fit before
    clean(result, 2)
    assert "will not replace it with a model" in result.output


def test_explain_reports_take_file_names_that_are_not_text(byte_named, descriptor_model, tmp_path):
    result = run("explain", descriptor_model, byte_named, "-o", tmp_path / "ex", "--max-images", "1")
    clean(result, 1)  # one UnicodeEncodeError line for the whole report before: nothing explained
    assert "explained 4 input(s)" in result.output
    assert "caf\\xe9" in (tmp_path / "ex" / "report.html").read_text(encoding="utf-8")
