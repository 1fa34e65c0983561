"""Issue 16 (inputs, datasets, options) and issue 15 (reading options on the command line): each
case failed (traceback, hang, silent wrong result) before; now one clear line or the right result."""

from __future__ import annotations

import os
import warnings
import zlib

import numpy as np
import pandas as pd
import pytest
import tifffile
from PIL import Image
from typer.testing import CliRunner

from hybridtmd.cli import app
from hybridtmd.cli.messages import safe_text
from hybridtmd.errors import AFMInputError, AFMInputWarning
from hybridtmd.io import AFMImage, load_dataset, load_image, load_images, save_image

pytestmark = pytest.mark.filterwarnings("ignore::hybridtmd.errors.AFMInputWarning")
ENV = {"COLUMNS": "1000"}


def surface(seed=0, size=48):
    rng = np.random.default_rng(seed)
    return np.cumsum(rng.normal(size=(size, size)), axis=1)


def run(*args):
    return CliRunner().invoke(app, [str(a) for a in args], env=ENV)


# ------------------------------------------------------------------ bombs
def test_a_zlib_tiff_declaring_20000_squared_pixels_is_refused_before_decoding(tmp_path, monkeypatch):
    path = tmp_path / "bomb.tif"
    path.write_bytes(_tiff_declaring(20000, 20000))  # the header declares 20000 x 20000; the data is a few bytes
    assert path.stat().st_size < 2_000_000
    with pytest.raises(AFMInputError, match=r"bomb.tif: declares 20000 x 20000 = 400,000,000 pixels, over the limit"):
        load_image(path, pixel_size_nm=1)
    monkeypatch.setenv("HYBRIDTMD_MAX_PIXELS", "1000")
    with pytest.raises(AFMInputError, match="over the limit of 1,000"):
        load_image(_small_tiff(tmp_path), pixel_size_nm=1)


def _tiff_declaring(width: int, height: int) -> bytes:
    """A little-endian baseline TIFF whose one zlib strip claims width x height 8-bit pixels."""
    import struct

    data = zlib.compress(b"\0" * 65536)
    tags = [(256, 4, width), (257, 4, height), (258, 3, 8), (259, 3, 8), (262, 3, 1), (273, 4, 0),
            (277, 3, 1), (278, 4, height), (279, 4, len(data))]
    ifd_offset = 8
    data_offset = ifd_offset + 2 + 12 * len(tags) + 4
    entries = b"".join(struct.pack("<HHII", tag, kind, 1, data_offset if tag == 273 else value)
                       if kind == 4 else struct.pack("<HHIHH", tag, kind, 1, value, 0) for tag, kind, value in tags)
    return b"II*\0" + struct.pack("<I", ifd_offset) + struct.pack("<H", len(tags)) + entries + b"\0" * 4 + data


def _small_tiff(tmp_path):
    path = tmp_path / "small.tif"
    tifffile.imwrite(path, surface().astype("float32"))
    return path


def test_an_npz_bomb_is_refused_from_its_header(tmp_path):
    path = tmp_path / "bomb.npz"
    header = np.lib.format.header_data_from_array_1_0(np.zeros((1, 1)))
    header["shape"] = (40000, 40000)
    import io
    import zipfile

    member = io.BytesIO()
    np.lib.format.write_array_header_1_0(member, header)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("height.npy", member.getvalue() + b"\0" * 1000)
    with pytest.raises(AFMInputError, match="declares 40000 x 40000"):
        load_image(path, pixel_size_nm=1)
    assert zlib  # the zip is deflated, as a real bomb would be


# ------------------------------------------------------------------ non-numeric metadata
@pytest.mark.parametrize("pixel", ["abc", {"x": 1}])
def test_non_numeric_tiff_pixel_size_is_that_files_reason(tmp_path, pixel):
    bad = tmp_path / "bad.tif"
    tifffile.imwrite(bad, surface().astype("float32"), metadata={"pixel_size_nm": pixel})
    good = tmp_path / "good.tif"
    save_image(AFMImage(surface(), 2.0), good)
    report = load_images([bad, good])
    assert [im.source for im in report.images] == [str(good)]
    assert report.errors[0][0] == str(bad) and "pixel size" in report.errors[0][1]


def test_integer_z_unit_and_text_npz_pixel_size_are_reasons(tmp_path):
    tif = tmp_path / "zint.tif"
    tifffile.imwrite(tif, surface().astype("float32"), metadata={"pixel_size_nm": [1, 1], "z_unit": 5})
    npz = tmp_path / "ten.npz"
    np.savez(npz, height=surface(), pixel_size_nm="ten")
    report = load_images([tif, npz])
    assert not report.images
    reasons = dict(report.errors)
    assert "unit" in reasons[str(tif)] and "pixel_size_nm" in reasons[str(npz)]


def test_bool_arrays_are_refused(tmp_path):
    path = tmp_path / "mask.npy"
    np.save(path, surface() > 0)
    with pytest.raises(AFMInputError, match="boolean values are a mask, not heights"):
        load_image(path, pixel_size_nm=1)


def test_a_two_page_tiff_names_its_pages_and_reads_one_on_request(tmp_path):
    path = tmp_path / "two.tif"
    tifffile.imwrite(path, surface(0, 64).astype("float32"))
    tifffile.imwrite(path, surface(1, 48).astype("float32"), append=True)  # pages of different shapes
    with pytest.raises(AFMInputError, match=r"TIFF has 2 pages .*pass channel=<page index 0..1>"):
        load_image(path, pixel_size_nm=1)
    assert load_image(path, pixel_size_nm=1, channel=1).shape == (48, 48)
    result = run("info", path)
    assert "--channel <page index 0..1>" in result.output  # the CLI names its flag


# ------------------------------------------------------------------ manifests and datasets
def _files(tmp_path, n=4):
    paths = []
    for i in range(n):
        p = tmp_path / f"img{i}.tif"
        save_image(AFMImage(surface(i), 2.0), p)
        paths.append(p)
    return paths


def test_a_manifest_with_a_utf8_bom_reads(tmp_path):
    files = _files(tmp_path, 2)
    manifest = tmp_path / "m.csv"
    manifest.write_bytes("\ufeffpath,label,group\n".encode() + f"{files[0].name},MoS2,s1\n{files[1].name},WS2,s2\n"
                         .encode())
    assert load_dataset(manifest).classes == ["MoS2", "WS2"]


def test_labels_differing_by_whitespace_are_one_class_with_a_warning(tmp_path):
    files = _files(tmp_path, 2)
    manifest = tmp_path / "m.csv"
    manifest.write_text(f"path,label,group\n{files[0].name}, MoS2,s1\n{files[1].name},MoS2,s2\n")
    with pytest.warns(AFMInputWarning, match="differ only by whitespace"):
        assert load_dataset(manifest).classes == ["MoS2"]


@pytest.mark.parametrize("rows, match", [
    ("{0},nan,s1\n{1},WS2,s2\n", "label 'nan' is a missing value"),
    ("{0},MoS2,s1\n{1},WS2,s1\n", "sample 's1' carries two labels"),
])
def test_missing_value_labels_and_two_labels_per_sample_are_errors(tmp_path, rows, match):
    files = _files(tmp_path, 2)
    manifest = tmp_path / "m.csv"
    manifest.write_text("path,label,group\n" + rows.format(files[0].name, files[1].name))
    with pytest.raises(AFMInputError, match=match):
        load_dataset(manifest)


def test_unknown_split_values_are_errors(tmp_path):
    files = _files(tmp_path, 2)
    manifest = tmp_path / "m.csv"
    manifest.write_text(f"path,label,group,split\n{files[0].name},MoS2,s1,train\n{files[1].name},WS2,s2,tset\n")
    with pytest.raises(AFMInputError, match="line 3: split 'tset' is not one of train, val, test"):
        load_dataset(manifest)


def test_a_class_with_fewer_samples_than_folds_is_said_in_samples(tmp_path):
    files = _files(tmp_path, 4)
    manifest = tmp_path / "m.csv"
    manifest.write_text("path,label,group\n" + "".join(f"{f.name},{'MoS2' if i < 3 else 'WS2'},s{min(i, 1)}\n"
                                                       for i, f in enumerate(files)).replace("WS2,s1", "WS2,s9"))
    with pytest.raises(ValueError, match=r"MoS2 has 2 sample\(s\) \(3 images\).*fewer samples than the 3 folds"):
        load_dataset(manifest).check_folds(3)


def test_the_same_pixels_under_two_names_in_two_samples_are_reported(tmp_path):
    files = _files(tmp_path, 2)
    copy = tmp_path / "copy.tif"
    copy.write_bytes(files[0].read_bytes())
    manifest = tmp_path / "m.csv"
    manifest.write_text(f"path,label,group\n{files[0].name},MoS2,s1\n{files[1].name},MoS2,s2\n{copy.name},MoS2,s3\n")
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        report = load_dataset(manifest).load()
    assert [(a, b) for a, b, _ in report.duplicates] == [(str(files[0]), str(copy))]


def test_per_row_manifest_options(tmp_path):
    raw = tmp_path / "plain.tif"
    tifffile.imwrite(raw, surface().astype("float32"))  # no calibration at all
    manifest = tmp_path / "m.csv"
    manifest.write_text(f"path,label,group,pixel_size_nm,z_unit\n{raw.name},MoS2,s1,\"3,4\",um\n")
    image = load_dataset(manifest)[0]
    assert image.pixel_size_nm == (3.0, 4.0)
    np.testing.assert_allclose(image.height, surface() .astype("float32") * 1e3, rtol=1e-6)


def test_a_symlink_loop_in_a_manifest_is_that_files_reason(tmp_path):
    files = _files(tmp_path, 1)
    os.symlink(tmp_path / "loop", tmp_path / "loop")
    manifest = tmp_path / "m.csv"
    manifest.write_text(f"path,label,group\n{files[0].name},MoS2,s1\nloop,WS2,s2\n")
    report = load_dataset(manifest).load()
    assert len(report.images) == 1 and report.errors[0][0].endswith("loop")


def test_names_are_printed_safely(tmp_path):
    assert safe_text("a\x1b[31mred\nb") == "a\\x1b[31mred\\nb"
    assert safe_text("caf\udce9.tif") == "caf\\xe9.tif"  # the byte in the name, as the tables write it
    bad = tmp_path / "evil\x1b[2Jname\n.tif"
    bad.write_bytes(b"not a tiff")
    result = run("info", bad)
    assert "\x1b" not in result.output
    assert sum(line.startswith("  skipped") for line in result.output.splitlines()) == 1


# ------------------------------------------------------------------ command line
def test_extract_a_folder_of_plain_tiff_exports_with_a_pixel_size_to_parquet(tmp_path):
    folder = tmp_path / "exports"
    folder.mkdir()
    for i, label in enumerate(["MoS2", "MoS2", "WS2", "WS2"]):
        tifffile.imwrite(folder / f"exp_{label}_1um_{i:04d}_img1.tif", surface(i, 64).astype("float32"))
    no_flag = run("extract", folder, "-o", tmp_path / "f.csv", "--families", "areal", "--pattern", "default")
    assert no_flag.exit_code == 1 and "pass --pixel-size-nm NM" in no_flag.output
    result = run("extract", folder, "--pixel-size-nm", "9.77", "-o", tmp_path / "f.parquet", "--families", "areal",
                 "--pattern", "default")
    assert result.exit_code == 0, result.output
    table = pd.read_parquet(tmp_path / "f.parquet")
    assert len(table) == 4 and set(table["label"]) == {"MoS2", "WS2"}


def test_png_works_with_z_scale_and_the_message_names_the_flag(tmp_path):
    path = tmp_path / "grey.png"
    Image.fromarray((np.linspace(0, 255, 64 * 64).reshape(64, 64)).astype("uint8")).save(path)
    assert "pass --z-scale NM_PER_LEVEL" in run("info", path, "--pixel-size-nm", "2").output
    result = run("info", path, "--pixel-size-nm", "2,3", "--z-scale", "0.5")
    assert result.exit_code == 0 and "pixel_size_nm 2 x 3" in result.output
    with pytest.raises(AFMInputError, match="pass z_scale"):  # Python names the keyword
        load_image(path, pixel_size_nm=2)


@pytest.mark.parametrize("args", [
    ["dataset", ".", "--pattern", "("],
    ["extract", ".", "--n-jobs", "0"],
    ["synth", "OUT", "--size", "10"],
    ["synth", "OUT", "--size", "0"],
    ["gallery", ".", "--per-class", "0"],
    ["extract", ".", "--store", "S", "--partition-size", "0"],
    ["info", "x.tif", "--pixel-size-nm", "abc"],
    ["info", "x.tif", "--z-unit", "volts"],
])
def test_bad_options_are_usage_errors_before_any_work(tmp_path, args):
    result = run(*[str(tmp_path / a) if a in ("OUT", "S") else a for a in args])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output


def test_synth_into_an_existing_file_and_unwritable_outputs_fail_first(tmp_path):
    existing = tmp_path / "file.txt"
    existing.write_text("x")
    assert run("synth", existing).exit_code == 2
    assert "is a file" in run("synth", existing).output
    result = run("extract", tmp_path, "-o", tmp_path)  # an existing folder given as -o
    assert result.exit_code == 2 and "is a folder" in result.output
    result = run("extract", tmp_path, "-o", existing / "f.csv")  # a file used as a folder
    assert result.exit_code == 2 and "is a file, not a folder" in result.output


def test_an_unreachable_dask_address_fails_at_once(tmp_path):
    import time

    start = time.perf_counter()
    result = run("extract", tmp_path, "--store", tmp_path / "s", "--address", "tcp://127.0.0.1:9")
    assert result.exit_code == 2 and "no dask scheduler answers" in result.output
    assert time.perf_counter() - start < 10


def test_low_data_option_type_rejects_text():
    import typer

    from hybridtmd.cli.common import parse_low_data

    assert parse_low_data("64,32") == [64, 32]
    with pytest.raises(typer.BadParameter):
        parse_low_data("abc")
