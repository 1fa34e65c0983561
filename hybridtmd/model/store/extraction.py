"""Extracting the features of many files into a feature store, one task per partition: the
descriptors and, with an embedder, the frozen-CNN embeddings (the package docstring describes
the store)."""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from ..._utils.files import atomic_path, atomic_write_text, path_text
from ...descriptors import DescriptorExtractor
from ...descriptors.extract import COARSE_PIXELS_MESSAGE, coarse_pixel_sides, effective_config, warn_coarse_pixels
from ...descriptors.registry import resolve_families
from ...embeddings import CNNEmbedder
from ...io import load_images
from ..columns import PHYS_PREFIX
from ..features import HybridFeatures
from .manifest import base_manifest, part_file, plain, require_pyarrow
from .partitions import Result, StoreReport, check_partition_size, check_scheduler, run_store

#: the CNNEmbedder parameters a store records (and rebuilds its embedder from); device, batch
#: size, cache and progress change no vector
EMBEDDER_PARAMS = ("backbone", "weights", "tta", "input_size", "clip_percentiles", "tile_size_px", "tile_stride_px")


def embedder_settings(embedder: CNNEmbedder | None) -> dict[str, Any] | None:
    """What a store records of its embedder: the parameters that change a vector, and the
    resolved backbone (name, weights identity and SHA-256, input side, embedding size)."""
    if embedder is None:
        return None
    if not isinstance(embedder, CNNEmbedder):
        raise TypeError(f"embedder must be a CNNEmbedder, got {type(embedder).__name__}")
    if embedder.pca_components is not None:
        raise ValueError("a feature store holds per-image embeddings: an embedder with pca_components (fitted on "
                         "all images) cannot be partitioned; use pca_components=None")
    backbone = embedder.get_backbone()  # an unknown backbone or missing weights fail here, before any work
    weights_id = str(backbone.weights_id)
    return {
        "params": plain({k: getattr(embedder, k) for k in EMBEDDER_PARAMS}),
        "backbone": backbone.name,
        "weights_id": weights_id,
        "weights_sha256": weights_id.rpartition(":sha256:")[2] if ":sha256:" in weights_id else None,
        "input_size": embedder.resolved_input_size(),
        "embedding_dim": int(backbone.embedding_dim),
    }


def warn_padding(partition_size: int, embedder: CNNEmbedder | None) -> None:
    """Warn when partitions waste CNN passes: the embedder pads the last batch of every call
    (one per partition) to ``batch_size`` rows, so a partition that is not a multiple of it pays
    for rows it throws away (partitions of 10 cost 3x per image those of 32 in bench_scale.py)."""
    batch = None if embedder is None else int(embedder.batch_size)
    if batch and partition_size % batch and partition_size > 1:
        from ..._utils.user_warnings import warn_at_user

        warn_at_user(f"partition_size {partition_size} is not a multiple of the embedder's batch_size {batch}: "
                     f"every partition pads its last batch to {batch} images; use a multiple of {batch}")


def load_settings(pixel_size_nm: Any = None, channel: str | int | None = None, z_unit: str | None = None,
                  z_scale: float | None = None, channels: Sequence[str] | None = None) -> dict[str, Any]:
    """The reading options a store records and gives :func:`hybridtmd.io.load_images` for every file."""
    return {"pixel_size_nm": plain(pixel_size_nm), "channel": channel, "z_unit": z_unit, "z_scale": z_scale,
            "channels": None if channels is None else list(channels)}


def store_columns(features: HybridFeatures) -> list[str]:
    """The store's columns of fitted ``features``: ``path``, the descriptors without their
    ``phys__`` prefix (as stores without embeddings always had them), the ``latent__`` columns."""
    return ["path", *(c[len(PHYS_PREFIX):] if c.startswith(PHYS_PREFIX) else c
                      for c in map(str, features.get_feature_names_out()))]


def partition_features(extractor: DescriptorExtractor, embedder: CNNEmbedder | None) -> HybridFeatures:
    """The features one partition computes: each image levelled once (as the extractor would),
    then the extractor's descriptors and the embedder's vectors - the rows
    :class:`~hybridtmd.model.HybridFeatures` gives in memory, which ``train`` fits on."""
    from sklearn.base import clone

    # the images arrive levelled: the descriptors' own levelling settings no longer apply
    descriptors = clone(extractor).set_params(level_images=False, level_config=None, n_jobs=1, progress=False)
    return HybridFeatures(descriptors=descriptors, level_images=bool(extractor.level_images),
                          level_config=extractor.level_config,
                          embedder=None if embedder is None else clone(embedder).set_params(progress=False),
                          channels=None if extractor.channels is None else dict(extractor.channels))


def _manifest(paths: list[str], partition_size: int, extractor: DescriptorExtractor, embedder: CNNEmbedder | None,
              load: dict[str, Any]) -> dict[str, Any]:
    families = [f.name for f in resolve_families(extractor.families)]  # None and the default list agree
    features = partition_features(extractor, embedder).fit([])  # per-image halves: fitted without data
    return base_manifest(paths, partition_size) | {
        "extractor": {
            "class": type(extractor).__name__,
            "families": families,
            "config": plain(extractor.config),
            "level": bool(extractor.level_images),  # key kept: stores made earlier must still resume
            "level_config": plain(extractor.level_config),
            "channels": plain(extractor.channels),
        },
        "embedder": embedder_settings(embedder),
        "columns": store_columns(features),
        "load": load,
    }


@dataclass
class _Task:
    """Everything a worker needs for one partition (pickled to joblib/dask workers)."""

    index: int
    paths: list[str]
    store_dir: str
    extractor: DescriptorExtractor
    embedder: CNNEmbedder | None
    load: dict[str, Any]


def extract_partition(task: _Task) -> Result:
    """Load, extract and write one partition. Runs in the worker. Exceptions are returned, not
    raised, so one failing partition does not cancel the others (joblib would abort the batch)."""
    from sklearn.base import clone

    try:
        load = task.load
        report = load_images(task.paths, pixel_size_nm=load["pixel_size_nm"], channel=load["channel"],
                             z_unit=load.get("z_unit"), z_scale=load.get("z_scale"), channels=load.get("channels"),
                             on_error="skip")
        config = effective_config(task.extractor.families, task.extractor.config)
        coarse = coarse_pixel_sides(report.images, config)
        # a name with bytes that are not text (PEP 383) would make the parquet write fail on every rerun
        kept = [path_text(task.paths[i]) for i in report.indices]
        features = partition_features(task.extractor, task.embedder)
        undefined: list[list[str]] = []
        units: dict[str, str] = {}
        if report.images:
            with warnings.catch_warnings():  # given once for the whole run by extract_to_store
                warnings.filterwarnings("ignore", message=COARSE_PIXELS_MESSAGE)
                table, reasons = features.fit(report.images).transform_with_reasons(report.images)
            undefined = [[kept[int(i)], str(f).removeprefix(PHYS_PREFIX), str(r)] for i, f, r in
                         reasons[["image", "feature", "reason"]].itertuples(index=False)]
            # each channel's unit as seen in the files (fitting per-image features sees no image)
            units = dict(clone(task.extractor).fit(report.images).channel_units_)
            table.columns = store_columns(features)[1:]
        else:  # every file bad: an empty, typed table keeps the schema of the store uniform
            columns = store_columns(features.fit([]))[1:]
            table = pd.DataFrame({c: pd.Series(dtype="float32" if c.startswith("latent__") else "float64")
                                  for c in columns})
        table = pd.concat([pd.DataFrame({"path": pd.Series(kept, dtype=str)}), table], axis=1)
        store_dir = Path(task.store_dir)
        with atomic_path(part_file(store_dir, task.index, "parquet")) as tmp:
            table.to_parquet(tmp, engine="pyarrow", index=False)
        sidecar = {"partition": task.index, "n_files": len(task.paths), "n_rows": len(kept),
                   "bad_files": [[path_text(p), r] for p, r in report.errors], "undefined": undefined,
                   "channel_units": units}
        # written last: its presence marks the partition finished
        atomic_write_text(part_file(store_dir, task.index, "errors.json"), json.dumps(sidecar))
        return task.index, None, {"coarse": coarse, "n_read": len(report.images)}
    except Exception as exc:
        return task.index, f"{type(exc).__name__}: {exc}", {}


def extract_to_store(
    paths: Iterable[str | os.PathLike],
    store_dir: str | Path,
    *,
    extractor: DescriptorExtractor | None = None,
    embedder: CNNEmbedder | None = None,
    partition_size: int = 256,
    scheduler: str | None = None,
    n_jobs: int | None = None,
    client: Any = None,
    address: str | None = None,
    pixel_size_nm: float | tuple[float, float] | None = None,
    channel: str | None = None,
    z_unit: str | None = None,
    z_scale: float | None = None,
    progress: bool = True,
) -> StoreReport:
    """Extract the features of ``paths`` into the feature store ``store_dir``, resuming it.

    Parameters
    ----------
    paths : iterable of str or Path
        Files to read, in the order of the store's rows; the ``path`` column holds ``os.fspath(p)``
        (bytes of a name that are not valid text written ``\\xNN``: :func:`hybridtmd._utils.path_text`).
    store_dir : str or Path
        Store folder (created if absent). Finished partitions of an earlier run with the same
        inputs and settings are kept; different ones are a :class:`HybridTMDError`.
    extractor : DescriptorExtractor, optional
        Families, settings and channels (default ``DescriptorExtractor(progress=False)``: all
        default families, levelling on). Its ``n_jobs`` and ``progress`` are ignored inside
        partitions. With ``channels`` every file must hold those channels (else it is a bad file).
    embedder : CNNEmbedder, optional
        Also the frozen-CNN embeddings of the levelled height maps, columns ``latent__0000...``
        beside the descriptors (no ``pca_components``). Its backbone, weights digest and input
        settings are recorded in ``store.json`` and checked on resume.
    partition_size : int
        Files per partition: the unit of work, of resume and of loss on a crash.
    scheduler : "serial" | "joblib" | "dask", optional
        Where partitions run (package docstring). Default "dask" if ``client`` or ``address`` is
        given, else "serial".
    n_jobs : int, optional
        Local workers for "joblib" and for the LocalCluster of "dask" (default all cores; -1 all,
        -2 all but one, as joblib).
    client : distributed.Client, optional
        Run on this cluster (not closed here).
    address : str, optional
        Scheduler address to connect to, e.g. ``tcp://10.0.0.5:8786``; nothing answering there
        is a :class:`HybridTMDError` within seconds.
    pixel_size_nm, channel, z_unit, z_scale :
        Passed to :func:`hybridtmd.io.load_images` for every file (recorded in the manifest).
    progress : bool
        Show a progress bar (images of the partitions finished in this run).

    Returns
    -------
    StoreReport
        Partitions written, already done and failed; the bad files of the whole store. A failed
        partition does not stop the others; rerun to retry it. :func:`read_store` refuses an
        incomplete store.
    """
    scheduler = check_scheduler(scheduler, client, address)
    check_partition_size(partition_size)
    extractor = DescriptorExtractor(progress=False) if extractor is None else extractor
    if not isinstance(extractor, DescriptorExtractor):
        raise TypeError(f"extractor must be a DescriptorExtractor, got {type(extractor).__name__}")
    require_pyarrow()
    paths = [os.fspath(p) for p in paths]
    store_dir = Path(store_dir)
    channels = None if extractor.channels is None else list(extractor.channels)
    load = load_settings(pixel_size_nm, channel, z_unit, z_scale, channels)
    manifest = _manifest(paths, partition_size, extractor, embedder, load)
    warn_padding(partition_size, embedder)

    def task(index: int, chunk: list[str]) -> _Task:
        return _Task(index, chunk, str(store_dir), extractor, embedder, load)

    report, found = run_store(store_dir, manifest, paths, task, extract_partition, scheduler=scheduler,
                              n_jobs=n_jobs, client=client, address=address, progress=progress,
                              description="feature store")
    warn_coarse_pixels([s for f in found for s in f.get("coarse", [])], sum(f.get("n_read", 0) for f in found),
                       effective_config(extractor.families, extractor.config), once=False)
    return report
