"""Streaming prediction: a saved model applied to a file list of any size, one task per partition,
predictions written per partition, resumable - a *prediction store*::

    out_dir/
      predictions.json          manifest: files (count, SHA-256), partition size, the model (folder,
                                digest), the reading options; checked on resume like store.json
      pred-000000.parquet       partition 0's predictions: file, label, confidence, p_<class>,
                                out_of_distribution (the columns of HybridClassifier.predict_frame)
      pred-000000.errors.json   its bad files (unreadable, or failing the model); written last
      ...

Each task predicts its partition's files with :func:`hybridtmd.model.predicting.predict_files`
(an image the model cannot take is a bad file, not a lost partition). It loads only those files
(memory per worker is bounded by the partition, not by the number of files) and the model once
per worker process; the driver holds the paths only.
Workers need the model folder and the files at the same paths (a shared filesystem).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from ..._utils.files import atomic_path, atomic_write_text, json_loads, path_text
from ..._version import __version__
from ...errors import HybridTMDError, ModelFileError
from ..persistence import MANIFEST_NAME, read_json
from ..predicting import predict_files
from .extraction import load_settings, warn_padding
from .manifest import base_manifest, part_file, read_manifest, require_pyarrow
from .partitions import Result, StoreReport, check_partition_size, check_scheduler, run_store
from .reading import check_complete
from .tables import check_store_features, model_columns

PREDICTIONS = "predictions.json"
PREDICTION_FORMAT = "hybridtmd-prediction-store"
PREFIX = "pred"
#: the model each worker process loaded, by (folder, digest): loaded once, not once per partition
_MODELS: dict[tuple[str, str], Any] = {}


def _model_digest(model_dir: Path) -> str:
    """The directory digest a model's manifest records (the manifest read as every model file is)."""
    try:
        return str(read_json(model_dir / MANIFEST_NAME)["directory_digest"])
    except (OSError, ModelFileError, KeyError, TypeError) as exc:
        raise HybridTMDError(f"{model_dir}: not a saved model ({type(exc).__name__}: {exc})") from None


def _model(model_dir: str, digest: str) -> Any:
    from ..classifier import HybridClassifier

    key = (model_dir, digest)
    if key not in _MODELS:
        model = HybridClassifier.load(model_dir)
        if _model_digest(Path(model_dir)) != digest:  # replaced while the run was going on
            raise HybridTMDError(f"{model_dir}: the model changed since this prediction store was started")
        _MODELS[key] = model
    return _MODELS[key]


@dataclass
class _Task:
    index: int
    paths: list[str]
    out_dir: str
    model_dir: str
    digest: str
    load: dict[str, Any]


def _predict_partition(task: _Task) -> Result:
    """Load one partition's files, predict them, write the table then the sidecar (runs in the worker)."""
    try:
        model = _model(task.model_dir, task.digest)
        read = {k: task.load[k] for k in ("pixel_size_nm", "channel", "z_unit", "z_scale")}
        # one pass per partition: the partition already bounds the memory, and the embedder
        # sees whole batches
        table, bad = predict_files(model, task.paths, pass_size=max(1, len(task.paths)), **read)
        table.attrs = {}  # the model card is the model's, not each partition's
        with atomic_path(part_file(Path(task.out_dir), task.index, "parquet", PREFIX)) as tmp:
            table.to_parquet(tmp, engine="pyarrow", index=False)
        sidecar = {"partition": task.index, "n_files": len(task.paths), "n_rows": len(table),
                   "bad_files": [[path_text(p), r] for p, r in bad]}
        atomic_write_text(part_file(Path(task.out_dir), task.index, "errors.json", PREFIX), json.dumps(sidecar))
        return task.index, None, {}
    except Exception as exc:
        return task.index, f"{type(exc).__name__}: {exc}", {}


def predict_to_store(
    model_dir: str | Path,
    paths: Iterable[str | os.PathLike],
    out_dir: str | Path,
    *,
    partition_size: int = 256,
    scheduler: str | None = "dask",
    n_jobs: int | None = None,
    client: Any = None,
    address: str | None = None,
    read: Mapping[str, Any] | None = None,
    progress: bool = True,
) -> StoreReport:
    """Predict every file of ``paths`` with the model saved in ``model_dir`` into the prediction
    store ``out_dir`` (module docstring), resuming it.

    Parameters
    ----------
    model_dir : str or Path
        A model saved by :meth:`HybridClassifier.save <hybridtmd.model.HybridClassifier.save>`
        (an image model: one trained on images or on a feature store). Its digest is recorded; a
        rerun with another model on the same ``out_dir`` is a :class:`HybridTMDError`.
    paths : iterable of str or Path
        Files to predict, in the order of the partitions.
    out_dir : str or Path
        The prediction store (created if absent).
    partition_size, n_jobs, client, address :
        As for :func:`~hybridtmd.model.store.extract_to_store`.
    scheduler : "serial" | "joblib" | "dask"
        Default "dask": a LocalCluster of ``n_jobs`` single-threaded worker processes, unless
        ``client`` or ``address`` names a cluster.
    read : dict, optional
        Reading options of :func:`hybridtmd.io.load_images` for every file: ``pixel_size_nm``,
        ``channel``, ``z_unit``, ``z_scale`` (recorded). A multichannel model reads its channels.
    progress : bool
        Progress bar over the files of the partitions run now.

    Returns
    -------
    StoreReport
        As for the feature store; :func:`read_predictions` reads the complete store.
    """
    scheduler = check_scheduler(scheduler, client, address)
    check_partition_size(partition_size)
    require_pyarrow()
    model_dir, out_dir = Path(model_dir).resolve(), Path(out_dir)
    digest = _model_digest(model_dir)
    model = _model(str(model_dir), digest)  # a model that does not load fails here, before any task
    if model.features_ is None:
        raise HybridTMDError(f"{model_dir}: this model was trained on a feature table; predicting files needs an "
                             "image model")
    warn_padding(partition_size, model.features_.embedder_)
    channels = None if model.features_.channels is None else list(model.features_.channels)
    unknown = set(read or {}) - {"pixel_size_nm", "channel", "z_unit", "z_scale"}
    if unknown:
        raise ValueError(f"read: unknown reading option(s) {sorted(unknown)}")
    load = load_settings(**(read or {}), channels=channels)
    paths = [os.fspath(p) for p in paths]
    manifest = base_manifest(paths, partition_size, PREDICTION_FORMAT) | {
        "model": {"path": str(model_dir), "directory_digest": digest}, "load": load}

    def task(index: int, chunk: list[str]) -> _Task:
        return _Task(index, chunk, str(out_dir), str(model_dir), digest, load)

    return run_store(out_dir, manifest, paths, task, _predict_partition, scheduler=scheduler, n_jobs=n_jobs,
                     client=client, address=address, progress=progress, description="predictions",
                     name=PREDICTIONS, prefix=PREFIX)[0]


@dataclass
class _RowsTask:
    index: int
    paths: list[str]  # placeholders: the rows come from the feature store's partition `index`
    out_dir: str
    model_dir: str
    digest: str
    store_dir: str


def _predict_rows(task: _RowsTask) -> Result:
    """Predict one partition of a feature store from its rows (runs in the worker)."""
    try:
        model = _model(task.model_dir, task.digest)
        store = Path(task.store_dir)
        rows = pd.read_parquet(part_file(store, task.index, "parquet"), engine="pyarrow")
        bad = json_loads(part_file(store, task.index, "errors.json").read_text(encoding="utf-8"))["bad_files"]
        table = rows.drop(columns="path").set_axis(model_columns(list(rows.columns)), axis=1)
        frame = model.predict_frame(table, index=rows["path"].tolist()) if len(rows) else pd.DataFrame(
            columns=["label", "confidence"])
        frame = frame.rename_axis("file").reset_index()
        frame.attrs = {}
        with atomic_path(part_file(Path(task.out_dir), task.index, "parquet", PREFIX)) as tmp:
            frame.to_parquet(tmp, engine="pyarrow", index=False)
        sidecar = {"partition": task.index, "n_files": len(task.paths), "n_rows": len(frame), "bad_files": bad}
        atomic_write_text(part_file(Path(task.out_dir), task.index, "errors.json", PREFIX), json.dumps(sidecar))
        return task.index, None, {}
    except Exception as exc:
        return task.index, f"{type(exc).__name__}: {exc}", {}


def predict_store_rows(model_dir: str | Path, store_dir: str | Path, out_dir: str | Path, *,
                       scheduler: str | None = "dask", n_jobs: int | None = None, client: Any = None,
                       address: str | None = None, progress: bool = True) -> StoreReport:
    """Predict the rows of the complete feature store ``store_dir`` (no image read) into the
    prediction store ``out_dir``, one task per partition of the feature store, resumable.

    The model's features must be the store's (:func:`~hybridtmd.model.store.check_store_features`:
    a :class:`HybridTMDError` naming the store and each differing field otherwise). The other
    parameters and the result are those of :func:`predict_to_store`; the bad files of the feature
    store are the prediction store's.
    """
    from sklearn.base import clone

    scheduler = check_scheduler(scheduler, client, address)
    require_pyarrow()
    model_dir, out_dir, store_dir = Path(model_dir).resolve(), Path(out_dir), Path(store_dir)
    digest = _model_digest(model_dir)
    model = _model(str(model_dir), digest)
    if model.features_ is None:
        raise HybridTMDError(f"{model_dir}: this model was trained on a feature table without its features' "
                             "settings; predicting a feature store needs a model trained on images or on a store")
    features = read_manifest(store_dir)
    check_complete(store_dir, features)
    check_store_features(store_dir, clone(model.features_), f"the model {model_dir}")
    manifest = {k: features[k] for k in ("n_paths", "paths_sha256", "partition_size", "n_partitions")} | {
        "format": PREDICTION_FORMAT, "format_version": features["format_version"],
        "hybridtmd_version": __version__, "model": {"path": str(model_dir), "directory_digest": digest},
        "feature_store": str(store_dir.resolve())}

    def task(index: int, chunk: list[str]) -> _RowsTask:
        return _RowsTask(index, chunk, str(out_dir), str(model_dir), digest, str(store_dir))

    # the rows of partition i are in the feature store: only the number of files per partition matters here
    return run_store(out_dir, manifest, [""] * int(features["n_paths"]), task, _predict_rows, scheduler=scheduler,
                     n_jobs=n_jobs, client=client, address=address, progress=progress,
                     description="predictions", name=PREDICTIONS, prefix=PREFIX)[0]


def read_predictions(out_dir: str | Path) -> pd.DataFrame:
    """The predictions of a complete prediction store, in file order (bad files have no row); for
    one larger than memory, ``dask.dataframe.read_parquet(f"{out_dir}/pred-*.parquet")``."""
    require_pyarrow()
    out_dir = Path(out_dir)
    manifest = read_manifest(out_dir, PREDICTIONS, PREDICTION_FORMAT)
    n_parts = check_complete(out_dir, manifest, PREFIX)
    frames = [pd.read_parquet(part_file(out_dir, i, "parquet", PREFIX), engine="pyarrow") for i in range(n_parts)]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["file"])
