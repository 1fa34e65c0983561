"""Issue 26 (the command line's outputs are true) and issue 34 (model files): sample verdicts
grouped as the manifest says, one output file per input, one definition of sample accuracy,
train naming its head, extract not inventing labels, outputs checked before the work, no cache
path in a model, a crash between the renames of a model swap recovered. Each test failed before
its fix."""

from __future__ import annotations

import shutil
import warnings

import numpy as np
import pandas as pd
import pytest
from corpus.files import shared_afm_files, skipped_reasons
from corpus.make_corpus import make_good
from typer.testing import CliRunner

from hybridtmd.cli import app

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")
ENV = {"COLUMNS": "1000"}
DESCRIPTORS_ONLY = ('[descriptors]\nfamilies = ["areal"]\n[embeddings]\nenabled = false\n'
                    '[model]\nood_neighbors = 2\n')


def run(*args):
    return CliRunner().invoke(app, [str(a) for a in args], env=ENV)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(data folder of 8 one-image samples, model folder, train's output): a descriptors-only
    model trained by the command line with the default head choice (auto)."""
    folder = tmp_path_factory.mktemp("cli")
    data = folder / "data"
    make_good(data, n=8)
    config = folder / "cfg.toml"
    config.write_text(DESCRIPTORS_ONLY)
    result = run("train", data, "-o", folder / "model", "--config", config)
    assert result.exit_code == 0, result.output
    return data, folder / "model", result.output


# ------------------------------------------------------------------------------ predict --by-sample

def test_by_sample_takes_the_manifests_groups_not_the_file_names(trained, tmp_path):
    data, model, _ = trained
    files = sorted(data.glob("*.tif"))  # named as 8 samples g0..g7
    rows = [{"path": str(f), "label": "MoS2" if i % 2 == 0 else "WSe2", "group": f"pair{i % 2}"}
            for i, f in enumerate(files[:4])]
    manifest = tmp_path / "m.csv"
    pd.DataFrame(rows).to_csv(manifest, index=False)
    result = run("predict", model, manifest, "-o", tmp_path / "p.csv", "--by-sample")
    assert result.exit_code == 0, result.output
    samples = pd.read_csv(tmp_path / "p_samples.csv")
    assert sorted(samples["sample"]) == ["pair0", "pair1"] and list(samples["n_images"]) == [2, 2]
    assert "manifest's group column" in result.output


def test_by_sample_without_a_manifest_keeps_files_of_one_stem_apart(trained, tmp_path):
    data, model, _ = trained
    source = sorted(data.glob("*.tif"))[0]
    for name in ("sample_0.tif", "sample_0.tiff"):  # one stem, two files: two samples
        shutil.copy(source, tmp_path / name)
    result = run("predict", model, tmp_path / "sample_0.tif", tmp_path / "sample_0.tiff", "-o",
                 tmp_path / "p.csv", "--by-sample")
    assert result.exit_code == 0, result.output
    samples = pd.read_csv(tmp_path / "p_samples.csv")
    assert list(samples["n_images"]) == [1, 1]
    assert "samples from file names" in result.output


# ------------------------------------------------------------------------------------------ level

def test_level_writes_one_tiff_per_input_when_stems_collide(tmp_path):
    source = make_good(tmp_path / "in", n=1)[0]
    inputs = [tmp_path / "in" / name for name in ("x.tif", "x.tiff", "y.tif")]
    for path in inputs:
        shutil.copy(source, path)
    result = run("level", *inputs, "-o", tmp_path / "out")
    assert result.exit_code == 0, result.output
    written = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert written == ["x.tif.tif", "x.tiff.tif", "y.tif"]
    assert "levelled 3 of 3 file(s)" in result.output


def test_level_refuses_one_name_from_two_folders_before_any_work(tmp_path):
    source = make_good(tmp_path / "in", n=1)[0]
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        shutil.copy(source, tmp_path / folder / "scan.tif")
    result = run("level", tmp_path / "a" / "scan.tif", tmp_path / "b" / "scan.tif", "-o", tmp_path / "out")
    assert result.exit_code == 2 and "would both be levelled into scan.tif" in result.output
    assert not (tmp_path / "out").exists()


def test_level_keeps_the_outputs_of_real_files_that_share_a_stem(tmp_path):
    real = shared_afm_files()
    if real is None:
        pytest.skip("../shared/data/afm_files is absent")
    inputs = []
    for file in ("di-3.di", "mi-1.mi", "nid-1.nid"):  # three instruments, one name: sample_0.*
        inputs.append(tmp_path / f"sample_0{(real / file).suffix}")
        inputs[-1].symlink_to(real / file)
    result = run("level", *inputs, "-o", tmp_path / "out")
    assert result.exit_code == 0, result.output
    assert len(list((tmp_path / "out").glob("*.tif"))) == 3 and "levelled 3 of 3" in result.output


# ---------------------------------------------------------------------------- sample accuracy

def test_the_report_and_evaluate_score_samples_by_one_definition():
    """Three images of one sample of true class B: the mean probability says A, the mean
    log-probability (evaluate's pooling) says B; the explanation report must agree with evaluate."""
    from hybridtmd.evaluation.cv import sample_scores
    from hybridtmd.reporting.explanation import performance

    proba = np.array([[1e-4, 1 - 1e-4], [0.9, 0.1], [0.9, 0.1], [0.2, 0.8]])
    labels = np.array(["B", "B", "B", "A"])
    groups = np.array(["s1", "s1", "s1", "s2"])

    evaluated = sample_scores(np.array(["A", "B"]), labels, groups, np.array(["A", "B"])[proba.argmax(1)], proba)
    predictions = pd.DataFrame({"sample": groups, "label": labels,
                                "predicted": np.array(["A", "B"])[proba.argmax(1)], "p_A": proba[:, 0],
                                "p_B": proba[:, 1]})
    metrics, _ = performance(predictions, ["A", "B"])
    assert evaluated["sample_accuracy"] == 0.5  # s1 right (B), s2 wrong (B for A)
    assert metrics["sample accuracy"] == evaluated["sample_accuracy"] and metrics["samples"] == 2


# ------------------------------------------------------------------------------------------ train

def test_train_says_which_head_auto_chose_and_its_inner_scores(trained):
    from hybridtmd.model import HybridClassifier

    _, model_dir, output = trained
    selection = HybridClassifier.load(model_dir).head_selection_
    chosen = selection["choice"]
    line = next(line for line in output.splitlines() if line.startswith("head "))
    assert line.startswith(f"head {chosen} (auto: mean inner accuracy over {selection['inner_folds']} folds")
    for name, mean in selection["mean"].items():
        assert f"{name} {mean:.3f} ± {selection['std'][name]:.3f}" in line


# ---------------------------------------------------------------------------------------- extract

def test_extract_reads_an_unlabelled_folder_whole_and_invents_no_labels(tmp_path):
    folder = tmp_path / "scans"
    folder.mkdir()
    source = make_good(tmp_path / "in", n=1)[0]
    shutil.copy(source, folder / "sample_1_um_scale.tif")  # looks like the convention
    shutil.copy(source, folder / "scan.tif")
    (folder / "broken.tif").write_bytes(b"not a tiff")
    real = shared_afm_files()
    if real is not None:
        (folder / "my scan.nid").symlink_to(real / "nid-1.nid")
    result = run("extract", folder, "-o", tmp_path / "f.csv", "--families", "areal")
    assert result.exit_code == 1, result.output
    table = pd.read_csv(tmp_path / "f.csv")
    assert "label" not in table and "group" not in table
    assert len(table) == (3 if real is not None else 2)
    skipped = skipped_reasons(result.output)
    assert list(skipped) == ["broken.tif"] and "cannot read" in skipped["broken.tif"]
    run("extract", folder, "-o", tmp_path / "g.csv", "--families", "areal", "--pattern", "default")
    assert set(pd.read_csv(tmp_path / "g.csv")["label"].astype(str)) == {"1"}  # asked for: the names label


# ------------------------------------------------------------------- outputs and faults (26.13)

XGBOOST_FULL_DISK = ("[14:31:27] /__w/xgboost/xgboost/dmlc-core/src/io/local_filesys.cc:86: Check failed: "
                     "nwrite == size (0 vs. 4096) : FileStream.Write incomplete: No space left on device\n"
                     "Stack trace:\n  [bt] (0) libxgboost.so(+0x2c1a8c) [0x7fdb9e0c1a8c]\n"
                     "  [bt] (1) libxgboost.so(+0x154e08d) [0x7fdb9f34e08d]\n")


def test_a_full_disk_while_train_saves_is_one_line_and_keeps_the_old_model(trained, tmp_path, monkeypatch):
    from xgboost import XGBClassifier
    from xgboost.core import XGBoostError

    data, model_dir, _ = trained
    target = shutil.copytree(model_dir, tmp_path / "model")
    before = {p.name: p.read_bytes() for p in target.iterdir()}
    config = tmp_path / "xgb.toml"
    config.write_text(DESCRIPTORS_ONLY + "[model.xgboost]\nn_estimators = 5\n")

    def full_disk(self, path):
        raise XGBoostError(XGBOOST_FULL_DISK)

    monkeypatch.setattr(XGBClassifier, "save_model", full_disk)
    result = run("train", data, "-o", target, "--config", config)
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "No space left on device" in errors[0], result.output
    assert "Stack trace" not in result.output and "[bt]" not in result.output
    assert {p.name: p.read_bytes() for p in target.iterdir()} == before  # no half model
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


@pytest.mark.parametrize("command", ["evaluate", "compare"])
def test_evaluate_and_compare_check_the_report_folder_before_any_work(trained, tmp_path, monkeypatch, command):
    import hybridtmd.evaluation as evaluation

    def no_work(*args, **kwargs):
        raise AssertionError("the cross-validation ran before the output was checked")

    for name in ("evaluate", "ablation", "compare"):
        monkeypatch.setattr(evaluation, name, no_work)
    (tmp_path / "a_file").write_text("")
    result = run(command, trained[0], "-o", tmp_path / "a_file" / "report", "--folds", "2")
    assert result.exit_code == 2 and "a_file is a file, not a folder" in result.output, result.output


def test_a_report_that_cannot_be_written_after_the_work_is_one_line(trained, tmp_path, monkeypatch):
    import hybridtmd.reporting.evaluation as report

    def read_only(*args, **kwargs):
        raise OSError(30, "Read-only file system")

    monkeypatch.setattr(report, "write_evaluation_report", read_only)
    config = tmp_path / "cfg.toml"
    config.write_text(DESCRIPTORS_ONLY + "[model.xgboost]\nn_estimators = 5\n")
    result = run("evaluate", trained[0], "-o", tmp_path / "report", "--folds", "2", "--permutations", "0",
                 "--no-ablation", "--config", config)
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
    assert "cannot write the report" in result.output and "Read-only file system" in result.output


def test_the_cache_folder_is_a_run_setting_never_in_the_model(trained, tmp_path):
    """train --cache-dir caches there but the model does not record it; predict caches nowhere
    unless given --cache-dir itself (issue 26.13, 34.2)."""
    import json

    data = trained[0]
    config = tmp_path / "emb.toml"
    config.write_text('[descriptors]\nfamilies = ["areal"]\n[embeddings]\ninput_size = 64\n'
                      '[model]\nood_neighbors = 2\n[model.xgboost]\nn_estimators = 5\n')
    cache = tmp_path / "train_cache"
    result = run("train", data, "-o", tmp_path / "model", "--config", config, "--cache-dir", cache)
    assert result.exit_code == 0, result.output
    assert any(p.suffix == ".npz" for p in cache.rglob("*"))  # train cached where it was told
    manifest = (tmp_path / "model" / "manifest.json").read_text()
    assert str(cache) not in manifest and json.loads(manifest)["features"]["embedder"]["cache_dir"] is None
    shutil.rmtree(cache)
    files = sorted(data.glob("*.tif"))[:2]
    result = run("predict", tmp_path / "model", *files, "-o", tmp_path / "out" / "p.csv")
    assert result.exit_code == 0, result.output
    assert not cache.exists() and [p.name for p in (tmp_path / "out").iterdir()] == ["p.csv"]
    result = run("predict", tmp_path / "model", *files, "-o", tmp_path / "p2.csv", "--cache-dir", tmp_path / "run")
    assert result.exit_code == 0 and len(list((tmp_path / "run").rglob("*.npz"))) == 2


def test_a_cache_folder_written_into_a_model_file_is_not_followed(tmp_path):
    from hybridtmd.model import HybridFeatures

    settings = {"level_images": True, "level_config": None, "descriptors": None,
                "embedder": {"backbone": "efficientnet_lite0", "weights": None, "tta": "none", "input_size": 224,
                             "clip_percentiles": [1.0, 99.0], "tile_size_px": None, "tile_stride_px": None,
                             "batch_size": 16, "device": "cpu", "cache_dir": str(tmp_path / "anywhere")}}
    assert HybridFeatures.from_settings(settings).embedder.cache_dir is None


def test_info_on_heights_near_the_float64_limit_is_one_clear_line(tmp_path):
    # before: "rms_nm inf" and numpy's raw "overflow encountered in square"; heights this far beyond
    # any AFM's range are now refused at load, naming the file, the value and the limit
    import tifffile

    heights = np.tile(np.array([1e300, -1e300]), (64, 32))  # std 1e300; its square overflows
    path = tmp_path / "huge.tif"
    tifffile.imwrite(path, heights, description='{"pixel_size_nm": [8.0, 8.0], "z_unit": "nm"}')
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        result = run("info", path)
    assert result.exit_code == 1, result.output
    assert "huge.tif: values up to 1e+300 nm (limit 1e+12 nm" in result.output.replace("\n", " ")
    assert "overflow" not in result.output and " inf" not in result.output and "Traceback" not in result.output


# ------------------------------------------------------------------------ unsigned models (34.2)

UNSIGNED_WARNING = "an unsigned model not saved under this account"


def test_predict_warns_once_for_an_unsigned_model_it_did_not_save(trained, tmp_path, monkeypatch):
    from corpus.tampering import forge_manifest

    data, model_dir, _ = trained
    files = sorted(data.glob("*.tif"))[:2]
    result = run("predict", model_dir, *files, "-o", tmp_path / "own.csv")
    assert result.exit_code == 0 and UNSIGNED_WARNING not in result.output  # saved here, unchanged
    edited = shutil.copytree(model_dir, tmp_path / "edited")
    forge_manifest(edited, metrics={"accuracy": 0.99})  # the digest recomputed, as anyone can
    result = run("predict", edited, *files, "-o", tmp_path / "edited.csv")
    assert result.exit_code == 0 and result.output.count(UNSIGNED_WARNING) == 1, result.output
    assert "HYBRIDTMD_MODEL_KEY" in result.output
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "another_account"))
    result = run("predict", model_dir, *files, "-o", tmp_path / "theirs.csv")
    assert result.output.count(UNSIGNED_WARNING) == 1


def test_a_signed_model_loads_without_the_unsigned_warning(trained, tmp_path, monkeypatch):
    data, _, _ = trained
    monkeypatch.setenv("HYBRIDTMD_MODEL_KEY", "lab secret")
    config = tmp_path / "cfg.toml"
    config.write_text(DESCRIPTORS_ONLY + "[model.xgboost]\nn_estimators = 5\n")
    assert run("train", data, "-o", tmp_path / "signed", "--config", config).exit_code == 0
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "another_account"))
    result = run("predict", tmp_path / "signed", sorted(data.glob("*.tif"))[0], "-o", tmp_path / "p.csv")
    assert result.exit_code == 0 and UNSIGNED_WARNING not in result.output, result.output


# ---------------------------------------------------------------------------------- messages (34.3)

def test_messages_about_file_metadata_do_not_name_command_line_options(tmp_path):
    npz = tmp_path / "ten.npz"
    np.savez(npz, height=np.random.default_rng(0).normal(size=(64, 64)), pixel_size_nm="ten")
    result = run("info", npz)
    assert result.exit_code == 1 and "npz pixel_size_nm must be numbers" in result.output, result.output
    source = make_good(tmp_path / "in", n=1)[0]
    manifest = tmp_path / "m.csv"
    manifest.write_text(f"path,label,group,pixel_size_nm\n{source},MoS2,s1,abc\n")
    result = run("extract", manifest, "-o", tmp_path / "f.csv")
    assert result.exit_code == 2 and "line 2: pixel_size_nm 'abc' is not a number" in result.output, result.output
    assert "--pixel-size-nm" not in result.output
    bare = tmp_path / "bare.tif"  # the instruction to pass the option still names the flag
    import tifffile

    tifffile.imwrite(bare, np.random.default_rng(1).normal(size=(64, 64)).astype(np.float32))
    assert "pass --pixel-size-nm NM" in run("info", bare).output


def test_the_coarse_pixel_warning_of_a_store_comes_once_per_run(tmp_path):
    make_good(tmp_path / "in", n=3)
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        result = run("extract", tmp_path / "in", "--store", tmp_path / "store", "--partition-size", "1",
                     "--pixel-size-nm", "50", "--families", "areal")
    assert result.exit_code == 0, result.output
    assert result.output.count("coarser than the reference") == 1, result.output
    assert "3 of 3 images have pixels coarser than the reference" in result.output


def test_a_store_refuses_a_manifest_whose_reading_options_it_would_ignore(tmp_path):
    source = make_good(tmp_path / "in", n=1)[0]
    manifest = tmp_path / "m.csv"
    manifest.write_text(f"path,label,group,pixel_size_nm\n{source},MoS2,s1,50\n")
    result = run("extract", manifest, "--store", tmp_path / "store", "--families", "areal")
    assert result.exit_code == 2 and "--store does not read yet" in " ".join(result.output.split()), result.output
    assert not (tmp_path / "store" / "store.json").exists()
