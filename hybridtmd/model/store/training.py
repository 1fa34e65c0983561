"""Fitting a :class:`~hybridtmd.model.HybridClassifier` on a feature store, without rereading an image."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .tables import StoreTable, check_store_features, features_table, store_features


def fit_from_store(model: Any, store_dir: str | Path, dataset: Any, *, check_features: bool = False
                   ) -> tuple[Any, StoreTable]:
    """Fit ``model`` on the store's rows of ``dataset``'s files (labels and groups joined by path).

    The fitted model is an image model: its ``features_`` are the store's
    (:func:`~hybridtmd.model.store.store_features`), so it predicts, explains and saves as one
    fitted on the images themselves; the rows being those :class:`~hybridtmd.model.HybridFeatures`
    computes in memory, the fit is the same.

    Parameters
    ----------
    model : HybridClassifier
        Its head settings are used; its ``features`` are replaced by the store's.
    store_dir : str or Path
        A complete feature store.
    dataset : hybridtmd.io.Dataset
        The labelled files to train on (:func:`~hybridtmd.model.store.features_table`).
    check_features : bool
        First check that ``model.features`` compute what the store holds (a
        :class:`HybridTMDError` naming the store and each differing field otherwise).

    Returns
    -------
    (model, StoreTable)
        The fitted model and the rows it was fitted on (``errors``: the bad files).
    """
    from sklearn.base import clone

    if check_features and model.features is not None:
        check_store_features(store_dir, model.features if model.features != "default" else _default_features(),
                             "the config")
    data = features_table(store_dir, dataset)
    features = store_features(store_dir)
    model.set_params(features=clone(features))
    model.fit(data.table, data.labels, groups=data.groups)
    model.features_ = features  # the table came from these: the model predicts images with them
    return model, data


def _default_features() -> Any:
    from ..features import HybridFeatures

    return HybridFeatures()


def fit_xgboost_dask(store_dir: str | Path, dataset: Any, *, client: Any = None, address: str | None = None,
                     n_jobs: int | None = None, class_weight: str | None = "balanced", random_state: int = 0,
                     **params: Any) -> tuple[Any, Any]:
    """The XGBoost head fitted on a store larger than memory, by XGBoost's own distributed route
    (:class:`xgboost.dask.DaskXGBClassifier`: each dask worker holds its partitions' rows and the
    histograms are reduced across workers), never the whole table in one process.

    Parameters
    ----------
    store_dir : str or Path
        A complete feature store; read with ``dask.dataframe.read_parquet``, one dask partition
        per store partition.
    dataset : hybridtmd.io.Dataset
        The labelled files (labels joined on ``path``; only its path → label table is in memory).
    client, address, n_jobs :
        The cluster: a client, a scheduler address, else a LocalCluster of ``n_jobs`` processes.
    class_weight : "balanced" or None
        As :class:`~hybridtmd.model.HybridClassifier`'s: each row weighted ``n / (n_classes * n_class)``.
    random_state : int
    **params
        Overrides of the default head's settings (:func:`~hybridtmd.model.heads.default_head`).

    Returns
    -------
    (xgboost.XGBClassifier, ndarray)
        The fitted head as an in-memory classifier (predicts a pandas table of the store's model
        columns, :func:`~hybridtmd.model.store.features_table`), and the class labels its encoded
        classes 0..k-1 stand for. Only the head: no OOD reference, calibration or head selection,
        which need the rows in memory (see docs/scale.md).
    """
    import numpy as np
    import pandas as pd

    from ..._utils.files import path_text
    from ..heads import default_head
    from .manifest import read_manifest
    from .partitions import dask_client
    from .reading import check_complete
    from .tables import model_columns

    try:
        import dask.dataframe as dd
        from xgboost import XGBClassifier
        from xgboost import dask as dxgb
    except ImportError as exc:
        from ...errors import MissingDependencyError

        raise MissingDependencyError(f"fit_xgboost_dask needs dask[dataframe] and xgboost ({exc})") from None
    store_dir = Path(store_dir)
    manifest = read_manifest(store_dir)
    check_complete(store_dir, manifest)
    classes, y = np.unique(np.asarray(dataset.labels, dtype=str), return_inverse=True)
    counts = np.bincount(y)
    weight = len(y) / (len(classes) * counts[y]) if class_weight == "balanced" else np.ones(len(y))
    keys = pd.DataFrame({"path": [path_text(str(p)) for p in dataset.paths], "__y": y, "__w": weight})
    stored = [c for c in manifest["columns"] if c != "path"]
    # each partition joined with the labels where it lies: no shuffle of the table across workers
    rows = dd.read_parquet(str(store_dir / "part-*.parquet"), engine="pyarrow").map_partitions(
        pd.DataFrame.merge, keys, on="path", how="inner")
    settings = default_head(random_state, n_jobs=1).get_params() | params
    with dask_client(client, address, n_jobs) as own:
        # one persisted frame: projections of a lazy one may be partitioned differently (dask
        # joins small files by the size of the columns read), which XGBoost refuses
        rows = own.persist(rows.rename(columns=dict(zip(stored, model_columns(stored), strict=True))))
        X = rows[model_columns(stored)]
        head = dxgb.DaskXGBClassifier(**settings)
        head.client = own
        head.fit(X, rows["__y"], sample_weight=rows["__w"])
        booster = head.get_booster()
    local = XGBClassifier(**settings)
    local.load_model(bytearray(booster.save_raw("json")))
    return local, classes
