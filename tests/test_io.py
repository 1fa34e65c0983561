"""Readers, writers, units, datasets and every bad-input case of hybridtmd.io."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import tifffile

from hybridtmd.errors import AFMInputError, AFMInputWarning, MissingDependencyError
from hybridtmd.io import AFMImage, load_dataset, load_image, load_images, save_image, unit_to_nm, write_manifest
from hybridtmd.io.figures import plot_height_map
from hybridtmd.io.image import check_height


# --------------------------------------------------------------------------- round trips
@pytest.mark.parametrize("suffix", [".tif", ".npz", ".gwy"])
def test_round_trip_keeps_heights_and_pixel_size(tmp_path, rough_image, suffix):
    image = AFMImage(rough_image.height, (5.0, 7.5), channel="Height")
    path = save_image(image, tmp_path / f"img{suffix}")
    back = load_image(path)
    tol = 1e-6 if suffix == ".tif" else 1e-12  # TIFF stores float32
    np.testing.assert_allclose(back.height, image.height, atol=tol)
    assert back.pixel_size_nm == pytest.approx((5.0, 7.5), rel=1e-9)
    assert back.source == str(path)
    assert back.height.dtype == np.float64


def test_float16_tiff_round_trip_within_half_precision(tmp_path, rough_image):
    path = save_image(rough_image, tmp_path / "half.tif", tiff_dtype="float16")
    back = load_image(path)
    np.testing.assert_allclose(back.height, rough_image.height, atol=2e-3)
    assert back.pixel_size_nm == pytest.approx(rough_image.pixel_size_nm)


def test_npy_needs_pixel_size(tmp_path, rough_image):
    path = save_image(rough_image, tmp_path / "bare.npy")
    with pytest.raises(AFMInputError, match="bare.npy.*pixel size"):
        load_image(path)
    back = load_image(path, pixel_size_nm=2.0)
    assert back.pixel_size_nm == (2.0, 2.0)
    np.testing.assert_array_equal(back.height, rough_image.height)


def test_tiff_resolution_tags_in_centimetres_give_pixel_size(tmp_path, rough_image):
    path = tmp_path / "calibrated.tif"
    tifffile.imwrite(path, rough_image.height.astype(np.float32), resolution=(1e7 / 4.0, 1e7 / 4.0),
                     resolutionunit="CENTIMETER")
    assert load_image(path).pixel_size_nm == pytest.approx((4.0, 4.0), rel=1e-6)


def test_imagej_tiff_unit_and_z_unit(tmp_path, rough_image):
    path = tmp_path / "imagej.tif"
    tifffile.imwrite(path, rough_image.height.astype(np.float32), imagej=True, resolution=(50.0, 50.0),
                     metadata={"unit": "um"})
    # 50 px per µm -> 20 nm pixels; heights declared in µm -> x1000
    image = load_image(path, z_unit="um")
    assert image.pixel_size_nm == pytest.approx((20.0, 20.0), rel=1e-6)
    np.testing.assert_allclose(image.height, rough_image.height.astype(np.float32) * 1000, rtol=1e-6)


def test_inch_dpi_is_not_a_physical_calibration(tmp_path, rough_image):
    path = tmp_path / "dpi.tif"
    tifffile.imwrite(path, rough_image.height.astype(np.float32), resolution=(72, 72), resolutionunit="INCH")
    with pytest.raises(AFMInputError, match="dpi.tif.*no pixel size"):
        load_image(path)
    assert load_image(path, pixel_size_nm=3).pixel_size_nm == (3.0, 3.0)


@pytest.mark.parametrize("unit, factor", [("m", 1e9), ("um", 1e3), ("µm", 1e3), ("nm", 1), ("A", 0.1), ("Å", 0.1)])
def test_units_convert_to_nm(tmp_path, rough_image, unit, factor):
    assert unit_to_nm(unit) == factor
    path = tmp_path / "h.npz"
    np.savez(path, height=rough_image.height, pixel_size_nm=np.array([1.0, 1.0]), z_unit=unit)
    np.testing.assert_allclose(load_image(path).height, rough_image.height * factor)


@pytest.mark.parametrize("unit", ["Mm", "Pm"])
def test_upper_case_si_prefixes_are_not_read_as_their_lower_case_twins(tmp_path, rough_image, unit):
    """Mm (megametre) is not mm and Pm (petametre) not pm: case-blind they would pass silently
    with a factor 10^12 or 10^30 wrong; they are foreign lengths, refused naming the file."""
    from hybridtmd.io.image import is_foreign_length_unit

    with pytest.raises(ValueError, match="unknown length unit"):
        unit_to_nm(unit)
    assert is_foreign_length_unit(unit) and unit_to_nm(unit.lower()) > 0 and not is_foreign_length_unit(unit.lower())
    path = tmp_path / "mega.npz"
    np.savez(path, height=rough_image.height, pixel_size_nm=np.array([1.0, 1.0]), z_unit=unit)
    with pytest.raises(AFMInputError, match="mega.npz"):
        load_image(path)


def test_gwy_in_metres_converts_to_nm(tmp_path, rough_image):
    from gwyfile.objects import GwyContainer, GwyDataField, GwySIUnit

    field = GwyDataField(rough_image.height * 1e-9, xreal=80 * 5e-9, yreal=64 * 5e-9,
                         si_unit_xy=GwySIUnit(unitstr="m"), si_unit_z=GwySIUnit(unitstr="m"))
    container = GwyContainer()
    container["/0/data/title"] = "Phase"
    container["/0/data"] = GwyDataField(np.zeros((64, 80)) + np.arange(80), xreal=1.0, yreal=1.0)
    container["/1/data/title"] = "Height"
    container["/1/data"] = field
    path = tmp_path / "two.gwy"
    container.tofile(str(path))
    image = load_image(path, channel="height")
    np.testing.assert_allclose(image.height, rough_image.height, rtol=1e-9)
    assert image.pixel_size_nm == pytest.approx((5.0, 5.0))
    with pytest.raises(AFMInputError, match="two.gwy.*channel 'Amplitude' not found"):
        load_image(path, channel="Amplitude")


def test_png_grey_needs_z_scale_and_pixel_size(tmp_path):
    from PIL import Image

    grey = (np.indices((40, 50)).sum(0) % 200).astype(np.uint8)
    path = tmp_path / "grey.png"
    Image.fromarray(grey).save(path)
    with pytest.raises(AFMInputError, match="grey.png.*z_scale"):
        load_image(path, pixel_size_nm=2)
    image = load_image(path, pixel_size_nm=2, z_scale=0.01)
    np.testing.assert_allclose(image.height, grey * 0.01)


def test_rgb_png_is_converted_with_a_warning(tmp_path):
    from PIL import Image

    rgb = np.zeros((40, 40, 3), np.uint8)
    rgb[..., 0] = np.arange(40)[None, :] * 5
    path = tmp_path / "rgb.png"
    Image.fromarray(rgb).save(path)
    with pytest.warns(AFMInputWarning, match="converted to grey"):
        image = load_image(path, pixel_size_nm=1, z_scale=1)
    assert image.shape == (40, 40)


def test_vendor_format_without_extra_names_the_extra(tmp_path, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_afmreader(name, *args, **kwargs):
        if name.startswith("AFMReader"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_afmreader)
    path = tmp_path / "movie.asd"  # the formats SurfaceTopography lacks go through AFMReader
    path.write_bytes(b"\x00" * 64)
    with pytest.raises(MissingDependencyError, match=r"movie.asd.*hybridtmd\[vendor\]"):
        load_image(path)


# --------------------------------------------------------------------------- bad input
def _write(tmp_path, name, data: bytes):
    path = tmp_path / name
    path.write_bytes(data)
    return path


def test_missing_file(tmp_path):
    with pytest.raises(AFMInputError, match="nowhere.tif: file not found"):
        load_image(tmp_path / "nowhere.tif")


def test_zero_byte_file(tmp_path):
    with pytest.raises(AFMInputError, match="empty.tif: file is empty"):
        load_image(_write(tmp_path, "empty.tif", b""))


def test_text_named_tif(tmp_path):
    with pytest.raises(AFMInputError, match=r"notes.tif: cannot read \.tif file"):
        load_image(_write(tmp_path, "notes.tif", b"this is not a tiff\n" * 10))


def test_truncated_tiff(tmp_path, rough_image):
    good = save_image(rough_image, tmp_path / "good.tif").read_bytes()
    path = _write(tmp_path, "cut.tif", good[: len(good) // 3])
    with pytest.raises(AFMInputError, match="cut.tif"):
        load_image(path)


def test_unsupported_suffix(tmp_path):
    with pytest.raises(AFMInputError, match="data.xyz: unsupported file type"):
        load_image(_write(tmp_path, "data.xyz", b"1 2 3"))


@pytest.mark.parametrize(
    "array, match",
    [
        (np.zeros((0, 64)), "empty"),
        (np.zeros((4, 64, 64)) + np.arange(64), "2-D"),
        (np.ones((64, 64)), "constant"),
        (np.random.default_rng(0).normal(size=(8, 8)), "8x8 px"),
        (np.random.default_rng(0).normal(size=(1, 4096)), "at least 32"),
        (np.array([["a"] * 40] * 40), "not numeric"),
    ],
)
def test_bad_arrays_are_rejected_with_file_and_reason(tmp_path, array, match):
    path = tmp_path / "bad.npy"
    np.save(path, array)
    with pytest.raises(AFMInputError, match=f"bad.npy.*{match}"):
        load_image(path, pixel_size_nm=1)


def test_few_nans_are_filled_with_a_warning(rough_image):
    h = rough_image.height.copy()
    h[10, 10:14] = np.nan
    h[0, 0] = np.inf
    with pytest.warns(AFMInputWarning, match="filled 5 NaN/inf"):
        filled = check_height(h, "holes.tif")
    assert np.all(np.isfinite(filled))
    # interpolated values lie within the range of their neighbours
    assert rough_image.height[8:13, 8:16].min() - 1e-9 <= filled[10, 11] <= rough_image.height[8:13, 8:16].max() + 1e-9


def test_many_nans_are_rejected(rough_image):
    h = rough_image.height.copy()
    h[:8] = np.nan  # 12.5 %
    with pytest.raises(AFMInputError, match="holes.tif: 12.5% of pixels are NaN"):
        check_height(h, "holes.tif")


def test_negative_pixel_size(tmp_path, rough_image):
    path = save_image(rough_image, tmp_path / "img.npy")
    with pytest.raises(AFMInputError, match="img.npy: pixel size must be"):
        load_image(path, pixel_size_nm=-1)


def test_afmimage_validates_directly():
    with pytest.raises(AFMInputError, match="2-D"):
        AFMImage(np.zeros(10), (1, 1))
    with pytest.raises(AFMInputError, match="NaN"):
        AFMImage(np.full((4, 4), np.nan), (1, 1))
    image = AFMImage(np.zeros((40, 50)), (2.0, 3.0))
    assert image.size_nm == (100.0, 120.0)
    assert image.area_um2 == pytest.approx(0.012)


def test_load_images_skips_bad_files_and_keeps_good(tmp_path, rough_image):
    good1 = save_image(rough_image, tmp_path / "a.tif")
    bad = _write(tmp_path, "b.tif", b"garbage")
    good2 = save_image(rough_image, tmp_path / "c.npz")
    report = load_images([good1, bad, good2, tmp_path / "missing.tif"])
    assert [im.name for im in report.images] == ["a.tif", "c.npz"]
    assert report.indices.tolist() == [0, 2]
    assert [e[0].rsplit("/", 1)[-1] for e in report.errors] == ["b.tif", "missing.tif"]
    with pytest.raises(AFMInputError):
        load_images([good1, bad], on_error="raise")


# --------------------------------------------------------------------------- datasets
def _paper_folder(tmp_path, rough_image):
    names = [
        "scan_MoS2_center_101_a.tif",
        "scan_MoS2_edge_101_b.tif",
        "scan_WS2_center_202_a_test.tif",
        "scan_WSe2_center_303_train.tif",
    ]
    for n in names:
        save_image(rough_image, tmp_path / n)
    (tmp_path / "README.txt").write_text("not an image")
    save_image(rough_image, tmp_path / "badname.tif")
    return names


def test_folder_dataset_parses_paper_convention(tmp_path, rough_image):
    _paper_folder(tmp_path, rough_image)
    with pytest.warns(AFMInputWarning, match="1 file"):
        ds = load_dataset(tmp_path)
    assert len(ds) == 4
    assert ds.labels.tolist() == ["MoS2", "MoS2", "WS2", "WSe2"]
    assert ds.groups.tolist() == ["101", "101", "202", "303"]
    assert ds.splits.tolist() == [None, None, "test", "train"]
    assert ds.classes == ["MoS2", "WS2", "WSe2"]
    assert [p.rsplit("/", 1)[-1] for p, _ in ds.skipped] == ["badname.tif"]
    assert ds[0].shape == rough_image.shape
    sub = ds.subset([2, 3])
    assert sub.labels.tolist() == ["WS2", "WSe2"]


def test_custom_pattern(tmp_path, rough_image):
    save_image(rough_image, tmp_path / "MoS2-s17-1.tif")
    save_image(rough_image, tmp_path / "WS2-s18-1.tif")
    ds = load_dataset(tmp_path, pattern=r"(?P<label>[^-]+)-(?P<group>s\d+)-\d+\.tif")
    assert ds.labels.tolist() == ["MoS2", "WS2"] and ds.groups.tolist() == ["s17", "s18"]
    with pytest.raises(ValueError, match="named groups"):
        load_dataset(tmp_path, pattern=r"(?P<label>.*)\.tif")


def test_manifest_round_trip(tmp_path, rough_image):
    _paper_folder(tmp_path, rough_image)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AFMInputWarning)
        ds = load_dataset(tmp_path)
    manifest = write_manifest(ds, tmp_path / "sub" / "manifest.csv")
    again = load_dataset(manifest)
    assert [p.resolve() for p in again.paths] == [p.resolve() for p in ds.paths]
    assert again.labels.tolist() == ds.labels.tolist()
    assert again.groups.tolist() == ds.groups.tolist()
    assert again.splits.tolist() == [None, None, "test", "train"]


def test_manifest_errors(tmp_path):
    bad = tmp_path / "m.csv"
    bad.write_text("file,label\nx.tif,MoS2\n")
    with pytest.raises(AFMInputError, match=r"m.csv: manifest lacks column\(s\) \['group', 'path'\]"):
        load_dataset(bad)
    with pytest.raises(AFMInputError, match="dataset path not found"):
        load_dataset(tmp_path / "nope")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(AFMInputError, match="no AFM files"):
        load_dataset(empty)


def test_dataset_load_reports_bad_files(tmp_path, rough_image):
    save_image(rough_image, tmp_path / "x_MoS2_c_1_a.tif")
    _write(tmp_path, "x_WS2_c_2_a.tif", b"broken")
    report = load_dataset(tmp_path).load()
    assert len(report.images) == 1 and len(report.errors) == 1
    assert "x_WS2_c_2_a.tif" in report.errors[0][0]


def test_plot_has_nm_colourbar_and_scale_bar(rough_image):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    im = plot_height_map(rough_image, ax=ax, scale_bar_nm=100)
    assert im.get_extent() == [0, 400.0, 320.0, 0]  # physical coordinates, nm
    assert fig.axes[-1].get_ylabel() == "height (nm)"
    assert any(t.get_text() == "100 nm" for t in ax.texts)
    plt.close(fig)


def test_the_sample_of_a_file_is_its_names_group_field_else_the_file():
    from hybridtmd.io.dataset import sample_of_file

    assert sample_of_file("scans/x_MoS2_y_S17_2.tif") == "S17"
    assert sample_of_file(Path("a/b/x_WS2_y_S3.npz")) == "S3"
    assert sample_of_file("a/odd-name.tif") == "a/odd-name.tif"  # not named by the convention: its own sample
    assert sample_of_file("x_MoS2_y_S17.tif", pattern=r"^(?P<group>[^_]+)_") == "x"
