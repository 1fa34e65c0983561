"""Feature store (hybridtmd.model.store): identical to serial extraction on every scheduler, resumes after a
crash without recomputing finished partitions, refuses a mismatched resume, reports bad files, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

pytest.importorskip("pyarrow")

from hybridtmd.descriptors import DescriptorExtractor  # noqa: E402
from hybridtmd.errors import HybridTMDError  # noqa: E402
from hybridtmd.io import load_images  # noqa: E402
from hybridtmd.model.store import extract_to_store, read_manifest, read_store, read_store_reasons, store_errors  # noqa: E402

FAMILIES = ["areal", "spectral"]
PART = 5  # 12 files -> partitions of 5, 5, 2


@pytest.fixture(scope="module")
def paths(tmp_path_factory) -> list[str]:
    from hybridtmd.datasets import write_synthetic_dataset

    ds = write_synthetic_dataset(tmp_path_factory.mktemp("data"), n_samples=6, images_per_sample=2, size_px=48, seed=1)
    return [str(p) for p in ds.paths]


def _extractor() -> DescriptorExtractor:
    return DescriptorExtractor(families=FAMILIES, progress=False)


@pytest.fixture(scope="module")
def serial(paths) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Reference: DescriptorExtractor over the loaded images in one process (table, reasons)."""
    report = load_images(paths, on_error="skip")
    table, reasons = _extractor().fit(report.images).transform_with_reasons(report.images)
    table.insert(0, "path", [paths[i] for i in report.indices])
    reasons = reasons.rename(columns={"source": "path"})[["path", "feature", "reason"]]
    return table, reasons


def _assert_same(store_dir: Path, serial) -> None:
    table, reasons = serial
    got = read_store(store_dir)
    assert list(got.columns) == list(table.columns)
    assert got["path"].tolist() == table["path"].tolist()
    # exact equality, NaNs in the same places
    pd.testing.assert_frame_equal(got.drop(columns="path"), table.drop(columns="path"), check_exact=True)
    pd.testing.assert_frame_equal(read_store_reasons(store_dir), reasons.reset_index(drop=True))


def test_store_equals_serial_and_resume_is_a_no_op(tmp_path, paths, serial):
    report = extract_to_store(paths, tmp_path / "s", extractor=_extractor(), partition_size=PART, progress=False)
    assert report.complete and report.written == [0, 1, 2] and report.n_rows == 12 and report.errors == []
    assert sorted(p.name for p in (tmp_path / "s").iterdir()) == [
        "part-000000.errors.json", "part-000000.parquet", "part-000001.errors.json", "part-000001.parquet",
        "part-000002.errors.json", "part-000002.parquet", "store.json"]
    _assert_same(tmp_path / "s", serial)
    manifest = read_manifest(tmp_path / "s")
    assert manifest["n_paths"] == 12 and manifest["n_partitions"] == 3 and manifest["extractor"]["families"] == FAMILIES
    again = extract_to_store(paths, tmp_path / "s", extractor=_extractor(), partition_size=PART, progress=False)
    assert again.written == [] and again.already_done == [0, 1, 2] and again.complete


class FailingExtractor(DescriptorExtractor):
    """Counts the images it extracts; raises (a simulated crash) on any image whose file is in ``fail_on``."""

    calls: list[str] = []
    fail_on: set[str] = set()

    def transform_with_reasons(self, X):
        sources = [im.source for im in X]
        type(self).calls.extend(sources)
        if type(self).fail_on & set(sources):
            raise RuntimeError("simulated crash")
        return super().transform_with_reasons(X)


def test_resume_recomputes_only_unfinished_partitions(tmp_path, paths, serial, monkeypatch):
    store = tmp_path / "s"
    monkeypatch.setattr(FailingExtractor, "calls", [])
    monkeypatch.setattr(FailingExtractor, "fail_on", {paths[6]})  # partition 1 crashes
    extractor = FailingExtractor(families=FAMILIES, progress=False)
    report = extract_to_store(paths, store, extractor=extractor, partition_size=PART, progress=False)
    assert report.written == [0, 2] and [i for i, _ in report.failed] == [1] and not report.complete
    assert "simulated crash" in report.failed[0][1]
    assert not (store / "part-000001.parquet").exists() and not list(store.glob(".part-*"))
    with pytest.raises(HybridTMDError, match="incomplete.*1 of 3"):
        read_store(store)
    # a partition whose table survived but whose sidecar did not (crash between the two writes) is redone
    (store / "part-000002.errors.json").unlink()
    mtime0 = (store / "part-000000.parquet").stat().st_mtime_ns

    FailingExtractor.fail_on, FailingExtractor.calls = set(), []
    report = extract_to_store(paths, store, extractor=extractor, partition_size=PART, progress=False)
    assert report.written == [1, 2] and report.already_done == [0] and report.complete
    assert FailingExtractor.calls == paths[5:]  # partition 0 (paths[:5]) was not extracted again
    assert (store / "part-000000.parquet").stat().st_mtime_ns == mtime0
    _assert_same(store, serial)


def test_mismatched_resume_is_a_clear_error(tmp_path, paths):
    store = tmp_path / "s"
    extract_to_store(paths[:5], store, extractor=_extractor(), partition_size=PART, progress=False)
    with pytest.raises(HybridTMDError, match=r"s: cannot resume.*list of input files differs"):
        extract_to_store(paths[1:6], store, extractor=_extractor(), partition_size=PART, progress=False)
    with pytest.raises(HybridTMDError, match=r"extractor\.families \['areal', 'spectral'\] -> \['areal'\]"):
        extract_to_store(paths[:5], store, extractor=DescriptorExtractor(families="areal"), partition_size=PART,
                         progress=False)
    with pytest.raises(HybridTMDError, match="partition_size 5 -> 4"):
        extract_to_store(paths[:5], store, extractor=_extractor(), partition_size=4, progress=False)
    with pytest.raises(HybridTMDError, match="not a feature store"):
        read_store(tmp_path / "elsewhere")


def test_bad_files_are_reported_and_the_rest_written(tmp_path, paths, serial):
    truncated = tmp_path / "truncated.tif"
    truncated.write_bytes(Path(paths[0]).read_bytes()[:200])
    text = tmp_path / "notes.tif"
    text.write_text("not an image")
    mixed = [paths[0], str(truncated), *paths[1:5], str(text)]  # partition 1 = [paths[4], text]
    report = extract_to_store(mixed, tmp_path / "s", extractor=_extractor(), partition_size=PART, progress=False)
    assert report.complete and report.n_rows == 5
    assert [p for p, _ in report.errors] == [str(truncated), str(text)] and all(r for _, r in report.errors)
    assert store_errors(tmp_path / "s") == report.errors
    table = read_store(tmp_path / "s")
    expected = serial[0].iloc[:5].reset_index(drop=True)
    pd.testing.assert_frame_equal(table, expected, check_exact=True)
    sidecar = json.loads((tmp_path / "s" / "part-000001.errors.json").read_text())
    assert sidecar["n_files"] == 2 and sidecar["n_rows"] == 1


def test_all_bad_partition_keeps_the_schema(tmp_path, paths):
    bad = tmp_path / "empty.tif"
    bad.write_bytes(b"")
    report = extract_to_store([*paths[:2], str(bad)], tmp_path / "s", extractor=_extractor(), partition_size=2,
                              progress=False)
    assert report.complete and report.n_rows == 2 and len(report.errors) == 1
    table = read_store(tmp_path / "s")
    assert len(table) == 2 and (table.dtypes.iloc[1:] == "float64").all()


def test_dask_local_cluster_identical_to_serial(tmp_path, paths, serial):
    distributed = pytest.importorskip("distributed")
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None)
    with cluster, distributed.Client(cluster) as client:
        report = extract_to_store(paths, tmp_path / "s", extractor=_extractor(), partition_size=PART, client=client,
                                  progress=True)
        assert report.complete and report.written == [0, 1, 2]
        assert {w["nthreads"] for w in client.scheduler_info()["workers"].values()} == {1}
        # address= connects a client of its own to the same scheduler (the CLI's --address)
        by_address = extract_to_store(paths, tmp_path / "a", extractor=_extractor(), partition_size=PART,
                                      address=cluster.scheduler_address, progress=False)
        assert by_address.complete
    _assert_same(tmp_path / "s", serial)
    _assert_same(tmp_path / "a", serial)


def test_joblib_identical_to_serial(tmp_path, paths, serial):
    report = extract_to_store(paths, tmp_path / "s", extractor=_extractor(), partition_size=PART, scheduler="joblib",
                              n_jobs=2, progress=False)
    assert report.complete
    _assert_same(tmp_path / "s", serial)


def test_argument_checks(tmp_path, paths):
    with pytest.raises(ValueError, match="scheduler must be"):
        extract_to_store(paths, tmp_path / "s", scheduler="spark")
    with pytest.raises(ValueError, match="client/address are for scheduler='dask'"):
        extract_to_store(paths, tmp_path / "s", scheduler="joblib", address="tcp://127.0.0.1:1")
    with pytest.raises(ValueError, match="partition_size"):
        extract_to_store(paths, tmp_path / "s", partition_size=0)


def test_cli_extract_store(tmp_path, paths, serial):
    from typer.testing import CliRunner

    from hybridtmd.cli import app

    folder = str(Path(paths[0]).parent)
    runner = CliRunner()

    def output(result) -> str:  # rich wraps lines at the terminal width
        return " ".join(result.output.split())

    args = ["extract", folder, "--store", str(tmp_path / "s"), "--families", "areal,spectral", "--partition-size", "5"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "3 partition(s) written, 0 already done, 0 failed (of 3); 12 row(s)" in output(result)
    table = read_store(tmp_path / "s")
    assert sorted(table["path"]) == sorted(serial[0]["path"])
    result = runner.invoke(app, args)
    assert result.exit_code == 0 and "0 partition(s) written, 3 already done" in output(result)
    result = runner.invoke(app, [*args[:-1], "4"])
    assert result.exit_code == 2 and "cannot resume" in output(result)
    result = runner.invoke(app, ["extract", folder, "--scheduler", "dask"])
    assert result.exit_code == 2 and "need --store" in output(result)
