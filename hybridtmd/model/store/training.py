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
