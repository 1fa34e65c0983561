"""Issue 15: the instrument sample files of AFMReader's own test suite (JPK, WSxM, Bruker, Asylum,
Gwyddion, .h5-jpk, .asd, .topostats) read with their facts, and SurfaceTopography (hybridtmd's
reader) cross-checked against AFMReader on every format both read.

The files are not in the repository: ``make samples`` (tools/fetch_reader_samples.py) extracts
them from AFMReader's sdist on PyPI into tests/fixtures/vendor_samples/ (git-ignored), or
``HYBRIDTMD_SAMPLE_FILES`` names a folder holding them. Skipped when absent; the AFMReader
comparisons are skipped when AFMReader (the ``vendor`` extra) is not installed.

Facts were read with SurfaceTopography 1.27.1 / gwyfile 0.3.0 (the readers hybridtmd uses) and
agree with AFMReader 0.0.7 as the cross-check tests below state.
"""

from __future__ import annotations

import shutil
import warnings
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import pytest
from corpus.files import sample_files_folder, shared_afm_files
from typer.testing import CliRunner

from hybridtmd.cli import app
from hybridtmd.errors import AFMInputWarning
from hybridtmd.io import list_channels, load_channels, load_image

SAMPLES = sample_files_folder()

M = "m"
#: file -> (pixels (rows, cols), scan size nm (x, y), channels (name, unit) as listed, default
#: channel, its height std in nm (raw, unlevelled), vendor)
FACTS = {
    "sample_0.jpk": ((256, 256), (326.9165, 326.9165),
                     [("Height (retrace)", M), ("Height (measured, retrace)", M), ("Lock-In Amplitude (retrace)", M),
                      ("Height", M), ("Height (measured)", M), ("Lock-In Amplitude", M)],
                     "Height", 10.0516, "JPK Instruments"),
    "sample_0.stp": ((512, 512), (500.0, 500.0), [("Default", "nm")], "Default", 15.9423, "WSxM"),
    "sample_0.top": ((512, 512), (500.0, 500.0), [("Default", "nm")], "Default", 15.9423, "WSxM"),
    "sample_1_um_scale.stp": ((512, 512), (2000.0, 2000.0), [("Default", "nm")], "Default", 0.18476, "WSxM"),
    "sample_1_um_scale.top": ((512, 512), (2000.0, 2000.0), [("Default", "nm")], "Default", 0.18476, "WSxM"),
    "sample_0.spm": ((1024, 1024), (505.859, 505.859),
                     [("ZSensor", "nm"), ("Peak Force Error", "V"), ("Stiffness", "Arb"), ("LogStiffness", "log(Arb)"),
                      ("Adhesion", "V"), ("Deformation", "V"), ("Dissipation", "Arb"), ("Height", "nm")],
                     "Height", 2.6515, "Bruker"),
    # The file names its trace 'HeightTrace' (igor2 reads 'HeightTracee': the C string's NUL is
    # dropped, the old tail kept; hybridtmd.io.igor): the rule picks the trace.
    "sample_0.ibw": ((512, 512), (801.5656, 801.5656),
                     [("HeightTrace", M), ("HeightRetrace", M), ("ZSensorTrace", M), ("ZSensorRetrace", M),
                      ("UserIn0Trace", "V"), ("UserIn0Retrace", "V"), ("UserIn1Trace", "V"), ("UserIn1Retrace", "V")],
                     "HeightTrace", 4.2439, "Asylum Research"),
    "sample_0.gwy": ((512, 512), (433.594, 433.594),
                     [("ZSensor", M), ("Peak Force Error", "N"), ("Stiffness", "Pa"), ("LogStiffness", "dimensionless"),
                      ("Adhesion", "N"), ("Deformation", M), ("Dissipation", "eV"), ("Height", M)],
                     "Height", 3.0118, None),
}
#: AFMReader-only formats: file -> (pixels, scan size nm, default channel, std nm, frames)
AFMREADER_FACTS = {
    "sample_0.h5-jpk": ((128, 128), (150.0, 150.0), "height_trace", 3.1538, 4),
    "sample_1.asd": ((200, 200), (400.0, 400.0), "TP", 0.61698, 197),
}
#: Other length channels' std in nm.
OTHER_HEIGHTS = {
    "sample_0.jpk": {"Height (retrace)": 9.9960, "Height (measured)": 9.1296, "Height (measured, retrace)": 9.0282},
    "sample_0.spm": {"ZSensor": 4.3242},
    "sample_0.ibw": {"HeightRetrace": 4.2415},
    "sample_0.gwy": {"ZSensor": 1.6912, "Deformation": 1.4811},
}


def _path(name: str) -> Path:
    if SAMPLES is None:
        pytest.skip("AFMReader sample files absent (make samples, or set HYBRIDTMD_SAMPLE_FILES)")
    path = SAMPLES / name
    if not path.is_file():
        pytest.skip(f"{name} absent from {SAMPLES}")
    return path


@pytest.mark.parametrize("name", sorted(FACTS))
def test_default_channel_shape_scan_size_and_height_spread(name):
    pixels, scan, _, default, std, vendor = FACTS[name]
    image = load_image(_path(name))
    assert image.channel == default
    assert image.shape == pixels
    np.testing.assert_allclose(image.size_nm, scan, rtol=1e-5)
    assert image.z_unit == "nm"
    assert image.height.std() == pytest.approx(std, rel=0.01)
    assert image.metadata.get("vendor") == vendor


@pytest.mark.parametrize("name", sorted(FACTS))
def test_every_channel_is_listed_with_its_unit(name):
    pixels, scan, channels, default, *_ = FACTS[name]
    table = list_channels(_path(name))
    assert list(zip(table["name"], table["unit"], strict=True)) == channels
    assert (table[["rows", "cols"]].to_numpy() == pixels).all()
    np.testing.assert_allclose(table[["scan_x_nm", "scan_y_nm"]].to_numpy(), [scan] * len(table), rtol=1e-5)
    assert table.loc[table["default"], "name"].tolist() == [default]


@pytest.mark.parametrize("name", sorted(OTHER_HEIGHTS))
def test_other_height_channels_in_nm(name):
    images = {im.channel: im for im in load_channels(_path(name)).values()}
    for channel, std in OTHER_HEIGHTS[name].items():
        assert images[channel].z_unit == "nm"
        assert images[channel].height.std() == pytest.approx(std, rel=0.01)
    assert len({im.shape for im in images.values()}) == 1  # one pixel grid per file


def test_the_ibw_z_sensor_is_uncalibrated_in_the_file():
    """ZLVDTSens -1 (no sensor calibration): its values come out near 1 m, the same in AFMReader."""
    image = load_image(_path("sample_0.ibw"), channel="ZSensorTrace")
    assert str(image.metadata["raw_header"]["ZLVDTSens"]).strip() == "-1"
    assert 0.5e9 < np.median(image.height) < 1.5e9  # nm


def test_jpk_trace_and_retrace_are_told_apart():
    table = list_channels(_path("sample_0.jpk")).set_index("name")
    assert table.loc["Height", "direction"] == "trace" and table.loc["Height (retrace)", "direction"] == "retrace"
    assert list(load_channels(_path("sample_0.jpk")))[:4] == ["height_retrace", "height_sensor_retrace",
                                                              "lock_in_amplitude_retrace", "height"]


@pytest.mark.parametrize("stem", ["sample_0", "sample_1_um_scale"])
def test_a_wsxm_scan_saved_as_stp_and_as_top_reads_the_same(stem):
    # .stp stores doubles, .top 16-bit counts times the header's conversion factor: the same heights
    stp, top = load_image(_path(f"{stem}.stp")), load_image(_path(f"{stem}.top"))
    np.testing.assert_allclose(top.height, stp.height, rtol=1e-9, atol=1e-9)
    assert top.pixel_size_nm == stp.pixel_size_nm


def test_info_lists_the_sample_files(tmp_path):
    result = CliRunner().invoke(app, ["info", str(_path("sample_0.jpk")), str(_path("sample_0.gwy"))],
                                env={"COLUMNS": "1000"})
    assert result.exit_code == 0, result.output
    assert "* 3 Height (height), nm (stored in m), 256x256 px, scan 0.3269 x 0.3269 um, trace" in result.output
    assert "  3 LogStiffness (log_stiffness), dimensionless, 512x512 px" in result.output


# ----------------------------------------------------------------------------------------------
# AFMReader: its own formats, and the cross-check on formats both libraries read
# ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def afmreader():
    pytest.importorskip("AFMReader", reason="AFMReader (the vendor extra) is not installed")
    import AFMReader.gwy
    import AFMReader.ibw
    import AFMReader.jpk
    import AFMReader.spm
    import AFMReader.stp
    import AFMReader.top
    from loguru import logger

    logger.disable("AFMReader")
    return AFMReader


@pytest.mark.parametrize("name", sorted(AFMREADER_FACTS))
def test_afmreader_formats(name, afmreader):
    pixels, scan, default, std, frames = AFMREADER_FACTS[name]
    with pytest.warns(AFMInputWarning, match=f"{frames} frames, using the first") if frames else nullcontext():
        image = load_image(_path(name))
    assert (image.channel, image.shape, image.z_unit) == (default, pixels, "nm")
    np.testing.assert_allclose(image.size_nm, scan, rtol=1e-6)
    assert image.height.std() == pytest.approx(std, rel=0.01)
    assert image.metadata.get("n_frames") == frames
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AFMInputWarning)  # the frames warning again
        assert list(list_channels(_path(name))["unit"]) == ["nm"]


def test_afmreader_log_lines_are_off_unless_verbose(afmreader):
    from loguru import logger

    from hybridtmd.io.limits import set_third_party_logging

    records: list = []
    sink = logger.add(records.append, level="DEBUG", format="{name}: {message}")
    try:
        load_image(_path("sample_0.h5-jpk"))  # its AFMReader module is imported here, turning its logger on
        quiet = len(records)
        set_third_party_logging(True)  # what `hybridtmd --verbose` does
        load_image(_path("sample_0.h5-jpk"))
    finally:
        set_third_party_logging(False)
        logger.remove(sink)
    assert quiet == 0
    assert any(str(r).startswith("AFMReader.h5_jpk: Loading H5-JPK file from") for r in records), records


def _afmreader_read(afmreader, path: Path, channel: str) -> tuple[np.ndarray, float]:
    module = path.suffix.lstrip(".")
    loader = getattr(getattr(afmreader, module), f"load_{module}")
    data, pixel = loader(path) if module in ("stp", "top") else loader(path, channel)[:2]
    return np.asarray(data, dtype=np.float64), float(pixel)


#: (file, hybridtmd's channel, AFMReader's name of it). Heights in nm must agree to 1e-6 of their
#: largest magnitude, pixel sizes to 1e-9 relative, except as noted in _compare.
CROSS_CHECKS = [
    ("sample_0.spm", "Height", "Height"),
    ("sample_0.spm", "ZSensor", "Height Sensor"),  # pySPM and SurfaceTopography name it differently
    ("sample_0.jpk", "Height", "height_trace"),
    ("sample_0.jpk", "Height (retrace)", "height_retrace"),
    ("sample_0.jpk", "Height (measured)", "measuredHeight_trace"),
    ("sample_0.ibw", "HeightTrace", "HeightTracee"),  # AFMReader keeps igor2's reading of the name
    ("sample_0.ibw", "HeightRetrace", "HeightRetrace"),
    ("sample_0.gwy", "Height", "Height"),  # gwyfile against AFMReader's own Gwyddion parser
    ("sample_0.gwy", "ZSensor", "ZSensor"),
    ("sample_0.stp", None, None),
    ("sample_1_um_scale.stp", None, None),
]


def _compare(image, data: np.ndarray, pixel: float, name: str) -> None:
    assert data.shape == image.shape
    if name.endswith(".ibw"):
        # Asylum's wave scaling puts the first and last pixel centres ScanSize apart
        # (pitch = ScanSize / (n - 1)); SurfaceTopography keeps that pitch, AFMReader divides
        # ScanSize by n: 0.2 % apart on 512 px, by exactly n / (n - 1).
        n = image.shape[1]
        assert image.pixel_size_nm[0] == pytest.approx(pixel * n / (n - 1), rel=1e-9)
    else:
        assert image.pixel_size_nm == pytest.approx((pixel, pixel), rel=1e-9)
    if name.endswith((".stp", ".top")):
        # WSxM stores the image rotated by 180 degrees; SurfaceTopography turns it to Gwyddion's
        # orientation (wsxmfile.c), AFMReader 0.0.7 returns it as stored.
        data = data[::-1, ::-1]
    # AFMReader returns float32 for .ibw: agreement to 1e-6 of the largest magnitude, in nm.
    np.testing.assert_allclose(data, image.height, rtol=0, atol=1e-6 * float(np.abs(image.height).max()))


@pytest.mark.parametrize(("name", "ours", "theirs"), CROSS_CHECKS)
def test_surface_topography_agrees_with_afmreader(name, ours, theirs, afmreader):
    image = load_image(_path(name), channel=ours)
    data, pixel = _afmreader_read(afmreader, _path(name), theirs)
    _compare(image, data, pixel, name)


@pytest.mark.parametrize("stem", ["sample_0", "sample_1_um_scale"])
def test_wsxm_top_agrees_with_afmreader_up_to_its_z_range(stem, afmreader):
    """AFMReader 0.0.7 rescales a .top file to [0, Z Amplitude] with the amplitude's integer part
    (``Z Amplitude: (\\d+)``), so its heights are shifted and up to 1 nm short in range; their
    shape must still be SurfaceTopography's, and the range no longer and at most 1 nm shorter."""
    image = load_image(_path(f"{stem}.top"))
    data, pixel = _afmreader_read(afmreader, _path(f"{stem}.top"), None)
    data = data[::-1, ::-1]  # stored rotated by 180 degrees (see _compare)
    assert data.shape == image.shape and image.pixel_size_nm == pytest.approx((pixel, pixel), rel=1e-9)
    ours, theirs = np.ptp(image.height), np.ptp(data)
    assert ours - 1.0 < theirs <= ours * (1 + 1e-9)
    np.testing.assert_allclose((data - data.min()) / theirs, (image.height - image.height.min()) / ours, atol=1e-6)


SHARED = shared_afm_files()


@pytest.mark.skipif(SHARED is None, reason="../shared/data/afm_files is absent")
@pytest.mark.parametrize(("ours", "theirs"), [("Height", "Height"), ("ZSensor", "Height Sensor")])
def test_shared_nanoscope_file_agrees_with_afmreader(ours, theirs, afmreader, tmp_path):
    copy = tmp_path / "di-3.spm"  # AFMReader reads Nanoscope files by the .spm suffix only
    shutil.copyfile(SHARED / "di-3.di", copy)
    image = load_image(SHARED / "di-3.di", channel=ours)
    data, pixel = _afmreader_read(afmreader, copy, theirs)
    _compare(image, data, pixel, "di-3.spm")


# ----------------------------------------------------------------------------------------------
# Issue 26.10: channel names as the file writes them, non-height channels in their real unit
# ----------------------------------------------------------------------------------------------


def _relabelled_ibw(tmp_path: Path, labels: dict[bytes, bytes]) -> Path:
    """sample_0.ibw with some 32-byte label fields rewritten (a C string, then the old tail)."""
    data = bytearray(_path("sample_0.ibw").read_bytes())
    for old, new in labels.items():
        start = data.index(old + b"\0")
        data[start:start + 32] = new.ljust(32, b"\0")
    path = tmp_path / "relabelled.ibw"
    path.write_bytes(bytes(data))
    return path


def test_asylum_channel_names_end_at_the_nul(tmp_path):
    """A label field reused for a shorter name (``PhaseRetrace\\0race``) is that name: key
    ``phase_retrace``, not ``phase_race``, so ``channels=["height", "phase"]`` finds the file's phase."""
    path = _relabelled_ibw(tmp_path, {b"UserIn0Trace": b"PhaseTrace\0ce", b"UserIn0Retrace": b"PhaseRetrace\0race"})
    table = list_channels(path).set_index("name")
    assert table.loc["HeightTrace", "key"] == "height" and bool(table.loc["HeightTrace", "default"])
    assert table.loc["PhaseTrace", "key"] == "phase" and table.loc["PhaseRetrace", "key"] == "phase_retrace"
    images = load_channels(path, ["height", "phase"])
    assert (images["height"].channel, images["phase"].channel) == ("HeightTrace", "PhaseTrace")
    assert not images["phase"].is_height


def test_bruker_non_height_channels_get_the_files_soft_scale():
    """Adhesion: '@2:Z scale: V [Sens. ForceSens] (...) 4096.000 Arb' over 2^32 counts, times
    '@Sens. ForceSens: V 0.006000000 V/Arb': volts, not raw counts labelled V."""
    import SurfaceTopography.IO as st_io

    path = _path("sample_0.spm")
    image = load_image(path, channel="Adhesion")
    counts = st_io.open_topography(str(path), format="di").topography(channel_index=4).heights().T
    assert image.z_unit == "V"
    np.testing.assert_allclose(image.height, counts * 4096.0 / 2**32 * 0.006, rtol=1e-9)
    assert image.height.std() < 0.1  # volts; the raw counts' std is 5.3e5


@pytest.mark.parametrize(("name", "channels", "std"), [
    ("sample_0_1.topostats", ["image"], 1.41843),  # file version 0.1: the processed image only
    ("sample_0_2.topostats", ["image", "image_original"], 0.62044),
])
def test_topostats_offers_the_processed_and_the_original_image(name, channels, std):
    """Read with h5py, no extra needed; the std is AFMReader 0.0.7's for ``image``."""
    table = list_channels(_path(name))
    assert table["name"].tolist() == channels and table["unit"].tolist() == ["nm"] * len(channels)
    assert table.loc[table["default"], "name"].tolist() == ["image"]
    image = load_image(_path(name))
    assert (image.channel, image.shape, image.z_unit) == ("image", (64, 64), "nm")
    np.testing.assert_allclose(image.size_nm, (126.46475, 126.46475), rtol=1e-6)
    assert image.height.std() == pytest.approx(std, rel=0.01)
    if "image_original" in channels:
        original = load_image(_path(name), channel="image_original")
        assert original.channel == "image_original" and not np.array_equal(original.height, image.height)
