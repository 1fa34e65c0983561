"""A store as a model's training table: its rows under the model's column names, joined with a
dataset's labels and groups by path, and the :class:`~hybridtmd.model.HybridFeatures` that
computed them (to fit a model that then predicts images)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..._utils.files import path_text
from ...descriptors import DescriptorConfig, DescriptorExtractor
from ...embeddings import CNNEmbedder
from ...errors import HybridTMDError, ModelFileError
from ...preprocess import LevelConfig
from ..columns import LATENT_PREFIX, PHYS_PREFIX
from ..features import HybridFeatures
from .extraction import partition_features
from .manifest import differences, read_manifest
from .reading import check_complete, read_store, sidecars, store_errors

#: HybridFeatures settings that change no value (where and how fast embeddings are computed)
_RUN_SETTINGS = ("device", "batch_size", "cache_dir")


@dataclass
class StoreTable:
    """The rows of a feature store for a model: ``table`` (columns ``phys__...`` and
    ``latent__...``, as :class:`~hybridtmd.model.HybridFeatures` names them), one row per file of
    ``paths``; ``labels`` and ``groups`` from the dataset joined by path (empty strings without
    one); ``indices`` each row's position in the dataset (or the store); ``errors`` the bad files
    (path, reason) of those files, which have no row."""

    table: pd.DataFrame
    paths: list[str]
    labels: np.ndarray
    groups: np.ndarray
    indices: list[int]
    errors: list[tuple[str, str]] = field(default_factory=list)


def model_columns(store_columns: list[str]) -> list[str]:
    """The store's feature columns (``path`` excluded) under the model's names: descriptors get
    their ``phys__`` prefix back, ``latent__`` columns stay."""
    return [c if c.startswith(LATENT_PREFIX) else PHYS_PREFIX + c for c in store_columns if c != "path"]


def features_table(store_dir: str | Path, dataset: Any = None) -> StoreTable:
    """The rows of the complete store ``store_dir`` as a model's table, in ``dataset`` order.

    Parameters
    ----------
    store_dir : str or Path
    dataset : hybridtmd.io.Dataset, optional
        Its files' rows, labels and groups (joined on the store's ``path`` column, which holds
        ``os.fspath`` of each file as given to the extraction). A file of the dataset that is a
        bad file of the store is in ``errors``; one the store does not hold at all is a
        :class:`HybridTMDError` naming the store. None: every row, unlabelled.

    Returns
    -------
    StoreTable
    """
    store_dir = Path(store_dir)
    rows = read_store(store_dir)
    columns = model_columns(list(rows.columns))
    bad = dict(store_errors(store_dir))
    if dataset is None:
        n = len(rows)
        return StoreTable(rows.drop(columns="path").set_axis(columns, axis=1), rows["path"].tolist(),
                          np.full(n, "", dtype=object), np.full(n, "", dtype=object), list(range(n)),
                          list(bad.items()))
    where = pd.Series(np.arange(len(rows)), index=rows["path"].to_numpy())
    where = where[~where.index.duplicated()]
    keys = [path_text(os.fspath(p)) for p in dataset.paths]
    missing = [k for k in keys if k not in where.index and k not in bad]
    if missing:
        raise HybridTMDError(f"{store_dir}: {len(missing)} file(s) of the dataset are not in this store (first: "
                             f"{missing[0]}); extract them into the store with the same file list")
    found = [i for i, k in enumerate(keys) if k in where.index]
    table = rows.iloc[where[[keys[i] for i in found]].to_numpy()].drop(columns="path")
    return StoreTable(table.set_axis(columns, axis=1).reset_index(drop=True), [keys[i] for i in found],
                      np.asarray(dataset.labels, dtype=object)[found], np.asarray(dataset.groups, dtype=object)[found],
                      found, list(dataset.skipped) + [(k, bad[k]) for k in keys if k in bad])


def _config(kind: Any, values: dict[str, Any] | None) -> Any:
    return None if values is None else kind.from_dict(values)


def store_features(store_dir: str | Path) -> HybridFeatures:
    """The fitted :class:`~hybridtmd.model.HybridFeatures` whose rows the store holds (the same
    descriptors, levelling, channels and embedder), so a model fitted on :func:`features_table`
    predicts images as one fitted on the images would; a :class:`HybridTMDError` naming the
    store when this hybridtmd cannot rebuild them."""
    store_dir = Path(store_dir)
    manifest = read_manifest(store_dir)
    ext, emb = manifest["extractor"], manifest.get("embedder")
    try:
        extractor = DescriptorExtractor(families=ext["families"], config=_config(DescriptorConfig, ext["config"]),
                                        level_images=bool(ext["level"]),
                                        level_config=_config(LevelConfig, ext["level_config"]),
                                        channels=ext.get("channels"))
        params = None if emb is None else dict(emb["params"])
        if params is not None:
            params["clip_percentiles"] = tuple(params["clip_percentiles"])
        features = partition_features(extractor, None if params is None else CNNEmbedder(**params))
        units = next((s["channel_units"] for s in sidecars(store_dir, check_complete(store_dir, manifest))
                      if s.get("channel_units")), None)
        return features.restore_fitted(model_columns(manifest["columns"]), units)
    except (KeyError, TypeError, ValueError, ModelFileError) as exc:
        raise HybridTMDError(f"{store_dir}: cannot rebuild the features of this store ({exc})") from None


def _settings(features: HybridFeatures) -> dict[str, Any]:
    settings = features.to_settings()
    settings.pop("channel_units", None)  # seen in the data, not a setting
    if settings["level_images"] and settings["level_config"] is None:  # None levels with the defaults
        settings["level_config"] = LevelConfig().to_dict()
    if settings.get("descriptors") is not None and not settings["descriptors"]["level_images"]:
        settings["descriptors"]["level_config"] = None  # unused: the images arrive levelled
    if settings.get("embedder") is not None:
        settings["embedder"] = {k: v for k, v in settings["embedder"].items() if k not in _RUN_SETTINGS}
    return settings


def check_store_features(store_dir: str | Path, features: HybridFeatures, what: str = "the model") -> None:
    """A :class:`HybridTMDError` naming the store and each differing field when the (unfitted)
    ``features`` would compute other values than those the store holds."""
    from sklearn.base import clone

    wanted = clone(features).fit([])
    differ = differences(_settings(store_features(store_dir)), _settings(wanted))
    if differ:
        raise HybridTMDError(f"{store_dir}: the store's features differ from those of {what} ({differ}); "
                             "extract a store with these settings, or train with the store's")
