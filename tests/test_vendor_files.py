"""Issue 15: the real instrument files of ../shared/data/afm_files/ read with the facts its README
states (shape, scan size, channels with units, height spread), through load_image, load_channels,
list_channels and `hybridtmd info`. Skipped when ../shared is absent."""

from __future__ import annotations

import numpy as np
import pytest
from corpus.files import shared_afm_files
from typer.testing import CliRunner

from hybridtmd.cli import app
from hybridtmd.errors import AFMInputWarning
from hybridtmd.io import list_channels, load_channels, load_image

FOLDER = shared_afm_files()
pytestmark = pytest.mark.skipif(FOLDER is None, reason="../shared/data/afm_files is absent")

#: The README's table: (pixels, scan size nm, channels (name, unit), default channel, its std in nm,
#: other height channels' std in nm, vendor)
FACTS = {
    "di-3.di": ((256, 256), (10_000, 10_000),
                [("ZSensor", "nm"), ("AmplitudeError", "mV"), ("Phase", "deg"), ("Height", "nm")],
                "Height", 264.0, {"ZSensor": 226.4}, "Bruker"),
    "mi-1.mi": ((256, 256), (20_000, 20_000),
                [("Topography", "µm"), ("Deflection", "V"), ("Friction", "V"), ("Friction", "V")],
                "Topography", 33.2, {}, "Agilent (Molecular Imaging)"),
    "nid-1.nid": ((256, 256), (20_000, 20_000),
                  [("Scan forward (Z-Axis)", "m"), ("Scan forward (Z-AxisSensor)", "m"),
                   ("Scan backward (Z-Axis)", "m"), ("Scan backward (Z-AxisSensor)", "m")],
                  "Scan forward (Z-Axis)", 239.6, {}, "Nanosurf"),
    "example_ps.tiff": ((512, 512), (1_000, 1_000), [("Z Height", "µm")], "Z Height", 3.93, {}, "Park Systems"),
}


@pytest.mark.parametrize("name", sorted(FACTS))
def test_default_channel_shape_scan_size_and_height_spread(name):
    pixels, scan, _, default, std, _, vendor = FACTS[name]
    image = load_image(FOLDER / name)
    assert image.channel == default
    assert image.shape == pixels
    np.testing.assert_allclose(image.size_nm, scan, rtol=1e-9)
    assert image.z_unit == "nm"
    assert image.height.std() == pytest.approx(std, rel=0.01)
    assert image.metadata["vendor"] == vendor


@pytest.mark.parametrize("name", sorted(FACTS))
def test_every_channel_is_listed_with_its_unit(name):
    pixels, scan, channels, default, *_ = FACTS[name]
    table = list_channels(FOLDER / name)
    assert list(zip(table["name"], table["unit"], strict=True)) == channels
    assert (table[["rows", "cols"]].to_numpy() == pixels).all()
    np.testing.assert_allclose(table[["scan_x_nm", "scan_y_nm"]].to_numpy(), [scan] * len(table))
    assert table.loc[table["default"], "name"].tolist() == [default]


@pytest.mark.parametrize("name", sorted(FACTS))
def test_load_channels_keys_units_and_heights(name):
    _, _, channels, default, std, others, _ = FACTS[name]
    images = load_channels(FOLDER / name)
    assert len(images) == len(channels)
    by_name = {im.channel: im for im in images.values()}
    assert by_name[default].height.std() == pytest.approx(std, rel=0.01)
    for channel, expected in others.items():
        assert by_name[channel].height.std() == pytest.approx(expected, rel=0.01)
    for (_channel, unit), image in zip(channels, images.values(), strict=True):
        length = unit in ("nm", "µm", "m")
        assert image.z_unit == ("nm" if length else unit)  # heights in nm, other signals in their own unit
        assert image.shape == images[next(iter(images))].shape  # one pixel grid per file


def test_canonical_keys_line_up_across_vendors():
    assert list(load_channels(FOLDER / "di-3.di")) == ["height_sensor", "amplitude_error", "phase", "height"]
    assert list(load_channels(FOLDER / "nid-1.nid")) == ["height", "height_sensor", "height_retrace",
                                                         "height_sensor_retrace"]
    assert list(load_channels(FOLDER / "mi-1.mi"))[:2] == ["height", "deflection"]


def test_channel_by_index_name_and_canonical_name():
    path = FOLDER / "di-3.di"
    assert load_image(path, channel=0).channel == "ZSensor"
    assert load_image(path, channel="ZSensor").channel == "ZSensor"
    assert load_image(path, channel="height_sensor").channel == "ZSensor"
    phase = load_image(path, channel="phase")
    assert (phase.channel, phase.z_unit, phase.is_height) == ("Phase", "deg", False)


def test_metadata_keeps_instrument_time_and_raw_header():
    meta = load_image(FOLDER / "nid-1.nid").metadata
    assert (meta["instrument"], meta["vendor"]) == ("DriveAFM", "Nanosurf")
    assert meta["acquisition_time"].startswith("2022-11-03")
    assert isinstance(meta["raw_header"], dict) and meta["raw_header"]


def test_info_lists_channels_units_instrument_and_the_default(tmp_path):
    result = CliRunner().invoke(app, ["info", str(FOLDER / "di-3.di"), str(FOLDER / "example_ps.tiff")],
                                env={"COLUMNS": "1000"})
    assert result.exit_code == 0, result.output
    out = result.output
    assert "di-3.di: Bruker; Dimension Icon; acquired 2014-12-15T13:33:51" in out
    assert "* 3 Height (height), nm, 256x256 px, scan 10 x 10 um, retrace" in out
    assert "  2 Phase (phase), deg" in out
    assert "* 0 Z Height (height), nm (stored in µm), 512x512 px, scan 1 x 1 um" in out


def test_a_truncated_or_garbage_vendor_file_is_one_line_within_seconds(tmp_path):
    import time

    data = (FOLDER / "di-3.di").read_bytes()
    cut = data.index(b"\\*File list end")
    (tmp_path / "no_end.spm").write_bytes(data[:cut] + b"\x00" * 4096)
    (tmp_path / "truncated.di").write_bytes(data[:3000])
    (tmp_path / "garbage.nid").write_bytes(b"[DataSet]\r\n" + b"y" * 5000)
    (tmp_path / "garbage.ibw").write_bytes(b"\x05\x00" + b"z" * 5000)
    (tmp_path / "good.di").write_bytes(data)
    start = time.perf_counter()
    result = CliRunner().invoke(app, ["info", *sorted(str(p) for p in tmp_path.iterdir())], env={"COLUMNS": "1000"})
    assert time.perf_counter() - start < 30
    assert result.exit_code == 1
    skipped = [line for line in result.output.splitlines() if line.strip().startswith("skipped")]
    assert len(skipped) == 4, result.output
    assert "good.di: Bruker" in result.output
    assert any("no_end.spm: Nanoscope header has no '\\*File list end' line" in line for line in skipped)


def test_info_on_a_folder_describes_its_files():
    result = CliRunner().invoke(app, ["info", str(FOLDER)], env={"COLUMNS": "1000"})
    assert result.exit_code == 0, result.output
    assert "not a regular file" not in result.output
    for name in FACTS:
        assert f"{name}: " in result.output


@pytest.mark.parametrize(("option", "message"), [
    (["--pixel-size-nm", "5"], "pixel size 5 x 5 nm given overrides the 39.06 x 39.06 nm the file declares"),
    (["--z-unit", "um"], "z unit 'um' given overrides the 'nm' the file declares (heights x1000)"),
])
def test_an_override_that_contradicts_the_file_is_said(option, message):
    """Issue 26.5: the override is used (it was asked for) but never silently."""
    path = FOLDER / "di-3.di"
    result = CliRunner().invoke(app, ["info", str(path), *option], env={"COLUMNS": "1000"})
    assert result.exit_code == 0, result.output
    assert f"{path}: {message}" in result.output
    with pytest.warns(AFMInputWarning, match="overrides"):
        image = load_image(path, pixel_size_nm=5.0, z_unit="um")
    assert image.pixel_size_nm == (5.0, 5.0) and image.height.std() == pytest.approx(264.0e3, rel=0.01)


def test_an_override_the_file_agrees_with_is_silent(recwarn):
    load_image(FOLDER / "di-3.di", pixel_size_nm=10_000 / 256, z_unit="nm")
    assert not [w for w in recwarn if issubclass(w.category, AFMInputWarning)]
