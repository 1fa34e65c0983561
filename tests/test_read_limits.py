"""Issue 15: a third-party read that hangs is cut off by the read time limit with one line naming
the file, alone and in batches; truncated and garbage instrument files are each one line within
seconds in `hybridtmd info`, `extract` and `predict`, or, where the default channel's data lie
whole in the part kept, read exactly the heights of the whole file (never a wrong result)."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from corpus.files import sample_files_folder, shared_afm_files, skipped_reasons
from corpus.make_corpus import make_good
from typer.testing import CliRunner

from hybridtmd.cli import app
from hybridtmd.errors import AFMInputError, HybridTMDError
from hybridtmd.io import RawImage, load_image, load_images, register_reader, unregister_reader
from hybridtmd.io.readers import VENDOR_SUFFIXES

runner = CliRunner()
LIMIT_S = 1.0
#: A hanging reader sleeps this long, then returns a valid image: without the time limit the
#: tests below fail (an image comes back, late) instead of hanging the suite.
HANG_S = 20.0


def _real_files() -> list[Path]:
    shared, samples = shared_afm_files(), sample_files_folder()
    found = [] if shared is None else sorted(p for p in shared.iterdir() if p.suffix != ".md")
    if samples is not None:
        found += sorted(p for p in samples.iterdir() if p.suffix in (".jpk", ".stp", ".top", ".gwy", ".ibw", ".spm"))
    return found


def _hanging_reader(path: Path, channel) -> RawImage:
    time.sleep(HANG_S)
    return RawImage(np.random.default_rng(0).normal(size=(64, 64)), 1.0, "nm", {})


@pytest.fixture
def hanging_format(monkeypatch):
    monkeypatch.setenv("HYBRIDTMD_READ_TIMEOUT", str(LIMIT_S))
    register_reader(".hang", _hanging_reader)
    yield
    unregister_reader(".hang")


def test_a_hanging_reader_is_cut_off_with_one_error_naming_the_file(tmp_path, hanging_format):
    path = tmp_path / "stuck.hang"
    path.write_bytes(b"x")
    start = time.perf_counter()
    with pytest.raises(AFMInputError, match=r"stuck\.hang: reading the \.hang file did not finish within 1 s"):
        load_image(path)
    assert time.perf_counter() - start < LIMIT_S + 2


def test_the_limit_holds_outside_the_main_thread_too(tmp_path, hanging_format):
    path = tmp_path / "stuck.hang"
    path.write_bytes(b"x")
    start = time.perf_counter()
    with ThreadPoolExecutor(1) as pool:  # joblib/dask workers: no signal there, an abandoned thread
        future = pool.submit(load_image, path)
        with pytest.raises(AFMInputError, match="did not finish within 1 s"):
            future.result()
    assert time.perf_counter() - start < LIMIT_S + 2
    assert threading.current_thread() is threading.main_thread()


def test_a_parser_that_swallows_exceptions_is_still_cut_off(tmp_path, hanging_format):
    def stubborn(path: Path, channel) -> RawImage:
        deadline = time.monotonic() + HANG_S
        while time.monotonic() < deadline:
            try:
                time.sleep(0.05)
            except Exception:  # a careless parser's retry loop
                continue
        return _hanging_reader(path, channel)

    register_reader(".hang", stubborn)
    path = tmp_path / "stuck.hang"
    path.write_bytes(b"x")
    start = time.perf_counter()
    with pytest.raises(AFMInputError, match="did not finish"):
        load_image(path)
    assert time.perf_counter() - start < LIMIT_S + 2


def test_a_hanging_vendor_parser_is_cut_off(tmp_path, monkeypatch):
    """SurfaceTopography itself hanging on a file that passes the header checks."""
    real = [p for p in _real_files() if p.suffix == ".di"]
    if not real:
        pytest.skip("../shared/data/afm_files is absent")
    import SurfaceTopography.IO as st_io

    load_image(real[0])  # SurfaceTopography imported before the limit is lowered

    def open_slowly(*args, **kwargs):
        time.sleep(HANG_S)
        raise AssertionError("the time limit did not stop the read")

    monkeypatch.setattr(st_io, "open_topography", open_slowly)
    monkeypatch.setenv("HYBRIDTMD_READ_TIMEOUT", str(LIMIT_S))
    start = time.perf_counter()
    report = load_images([real[0], real[0]])
    assert time.perf_counter() - start < 2 * LIMIT_S + 3
    assert not report.images
    assert [reason for _, reason in report.errors] == ["reading the di header did not finish within 1 s "
                                                       "(a malformed file?; HYBRIDTMD_READ_TIMEOUT sets the limit)"] * 2


def test_a_batch_skips_the_hanging_file_and_reads_the_rest(tmp_path, hanging_format):
    good = make_good(tmp_path, n=2)
    stuck = tmp_path / "stuck.hang"
    stuck.write_bytes(b"x")
    start = time.perf_counter()
    result = runner.invoke(app, ["info", str(good[0]), str(stuck), str(good[1])], env={"COLUMNS": "1000"})
    assert time.perf_counter() - start < LIMIT_S + 5
    assert result.exit_code == 1
    assert list(skipped_reasons(result.output)) == ["stuck.hang"]
    assert "did not finish within 1 s" in skipped_reasons(result.output)["stuck.hang"]
    assert all(f"{p.name}: " in result.output for p in good)


# ----------------------------------------------------------------------------------------------
# Truncated and garbage instrument files
# ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def damaged(tmp_path_factory) -> tuple[Path, dict[str, Path]]:
    """Every real instrument file cut to 10 % and 50 %, and random bytes under every vendor
    suffix; damaged name -> the whole file it came from (None for random bytes)."""
    folder = tmp_path_factory.mktemp("damaged")
    origin: dict[str, Path | None] = {}
    for path in _real_files():
        data = path.read_bytes()
        for percent in (10, 50):
            cut = folder / f"cut{percent}_{path.name}"
            cut.write_bytes(data[: len(data) * percent // 100])
            origin[cut.name] = path
    rng = np.random.default_rng(15)
    for suffix in [*VENDOR_SUFFIXES, ".tiff", ".gwy"]:
        suffix = ".001" if "[" in suffix else suffix
        if suffix in (".asd", ".h5-jpk"):
            pytest.importorskip("AFMReader")
        garbage = folder / f"garbage{suffix}"
        garbage.write_bytes(rng.bytes(20_000))
        origin[garbage.name] = None
    return folder, origin


def _check_outcome(name: str, origin: Path | None, folder: Path, skipped: dict[str, str], written: set[str]):
    """Refused with a reason, or (a cut whose default channel is whole) the heights of the original."""
    if name in skipped:
        assert skipped[name].strip() and "did not finish" not in skipped[name], (name, skipped[name])
        return
    assert name in written, f"{name} neither skipped nor written"
    assert origin is not None, f"{name}: random bytes read as an image"
    np.testing.assert_array_equal(load_image(folder / name).height, load_image(origin).height)


def test_each_damaged_file_is_one_line_within_seconds(damaged):
    folder, origin = damaged
    load_image(make_good(folder / "warm", n=1)[0])
    read_whole = set()
    for name, whole in origin.items():
        start = time.perf_counter()
        try:
            image = load_image(folder / name)
        except HybridTMDError as exc:
            assert str(exc).startswith(str(folder / name) + ": ") and "\n" not in str(exc), str(exc)
        else:
            assert whole is not None, f"{name}: random bytes read as an image"
            np.testing.assert_array_equal(image.height, load_image(whole).height)
            read_whole.add(name)
        assert time.perf_counter() - start < 3.0, name
    # only these cuts keep their default channel's data whole (the first of four channels)
    assert read_whole == {"cut50_mi-1.mi", "cut50_nid-1.nid"} & set(origin)


def test_info_reports_each_damaged_file_on_one_line(damaged, monkeypatch):
    folder, origin = damaged
    monkeypatch.setenv("HYBRIDTMD_READ_TIMEOUT", "5")
    result = runner.invoke(app, ["info", *(str(folder / n) for n in origin)], env={"COLUMNS": "1000"})
    assert result.exit_code == 1 and "Traceback" not in result.output
    skipped = skipped_reasons(result.output)
    listed = {line.split(": ", 1)[0] for line in result.output.splitlines() if not line.startswith(" ")}
    for name, whole in origin.items():
        _check_outcome(name, whole, folder, skipped, listed - set(skipped))
    assert sum(1 for n in origin if n.startswith("garbage")) <= len(skipped)


def _check_batch(result, table: Path, column: str, good: list[Path], origin: dict, folder: Path) -> None:
    """A batch command over good and damaged files: exit 1 without a traceback, every good file
    in its output ``table`` (``column`` names the file), each damaged one as its case says."""
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    written = {Path(p).name for p in pd.read_csv(table)[column]}
    skipped = skipped_reasons(result.output)
    assert {p.name for p in good} <= written
    for name, whole in origin.items():
        _check_outcome(name, whole, folder, skipped, written)


def test_extract_and_predict_batches_skip_each_damaged_file(damaged, tmp_path, monkeypatch):
    from hybridtmd.datasets import make_synthetic_dataset
    from hybridtmd.descriptors import DescriptorExtractor
    from hybridtmd.model import HybridClassifier, HybridFeatures, default_head

    folder, origin = damaged
    monkeypatch.setenv("HYBRIDTMD_READ_TIMEOUT", "5")
    good = make_good(tmp_path / "good", n=2)
    files = [folder / n for n in origin] + good
    manifest = tmp_path / "manifest.csv"
    pd.DataFrame({"path": [str(p) for p in files], "label": ["MoS2", "WSe2"] * (len(files) // 2) + ["MoS2"] *
                  (len(files) % 2), "group": [f"g{i}" for i in range(len(files))]}).to_csv(manifest, index=False)
    out = tmp_path / "features.csv"
    result = runner.invoke(app, ["extract", str(manifest), "-o", str(out), "--families", "areal"])
    _check_batch(result, out, "path", good, origin, folder)

    data = make_synthetic_dataset(n_samples=6, size_px=64, materials=["MoS2", "WSe2"], seed=1)
    features = HybridFeatures(descriptors=DescriptorExtractor(families="areal", level_images=False), embedder=None)
    head = default_head(0, n_jobs=1).set_params(n_estimators=10)
    model_dir = HybridClassifier(features=features, classifier=head).fit(
        data.images, data.labels, groups=data.groups).save(tmp_path / "model")
    predictions = tmp_path / "predictions.csv"
    result = runner.invoke(app, ["predict", str(model_dir), *map(str, files), "-o", str(predictions)])
    _check_batch(result, predictions, "file", good, origin, folder)


def test_a_cut_multi_page_tiff_is_refused_not_read_with_fewer_pages(tmp_path, rng):
    """Needs no real file: tifffile alone would list the pages before the cut as the whole file."""
    import tifffile

    whole = tmp_path / "stack.tif"
    with tifffile.TiffWriter(whole) as writer:  # four pages, as channels saved as pages are
        for page in rng.normal(size=(4, 64, 64)).astype(np.float32):
            writer.write(page, metadata=None)
    data = whole.read_bytes()
    cut = tmp_path / "cut.tif"
    cut.write_bytes(data[: len(data) * 3 // 4])
    from hybridtmd.io import list_channels

    assert len(list_channels(whole)) == 4
    for call in (list_channels, lambda p: load_image(p, channel=0, pixel_size_nm=1.0)):
        with pytest.raises(AFMInputError, match=r"cut\.tif: TIFF is truncated: image directory \d"):
            call(cut)
