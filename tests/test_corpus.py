"""Issue 9, bad and odd inputs: the generated corpus (tests/corpus/make_corpus.py), one test per case
with its expected outcome, model-side cases, and batch commands over a folder mixing good and bad
files."""

from __future__ import annotations

import json
import re
import shutil
import tracemalloc
import warnings

import numpy as np
import pandas as pd
import pytest
from corpus.files import skipped_reasons
from corpus.make_corpus import PIXEL_NM, make_corpus, make_good, make_huge_tiff, surface
from corpus.tampering import forge_manifest
from typer.testing import CliRunner

from hybridtmd.cli import app
from hybridtmd.errors import AFMInputError, AFMInputWarning, HybridTMDError
from hybridtmd.io import load_dataset, load_image, load_images
from hybridtmd.model import FeatureMismatchError, HybridClassifier, ModelFileError, default_head

# warnings are asserted where they are the outcome (pytest.warns / recorded); elsewhere they are noise
pytestmark = pytest.mark.filterwarnings("ignore::hybridtmd.errors.AFMInputWarning")

#: every case make_corpus writes, with its expected outcome ("ok", "warn", "error")
EXPECTED = {
    "truncated_tiff": "error", "zero_byte": "error", "wrong_extension": "error", "tiff_named_npy": "error",
    "text_as_npz": "error", "text_as_tif": "error", "nan_filled": "error", "inf_filled": "error",
    "few_nan": "warn", "all_constant": "error", "tiny_8x8": "error", "line_1x4096": "error", "stack_3d": "error",
    "rgb_png": "warn", "rgb_png_no_scale": "error", "uint16_tiff": "warn", "uint16_tiff_scaled": "ok",
    "float16_tiff": "ok", "negative_pixel_in_file": "error", "negative_pixel_argument": "error",
    "no_pixel_size": "error", "non_square": "ok", "metre_heights": "ok",
    "heights_1e300": "error", "z_unit_parsec": "error", "gwyddion_1x": "error",
}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return make_corpus(tmp_path_factory.mktemp("corpus"))


def test_corpus_has_every_case(corpus):
    assert {name: c.expect for name, c in corpus.items()} == EXPECTED


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_corpus_case(corpus, name):
    case = corpus[name]
    if case.expect == "error":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", AFMInputWarning)  # rgb_png_no_scale warns about RGB first
            with pytest.raises(AFMInputError) as info:
                load_image(case.path, **case.kwargs)
        error = info.value
        message = str(error)
        assert error.source == str(case.path)
        assert message.startswith(f"{case.path}: ")  # names the file...
        assert re.search(case.match, error.reason), error.reason  # ...and the reason
        assert "\n" not in message and "Traceback" not in message  # one line, fit for a batch report
        assert "allow_pickle" not in message  # never advises loading a file unsafely
        return
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        image = load_image(case.path, **case.kwargs)
    messages = [str(w.message) for w in caught if issubclass(w.category, AFMInputWarning)]
    if case.expect == "warn":
        assert any(re.search(case.match, m) for m in messages), messages
        assert all(m.startswith(str(case.path)) for m in messages)  # warnings name the file too
    else:
        assert not messages and not [w for w in caught if issubclass(w.category, UserWarning)]
    assert np.all(np.isfinite(image.height)) and image.height.dtype == np.float64
    assert image.source == str(case.path) and min(image.shape) >= 32


def test_corpus_values_of_the_usable_odd_files(corpus):
    reference = surface()
    half = load_image(corpus["float16_tiff"].path)
    np.testing.assert_allclose(half.height, reference, atol=2e-3)  # float16: ~1e-3 nm at 1 nm
    metres = load_image(corpus["metre_heights"].path)
    np.testing.assert_allclose(metres.height, reference, rtol=1e-9, atol=1e-12)  # m -> nm
    scaled = load_image(corpus["uint16_tiff_scaled"].path, pixel_size_nm=PIXEL_NM, z_scale=1e-4)
    assert np.ptp(scaled.height) == pytest.approx(6.0, abs=1e-3)  # 60000 counts x 1e-4 nm
    assert load_image(corpus["non_square"].path).shape == (40, 200)
    with pytest.warns(AFMInputWarning):
        filled = load_image(corpus["few_nan"].path)
    assert abs(filled.height[10, 11] - reference[10, 11]) < 0.5  # interpolated, not zero or the mean


def test_duplicate_paths_in_a_batch_give_two_identical_images(corpus):
    path = corpus["float16_tiff"].path
    report = load_images([path, path])
    assert report.errors == [] and report.indices.tolist() == [0, 1]
    assert np.array_equal(report.images[0].height, report.images[1].height)


def test_duplicate_paths_in_a_manifest_warn_and_conflicts_are_errors(tmp_path):
    files = make_good(tmp_path, n=2)
    manifest = tmp_path / "manifest.csv"
    manifest.write_text(f"path,label,group\n{files[0].name},MoS2,s1\n{files[1].name},WSe2,s2\n"
                        f"{files[0].name},MoS2,s1\n")
    listed_again = rf"line 4: {files[0].name} is listed again \(first on line 2\); used once"
    with pytest.warns(AFMInputWarning, match=listed_again):
        ds = load_dataset(manifest)
    assert len(ds) == 2  # an exact repeat is used once (issue 16: not counted twice), the warning says so
    manifest.write_text(f"path,label,group\n{files[0].name},MoS2,s1\n{files[0].name},WSe2,s2\n")
    with pytest.raises(AFMInputError, match=rf"manifest.csv: lines 2 and 3: {files[0].name} is listed twice "
                                            "with different label/group"):
        load_dataset(manifest)


def traced_peak(fn, *args):
    """``fn(*args)`` and the peak of Python-traced memory (bytes) while it ran."""
    tracemalloc.start()
    try:
        result = fn(*args)
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_huge_8192_float32_tiff_loads_with_bounded_memory(tmp_path):
    """8192² float32 (256 MiB on disk, 512 MiB as float64 nm). Loading peaks at < 3x the float64
    image. Levelling is linear in the image size (about 10x the float64 image with the default
    LevelConfig: remove_scars, joint row/background fit, feature mask); it is measured on a
    2048² crop and on a 1024² crop so the ratio, not a 5 GiB allocation, is what is tested."""
    from hybridtmd.preprocess import level_array

    path = make_huge_tiff(tmp_path)
    image_bytes = 8192 * 8192 * 8
    image, peak = traced_peak(load_image, path)
    assert image.shape == (8192, 8192) and image.pixel_size_nm == (1.0, 1.0)
    assert peak < 3 * image_bytes, f"load peak {peak / 1e6:.0f} MB"
    ratios = []
    for side in (1024, 2048):
        crop = np.ascontiguousarray(image.height[:side, :side])
        out, peak = traced_peak(level_array, crop)
        assert np.all(np.isfinite(out))
        ratios.append(peak / crop.nbytes)
    assert max(ratios) < 12, ratios
    assert ratios[1] < ratios[0] * 1.1  # linear: no term grows faster than the pixel count
    del image
    path.unlink()


# ---------------------------------------------------------------------------------------- model side


@pytest.fixture(scope="module")
def table():
    rng = np.random.default_rng(0)
    n = 30
    y = np.where(np.arange(n) % 2 == 0, "MoS2", "WSe2")
    X = pd.DataFrame(rng.normal(size=(n, 4)), columns=["phys__sq_nm", "phys__sa_nm", "latent__0000", "latent__0001"])
    X["phys__sq_nm"] += np.where(y == "MoS2", -3.0, 3.0)
    return X, y


def _head():
    return default_head(0, n_jobs=1).set_params(n_estimators=20)


@pytest.fixture(scope="module")
def saved_model(table, tmp_path_factory):
    X, y = table
    model = HybridClassifier(classifier=_head()).fit(X, y)
    return model.save(tmp_path_factory.mktemp("model") / "m")


def test_labels_unseen_at_fit(table):
    X, y = table
    model = HybridClassifier(classifier=_head()).fit(X, y)
    y_new = y.copy()
    y_new[:6] = "WS2"  # a material the model never saw
    assert set(model.predict(X)) <= {"MoS2", "WSe2"}  # it can only answer with known classes
    assert model.score(X, y_new) == pytest.approx(model.score(X, y) - 6 / len(y), abs=1e-9)
    assert [c for c in model.predict_frame(X) if c.startswith("p_")] == ["p_MoS2", "p_WSe2"]
    with pytest.raises(ValueError, match=r"class_weight names classes not in y: \['WS2'\]"):
        HybridClassifier(classifier=_head(), class_weight={"MoS2": 1.0, "WS2": 2.0}).fit(X, y)


@pytest.mark.filterwarnings("ignore:X does not have valid feature names")
def test_feature_table_oddities_at_predict(table):
    """Missing/extra/reordered columns are tested in test_model.py; here the rest."""
    X, y = table
    model = HybridClassifier(classifier=_head()).fit(X, y)
    with pytest.raises(FeatureMismatchError, match="lacks 4 column"):  # renamed columns are missing ones
        model.predict(X.rename(columns=str.upper))
    with pytest.raises(ValueError, match="4 features"):  # a bare array must have the right width
        model.predict(X.to_numpy()[:, :3])
    with pytest.raises(ValueError):  # text where numbers are expected
        model.predict(X.astype(object).assign(phys__sq_nm="high"))
    empty_row = X.iloc[:1].copy()
    empty_row.iloc[0, :] = np.nan  # undefined descriptors are allowed (XGBoost handles missing values)
    assert model.predict(empty_row)[0] in {"MoS2", "WSe2"}


def _copy_model(saved_model, tmp_path):
    target = tmp_path / "copy"
    shutil.copytree(saved_model, target)
    return target




def _rehash(directory):
    from hybridtmd._utils.digests import file_sha256

    manifest = json.loads((directory / "manifest.json").read_text())
    forge_manifest(directory, files={name: file_sha256(directory / name) for name in manifest["files"]})


@pytest.mark.parametrize("case, match", [
    ("manifest_not_json", r"manifest.json: not valid JSON"),
    ("manifest_not_a_model", r"manifest.json: not a hybridtmd model manifest"),
    ("manifest_lacks_keys", r"manifest.json: manifest lacks \['classes'"),
    ("manifest_unknown_param", r"manifest.json: invalid settings .*unexpected keyword argument 'evil'"),
    ("manifest_bad_dtype", r"manifest.json: invalid 'classes_dtype' .*data type"),
    ("manifest_lists_a_pickle", r"manifest.json: manifest lists unexpected files .*model.pkl"),
    ("manifest_path_traversal", r"manifest.json: manifest lists unexpected files"),
    ("arrays_tampered", r"arrays.npz: content differs from the manifest's SHA-256"),
    ("arrays_missing", r"arrays.npz: missing"),
    ("classifier_missing", r"classifier.json: missing"),
])
def test_tampered_or_incomplete_model_directory(saved_model, tmp_path, case, match):
    """Tampered classifier.json, a newer format and a missing manifest are in test_model.py."""
    d = _copy_model(saved_model, tmp_path)
    manifest = json.loads((d / "manifest.json").read_text())
    if case == "manifest_not_json":
        (d / "manifest.json").write_text("{'not': json")
    elif case == "manifest_not_a_model":
        forge_manifest(d, format="something-else")
    elif case == "manifest_lacks_keys":
        del manifest["classes"]
        (d / "manifest.json").write_text(json.dumps(manifest))
        forge_manifest(d)
    elif case == "manifest_unknown_param":
        forge_manifest(d, params={**manifest["params"], "evil": "__import__('os').system('true')"})
    elif case == "manifest_bad_dtype":
        forge_manifest(d, classes_dtype="not-a-dtype")
    elif case == "manifest_lists_a_pickle":
        forge_manifest(d, files={**manifest["files"], "model.pkl": "0" * 64})
    elif case == "manifest_path_traversal":
        forge_manifest(d, files={"../m/classifier.json": "0" * 64, "arrays.npz": manifest["files"]["arrays.npz"]})
    elif case == "arrays_tampered":
        (d / "arrays.npz").write_bytes((d / "arrays.npz").read_bytes() + b"\0")
    else:
        (d / ("arrays.npz" if case == "arrays_missing" else "classifier.json")).unlink()
    with pytest.raises(ModelFileError, match=match):
        HybridClassifier.load(d)


# --------------------------------------------------------------------------------------- batch (CLI)

runner = CliRunner()


@pytest.fixture(scope="module")
def mixed_folder(tmp_path_factory):
    """A labelled folder: 4 good TIFFs and every corpus file (bad ones and odd ones)."""
    folder = tmp_path_factory.mktemp("mixed")
    good = make_good(folder, n=4)
    cases = make_corpus(folder)
    # in a batch there are no per-file options: files needing pixel_size_nm/z_scale are bad;
    # a file whose own pixel size is fine loads (negative_pixel_argument only fails with -2 passed)
    loads = {"few_nan", "float16_tiff", "non_square", "metre_heights", "negative_pixel_argument"}
    good_files = {p.name for p in good} | {cases[n].path.name for n in loads}
    # .dat is not an AFM suffix: a folder scan ignores it like a README; listed files report it
    bad_files = {c.path.name for n, c in cases.items() if n not in loads and c.path.suffix != ".dat"}
    return folder, cases, good_files, bad_files


def _check_batch(result, written: set[str], good_files: set[str], bad_files: set[str]) -> None:
    assert result.exit_code == 1, result.output  # some files were skipped...
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output
    assert written == good_files  # ...every good file has its row
    skipped = skipped_reasons(result.output)
    assert set(skipped) == bad_files, set(skipped) ^ bad_files  # every bad one is reported
    assert all(reason.strip() for reason in skipped.values())


def test_batch_extract_over_a_mixed_folder(mixed_folder, tmp_path):
    folder, _, good_files, bad_files = mixed_folder
    out = tmp_path / "features.csv"
    result = runner.invoke(app, ["extract", str(folder), "-o", str(out), "--families", "areal"])
    table = pd.read_csv(out)
    _check_batch(result, {p.rsplit("/", 1)[-1] for p in table["path"]}, good_files, bad_files)
    assert table.filter(like="sq_nm").notna().all().all()
    skipped = skipped_reasons(result.output)
    assert "NaN/inf" in skipped[next(n for n in bad_files if "nanfilled" in n)]
    assert "no pixel size" in skipped[next(n for n in bad_files if "nopixelsize" in n)]


def test_batch_embed_over_a_mixed_folder(mixed_folder, tmp_path):
    folder, _, good_files, bad_files = mixed_folder
    out = tmp_path / "emb.csv"
    result = runner.invoke(app, ["embed", str(folder), "-o", str(out), "--input-size", "64", "--device", "cpu"])
    table = pd.read_csv(out)
    _check_batch(result, {p.rsplit("/", 1)[-1] for p in table["path"]}, good_files, bad_files)
    latent = table.filter(like="latent_").to_numpy()
    assert latent.shape[1] > 100 and np.all(np.isfinite(latent))


@pytest.fixture(scope="module")
def image_model_dir(tmp_path_factory):
    from hybridtmd.datasets import make_synthetic_dataset
    from hybridtmd.descriptors import DescriptorExtractor
    from hybridtmd.model import HybridFeatures

    data = make_synthetic_dataset(n_samples=8, size_px=64, materials=["MoS2", "WSe2"], seed=1)
    features = HybridFeatures(descriptors=DescriptorExtractor(families="areal", level_images=False), embedder=None)
    model = HybridClassifier(features=features, classifier=_head()).fit(data.images, data.labels, groups=data.groups)
    return model.save(tmp_path_factory.mktemp("imodel") / "model")


def test_batch_predict_over_mixed_files(mixed_folder, image_model_dir, tmp_path):
    folder, cases, good_files, bad_files = mixed_folder
    out = tmp_path / "pred.csv"
    files = sorted(p for p in folder.iterdir() if p.is_file())  # listed one by one: .dat included
    result = runner.invoke(app, ["predict", str(image_model_dir), *map(str, files), "-o", str(out)])
    table = pd.read_csv(out)
    _check_batch(result, {p.rsplit("/", 1)[-1] for p in table["file"]}, good_files,
                 bad_files | {cases["wrong_extension"].path.name})
    assert set(table["label"]) <= {"MoS2", "WSe2"}
    assert "unsupported file type '.dat'" in skipped_reasons(result.output)[cases["wrong_extension"].path.name]


def test_batch_predict_with_a_broken_model_is_one_clear_error(image_model_dir, tmp_path):
    broken = tmp_path / "model"
    shutil.copytree(image_model_dir, broken)
    forge_manifest(broken, classes_dtype="not-a-dtype")
    good = make_good(tmp_path / "imgs", n=1)
    result = runner.invoke(app, ["predict", str(broken), str(good[0]), "-o", str(tmp_path / "p.csv")])
    assert result.exit_code == 2 and isinstance(result.exception, SystemExit)
    assert "manifest.json: invalid 'classes_dtype'" in result.output.replace("\n", "")  # rich wraps long paths
    assert not (tmp_path / "p.csv").exists()


def test_hybridtmd_errors_are_the_only_errors_of_load_image(corpus):
    """Every corpus failure is an AFMInputError (a HybridTMDError and a ValueError): one except
    clause is enough for a caller."""
    for case in corpus.values():
        if case.expect != "error":
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                load_image(case.path, **case.kwargs)
            except HybridTMDError as exc:
                assert isinstance(exc, ValueError)
