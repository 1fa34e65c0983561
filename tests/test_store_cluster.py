"""The pipeline from a feature store (issue 30): embeddings in the store, train/evaluate from it,
predictions per partition on a LocalCluster, resume after a dead worker, store.json mismatches."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("pyarrow")

from reproducibility import CROSS_ISA_BOUND  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from hybridtmd.cli import app  # noqa: E402
from hybridtmd.descriptors import DescriptorExtractor  # noqa: E402
from hybridtmd.embeddings import CNNEmbedder  # noqa: E402
from hybridtmd.errors import HybridTMDError  # noqa: E402
from hybridtmd.model import HybridFeatures  # noqa: E402
from hybridtmd.model.features import unlevelled_extractor  # noqa: E402
from hybridtmd.model.store import extract_to_store, features_table, read_manifest  # noqa: E402

FAMILIES = ["areal", "spectral"]
CONFIG = ('[descriptors]\nfamilies = ["areal", "spectral"]\n[embeddings]\ninput_size = 64\n'
          '[model]\nclassifier = "xgboost"\nood_neighbors = 3\n[model.xgboost]\nn_estimators = 20\n')
runner = CliRunner()


def _text(result) -> str:  # rich wraps lines at the terminal width
    return " ".join(result.output.split())


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    from hybridtmd.datasets import write_synthetic_dataset

    folder = tmp_path_factory.mktemp("data")
    ds = write_synthetic_dataset(folder, n_samples=8, images_per_sample=2, size_px=48, materials=["MoS2", "WSe2"],
                                 seed=2)
    return folder, ds


@pytest.fixture(scope="module")
def config(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("cfg") / "cfg.toml"
    path.write_text(CONFIG)
    return path


def _embedder(**params) -> CNNEmbedder:
    return CNNEmbedder(input_size=64, progress=False, **params)


@pytest.fixture(scope="module")
def store(tmp_path_factory, data, config) -> Path:
    """A store with embeddings made by the command line (3 partitions of 6, 6, 4 files)."""
    folder, _ = data
    out = tmp_path_factory.mktemp("store") / "s"
    result = runner.invoke(app, ["extract", str(folder), "--store", str(out), "--embeddings", "--config", str(config),
                                 "--families", ",".join(FAMILIES), "--partition-size", "6"])
    assert result.exit_code == 0, result.output
    assert "3 partition(s) written, 0 already done, 0 failed (of 3); 16 row(s)" in _text(result)
    return out


def test_store_rows_equal_the_in_memory_rows(store, data):
    _, ds = data
    manifest = read_manifest(store)
    emb = manifest["embedder"]
    assert emb["backbone"] == "efficientnet_lite0" and len(emb["weights_sha256"]) == 64 and emb["input_size"] == 64
    assert manifest["load"] == {"pixel_size_nm": None, "channel": None, "z_unit": None, "z_scale": None,
                                "channels": None}
    rows = features_table(store, ds)
    features = HybridFeatures(descriptors=unlevelled_extractor(FAMILIES), embedder=_embedder())
    memory = features.fit_transform(ds.load().images)
    assert rows.paths == [str(p) for p in ds.paths] and list(rows.labels) == list(ds.labels)
    pd.testing.assert_frame_equal(rows.table, memory, check_exact=True)  # NaNs in the same places too


@pytest.fixture(scope="module")
def models(tmp_path_factory, store, data, config) -> Path:
    """m1 trained by ``train --store``, m2 by ``train`` on the same files and config."""
    folder, _ = data
    out = tmp_path_factory.mktemp("models")
    common = ["--config", str(config)]
    result = runner.invoke(app, ["train", str(folder), "--store", str(store), "-o", str(out / "m1"), *common])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["train", str(folder), "-o", str(out / "m2"), *common])
    assert result.exit_code == 0, result.output
    return out


def test_train_from_the_store_is_train_on_the_files(models, data, tmp_path):
    folder, _ = data
    probabilities = []
    for name in ("m1", "m2"):
        result = runner.invoke(app, ["predict", str(models / name), str(folder), "-o", str(tmp_path / f"{name}.csv")])
        assert result.exit_code == 0, result.output
        probabilities.append(pd.read_csv(tmp_path / f"{name}.csv"))
    a, b = probabilities
    assert a["file"].tolist() == b["file"].tolist() and a["label"].tolist() == b["label"].tolist()
    columns = [c for c in a.columns if c.startswith("p_")]
    assert np.abs(a[columns].to_numpy() - b[columns].to_numpy()).max() <= CROSS_ISA_BOUND
    manifests = [json.loads((models / n / "manifest.json").read_text())["training"] for n in ("m1", "m2")]
    assert manifests[0]["data_sha256"] == manifests[1]["data_sha256"]  # the very same training table


def test_train_store_refuses_other_features(store, data, tmp_path):
    folder, _ = data
    other = tmp_path / "other.toml"
    other.write_text(CONFIG.replace("input_size = 64", "input_size = 96"))
    result = runner.invoke(app, ["train", str(folder), "--store", str(store), "-o", str(tmp_path / "m"),
                                 "--config", str(other)])
    assert result.exit_code == 1 and "the store's features differ" in _text(result)
    assert "embedder.input_size 64 -> 96" in _text(result) and store.name in _text(result)


def test_resume_refuses_another_embedder_or_reading_option(tmp_path, data):
    _, ds = data
    paths = [str(p) for p in ds.paths[:4]]
    extractor = DescriptorExtractor(families=FAMILIES, progress=False)
    s = tmp_path / "s"
    with pytest.warns(UserWarning, match="partition_size 2 is not a multiple of the embedder's batch_size 32"):
        extract_to_store(paths, s, extractor=extractor, embedder=_embedder(), partition_size=2, progress=False)
    with pytest.raises(HybridTMDError, match=r"s: cannot resume .*embedder\.params\.tta 'none' -> 'd4'"):
        extract_to_store(paths, s, extractor=extractor, embedder=_embedder(tta="d4"), partition_size=2,
                         progress=False)
    with pytest.raises(HybridTMDError, match=r"cannot resume .*embedder\.backbone 'efficientnet_lite0' -> None"):
        extract_to_store(paths, s, extractor=extractor, partition_size=2, progress=False)
    with pytest.raises(HybridTMDError, match=r"cannot resume .*load\.z_scale None -> 2\.0"):
        extract_to_store(paths, s, extractor=extractor, embedder=_embedder(), partition_size=2, z_scale=2.0,
                         progress=False)
    manifest = json.loads((s / "store.json").read_text())
    manifest["embedder"]["weights_sha256"] = "0" * 64  # as if made with other weights
    (s / "store.json").write_text(json.dumps(manifest))
    with pytest.raises(HybridTMDError, match=r"cannot resume .*embedder\.weights_sha256"):
        extract_to_store(paths, s, extractor=extractor, embedder=_embedder(), partition_size=2, progress=False)


def test_predict_store_on_a_local_cluster_equals_predict(models, data, tmp_path):
    distributed = pytest.importorskip("distributed")
    from hybridtmd.model import HybridClassifier
    from hybridtmd.model.store import predict_to_store, read_predictions

    folder, ds = data
    bad = folder.parent / "broken.tif"
    bad.write_text("not a tiff")
    paths = [*map(str, ds.paths[:7]), str(bad)]
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None)
    with cluster, distributed.Client(cluster) as client:
        report = predict_to_store(models / "m1", paths, tmp_path / "p", partition_size=3, client=client,
                                  progress=True)
        assert report.complete and report.written == [0, 1, 2] and report.n_rows == 7
        assert [p for p, _ in report.errors] == [str(bad)]
        # the command line on the same scheduler: a finished store is resumed, nothing recomputed
        result = runner.invoke(app, ["predict", str(models / "m1"), *paths, "--store", str(tmp_path / "p"),
                                     "--partition-size", "3", "--address", cluster.scheduler_address])
        assert result.exit_code == 1 and "0 partition(s) written, 3 already done" in _text(result), result.output
        assert "broken.tif" in _text(result)  # bad files are reported on every run
    got = read_predictions(tmp_path / "p")
    model = HybridClassifier.load(models / "m1")
    expected = model.predict_frame(ds.load().images[:7]).reset_index(drop=True)
    assert got["file"].tolist() == paths[:7] and got["label"].tolist() == expected["label"].tolist()
    columns = [c for c in expected.columns if c.startswith("p_")]
    assert np.abs(got[columns].to_numpy() - expected[columns].to_numpy()).max() <= CROSS_ISA_BOUND
    with pytest.raises(HybridTMDError, match="cannot resume this prediction store.*partition_size 3 -> 4"):
        predict_to_store(models / "m1", paths, tmp_path / "p", partition_size=4, scheduler="serial",
                         progress=False)


def test_predict_store_address_that_does_not_answer_fails_at_once(models, data, tmp_path):
    folder, _ = data
    result = runner.invoke(app, ["predict", str(models / "m1"), str(folder), "--store", str(tmp_path / "p"),
                                 "--address", "tcp://127.0.0.1:1"])
    assert result.exit_code == 2 and "no dask scheduler answers there" in _text(result)


def test_xgboost_head_trains_on_the_cluster_from_the_store(store, data):
    distributed = pytest.importorskip("distributed")
    pytest.importorskip("dask.dataframe")
    from hybridtmd.model.heads import default_head
    from hybridtmd.model.store import fit_xgboost_dask

    _, ds = data
    rows = features_table(store, ds)
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None)
    with cluster, distributed.Client(cluster) as client:
        head, classes = fit_xgboost_dask(store, ds, client=client, n_estimators=100)
    assert list(classes) == sorted(set(ds.labels))
    assert head.n_features_in_ == rows.table.shape[1]
    y = np.searchsorted(classes, rows.labels.astype(str))
    memory = default_head().set_params(n_estimators=100).fit(rows.table, y)
    # distributed histograms (quantile sketch merged over workers) are not bit-equal to one
    # process's, so the check is that it learnt the same thing on the training rows
    agree = (head.predict(rows.table) == memory.predict(rows.table)).mean()
    assert agree >= 0.9 and (head.predict(rows.table) == y).mean() >= 0.9


@pytest.mark.parametrize("always", [False, True], ids=["retried", "listed-failed"])
def test_a_killed_worker_loses_no_partition(tmp_path, data, monkeypatch, always):
    """A worker process dies (os._exit) halfway through writing partition 1: dask retries the
    partition on a fresh worker, or - when it dies every time - the partition is listed failed
    with nothing of it left that looks finished; the same call again completes the store."""
    distributed = pytest.importorskip("distributed")
    import dask
    import store_crash

    from hybridtmd.model.store import extraction, read_store

    _, ds = data
    paths = [str(p) for p in ds.paths[:6]]
    s = tmp_path / "s"
    if always:
        (tmp_path / "always").touch()
    extractor = DescriptorExtractor(families=["areal"], progress=False)
    monkeypatch.setattr(extraction, "extract_partition", store_crash.crash_then_extract)  # what the driver submits
    with dask.config.set({"distributed.scheduler.allowed-failures": 0 if always else 2}):
        cluster = distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None)
        with cluster, distributed.Client(cluster) as client:
            report = extract_to_store(paths, s, extractor=extractor, partition_size=2, client=client, progress=False)
    assert (tmp_path / "crashed").exists()  # the worker did die
    if always:
        # the dead worker's other assigned task may fail with it: each failed one is listed, none written
        failed = [i for i, _ in report.failed]
        assert 1 in failed and all("KilledWorker" in reason for _, reason in report.failed)
        assert not report.complete and sorted(failed + report.written) == [0, 1, 2]
        for i in range(3):  # every partition has both files (written) or neither (failed): none half-written
            present = [(s / f"part-{i:06d}.{kind}").exists() for kind in ("parquet", "errors.json")]
            assert present == [i in report.written] * 2
        monkeypatch.undo()
        report = extract_to_store(paths, s, extractor=extractor, partition_size=2, progress=False)
        assert report.written == failed
    assert report.complete and not list(s.glob(".part-*"))  # the half-written temporary is gone
    expected = extractor.fit_transform(ds.load().images[:6])
    pd.testing.assert_frame_equal(read_store(s).drop(columns="path"), expected, check_exact=True)


def test_evaluate_from_the_store_is_evaluate_on_the_files(store, data, config, tmp_path):
    folder, _ = data
    common = ["--config", str(config), "--folds", "2", "--no-ablation", "--n-jobs", "1", "--quiet"]
    folds = []
    for name, extra in (("a", ["--store", str(store)]), ("b", [])):
        result = runner.invoke(app, ["evaluate", str(folder), "-o", str(tmp_path / name), *common, *extra])
        assert result.exit_code == 0, result.output
        table = pd.read_csv(tmp_path / name / "hybrid_folds.csv")
        folds.append(table.drop(columns=[c for c in table.columns if c.endswith("_seconds")]))
    assert len(folds[0]) == 2
    pd.testing.assert_frame_equal(*folds)


def test_python_api_address_that_does_not_answer_is_one_error(tmp_path, data):
    """Not the client's traceback after its default 30 s: one error after CONNECT_TIMEOUT_S (5 s)."""
    pytest.importorskip("distributed")
    _, ds = data
    with pytest.raises(HybridTMDError, match=r"dask scheduler tcp://127\.0\.0\.1:1: no answer within 5 s"):
        extract_to_store(ds.paths[:2], tmp_path / "s", extractor=DescriptorExtractor(families=["areal"]),
                         address="tcp://127.0.0.1:1", progress=False)


def test_predict_a_feature_store_from_its_rows(models, store, data, tmp_path):
    from hybridtmd.model.store import read_predictions

    folder, _ = data
    result = runner.invoke(app, ["predict", str(models / "m1"), str(store), "--store", str(tmp_path / "rows"),
                                 "--scheduler", "serial"])
    assert result.exit_code == 0, result.output
    assert "3 partition(s) written" in _text(result)
    result = runner.invoke(app, ["predict", str(models / "m1"), str(folder), "-o", str(tmp_path / "files.csv")])
    assert result.exit_code == 0, result.output
    got, files = read_predictions(tmp_path / "rows"), pd.read_csv(tmp_path / "files.csv")
    assert got["file"].tolist() == files["file"].tolist() and got["label"].tolist() == files["label"].tolist()
    columns = [c for c in files.columns if c.startswith("p_")]
    assert np.abs(got[columns].to_numpy() - files[columns].to_numpy()).max() <= CROSS_ISA_BOUND
    # a model whose features are not the store's is refused, naming the field
    from hybridtmd.model.store import predict_store_rows

    other = tmp_path / "other.toml"
    other.write_text(CONFIG.replace('families = ["areal", "spectral"]', 'families = ["areal"]'))
    result = runner.invoke(app, ["train", str(folder), "-o", str(tmp_path / "m3"), "--config", str(other)])
    assert result.exit_code == 0, result.output
    with pytest.raises(HybridTMDError, match=r"features differ from those of the model .*descriptors\.families"):
        predict_store_rows(tmp_path / "m3", store, tmp_path / "rows3", scheduler="serial", progress=False)
