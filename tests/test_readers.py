"""The public reader registry: a new format without editing the package, replacing a reader,
suffix rules, and warnings that point at the caller's line."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

from hybridtmd.errors import AFMInputError, AFMInputWarning
from hybridtmd.io import (
    SUPPORTED_SUFFIXES,
    RawImage,
    load_dataset,
    load_image,
    register_reader,
    save_image,
    unregister_reader,
)
from hybridtmd.io.readers import reader_for
from hybridtmd.preprocess import Preprocessor


def read_toy(path: Path, channel: str) -> RawImage:
    """A toy text format: a header line ``pixel_nm <px> unit <z_unit>``, then whitespace-separated rows."""
    header, *rows = path.read_text().splitlines()
    _, pixel, _, unit = header.split()
    return RawImage(np.loadtxt(rows), float(pixel), unit, {"channel": "Toy"})


def _write_toy(path: Path, height: np.ndarray, pixel: float = 2.5, unit: str = "um") -> Path:
    lines = [f"pixel_nm {pixel} unit {unit}"] + [" ".join(f"{v:.6f}" for v in row) for row in height]
    path.write_text("\n".join(lines))
    return path


@pytest.fixture
def toy_format():
    register_reader(".toy", read_toy)
    yield
    unregister_reader(".toy")


def test_a_registered_format_loads_in_nm_and_joins_the_supported_suffixes(tmp_path, rng, toy_format):
    height = rng.normal(0.0, 0.01, (40, 48))  # µm
    path = _write_toy(tmp_path / "scan.TOY", height)
    assert ".toy" in SUPPORTED_SUFFIXES and ".toy" in tuple(SUPPORTED_SUFFIXES)
    image = load_image(path)
    np.testing.assert_allclose(image.height, np.round(height, 6) * 1e3)
    assert image.pixel_size_nm == (2.5, 2.5)
    assert image.channel == "Toy"
    assert image.metadata["format"] == "toy" and image.metadata["original_z_unit"] == "um"


def test_a_registered_format_is_found_by_load_dataset(tmp_path, rng, toy_format):
    for i, label in enumerate(["MoS2", "WS2"]):
        _write_toy(tmp_path / f"x_{label}_c_{i}.toy", rng.normal(0, 1, (32, 32)))
    ds = load_dataset(tmp_path)
    assert sorted(ds.labels.tolist()) == ["MoS2", "WS2"]
    report = ds.load()
    assert len(report.images) == 2 and not report.errors


def test_unregistered_suffix_is_no_longer_supported(tmp_path, rng):
    register_reader([".toy"], read_toy)
    unregister_reader(".toy")
    assert ".toy" not in SUPPORTED_SUFFIXES
    path = _write_toy(tmp_path / "a.toy", rng.normal(0, 1, (32, 32)))
    with pytest.raises(AFMInputError, match="unsupported file type '.toy'"):
        load_image(path)


def test_registering_a_suffix_again_replaces_its_reader(tmp_path, rough_image):
    path = save_image(rough_image, tmp_path / "a.npy")
    built_in = reader_for(".npy")
    calls = []

    def counting_reader(p: Path, channel: str) -> RawImage:
        calls.append(p)
        return built_in(p, channel)

    register_reader(".NPY", counting_reader)  # case-insensitive: replaces the built-in reader
    try:
        assert reader_for(".npy") is counting_reader
        load_image(path, pixel_size_nm=5.0)
    finally:
        register_reader(".npy", built_in)
    assert calls == [path]
    load_image(path, pixel_size_nm=5.0)
    assert calls == [path]


def test_the_longest_registered_suffix_wins(tmp_path, rough_image):
    path = save_image(rough_image, tmp_path / "a.ome.tif")

    def ome_reader(p: Path, channel: str) -> RawImage:
        return RawImage(np.ones((40, 40)) + np.eye(40), 1.0, "nm", {"ome": True})

    register_reader(".ome.tif", ome_reader)
    try:
        assert load_image(path).metadata["ome"] is True
        assert "ome" not in load_image(save_image(rough_image, tmp_path / "b.tif")).metadata
    finally:
        unregister_reader(".ome.tif")


def test_a_reader_may_return_a_plain_tuple_and_its_failures_name_the_file(tmp_path, rng, toy_format):
    register_reader(".tup", lambda p, channel: (np.arange(36 * 36.0).reshape(36, 36), 1.0, None, {}))
    try:
        path = tmp_path / "a.tup"
        path.write_text("x")
        assert load_image(path).shape == (36, 36)
    finally:
        unregister_reader(".tup")
    broken = tmp_path / "broken.toy"
    broken.write_text("not a header")
    with pytest.raises(AFMInputError, match=r"broken\.toy: cannot read \.toy file \(ValueError"):
        load_image(broken)


@pytest.mark.parametrize("suffix", ["toy", "", ".", "a/b"])
def test_a_suffix_starts_with_a_dot(suffix):
    with pytest.raises(ValueError, match="starts with a dot"):
        register_reader(suffix, read_toy)


def test_a_reader_must_be_callable():
    with pytest.raises(TypeError, match="callable"):
        register_reader(".toy", "read_toy")  # type: ignore[arg-type]
    with pytest.raises(KeyError, match="no reader for '.nope'"):
        reader_for(".nope")


def test_input_warnings_point_at_the_callers_line(tmp_path, rng, toy_format):
    height = rng.normal(0, 1, (40, 40))
    height[3, 3] = np.nan
    _write_toy(tmp_path / "x_MoS2_c_1.toy", height, unit="nm")
    dataset = load_dataset(tmp_path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        dataset[0]  # load_image -> check_height
        dataset.load()  # load_images -> load_image -> check_height
    assert [w.category for w in caught] == [AFMInputWarning, AFMInputWarning]
    assert [w.filename for w in caught] == [__file__, __file__]


def test_transform_does_not_change_the_fitted_state(small_synthetic):
    images = small_synthetic.images[:2]
    pre = Preprocessor(tile_size_px=32).fit(images)
    before = dict(vars(pre))
    out, index = pre.transform_with_index(images)
    assert vars(pre) == before
    assert len(pre.transform(images)) == len(out) == len(index) == 8


def test_a_channel_without_a_direction_beside_its_retrace_is_the_trace():
    from hybridtmd.io import default_channel
    from hybridtmd.io.channels import ChannelSpec, implied_directions

    jpk = [ChannelSpec(0, "Height (retrace)", "m", direction="retrace"), ChannelSpec(1, "Height", "m"),
           ChannelSpec(2, "Phase", "deg", is_length=False)]
    marked = implied_directions(jpk)
    assert [c.direction for c in marked] == ["retrace", "trace", None]  # Phase has no retrace: unknown
    assert default_channel(marked).name == "Height"
    assert default_channel(jpk).name == "Height (retrace)"  # the rule alone prefers a named direction


# ----------------------------------------------------------------------------------------------
# Issue 26.9: messages that say what the file is
# ----------------------------------------------------------------------------------------------


def test_an_old_gwyddion_file_is_named_as_the_1x_format(tmp_path):
    path = tmp_path / "old.gwy"
    path.write_bytes(b"GWYO" + bytes(200))
    with pytest.raises(AFMInputError, match=r"Gwyddion 1\.x file \('GWYO' signature\).*not supported"):
        load_image(path)


def test_a_missing_extra_names_the_file_once(tmp_path):
    """The .asd line of a batch: 'skipped <file>: <reason>', the file not repeated in the reason."""
    import importlib.util

    from typer.testing import CliRunner

    from hybridtmd.cli import app

    if importlib.util.find_spec("AFMReader") is not None:
        pytest.skip("AFMReader is installed: the file is read")
    path = tmp_path / "movie.asd"
    path.write_bytes(bytes(1000))
    result = CliRunner().invoke(app, ["info", str(path)], env={"COLUMNS": "1000"})
    assert result.exit_code == 1, result.output
    assert "reading .asd files needs AFMReader" in result.output
    assert result.output.count(str(path)) == 1, result.output
