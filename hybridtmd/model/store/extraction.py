"""Extracting descriptors of many files into a feature store, one task per partition (the package
docstring describes the store)."""

from __future__ import annotations

import contextlib
import json
import os
import time
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from ..._utils import ProgressBar, atomic_path, atomic_write_text, path_text
from ...descriptors import DescriptorExtractor
from ...descriptors.extract import COARSE_PIXELS_MESSAGE, coarse_pixel_sides, effective_config, warn_coarse_pixels
from ...descriptors.registry import resolve_families
from ...io import load_images
from .manifest import base_manifest, finished, open_store, part_file, plain, require_pyarrow
from .partitions import Result, check_scheduler, run_partitions
from .reading import sidecars


def _manifest(paths: list[str], partition_size: int, extractor: DescriptorExtractor,
              pixel_size_nm: Any, channel: str | None) -> dict[str, Any]:
    families = [f.name for f in resolve_families(extractor.families)]  # None and the default list agree
    return base_manifest(paths, partition_size) | {
        "extractor": {
            "class": type(extractor).__name__,
            "families": families,
            "config": plain(extractor.config),
            "level": bool(extractor.level_images),  # key kept: stores made earlier must still resume
            "level_config": plain(extractor.level_config),
        },
        "columns": ["path", *map(str, extractor.get_feature_names_out())],
        "load": {"pixel_size_nm": plain(pixel_size_nm), "channel": channel},
    }


@dataclass
class StoreReport:
    """What one :func:`extract_to_store` call did.

    Attributes
    ----------
    store_dir : Path
    n_partitions : int  partitions of the whole store
    written : list of int  partitions extracted and written by this call
    already_done : list of int  partitions found finished and left untouched (resume)
    failed : list of (int, str)  partitions whose task raised (partition, reason); nothing of them
        was written, a rerun retries them. Empty when the store is complete.
    errors : list of (str, str)  bad files (path, reason) of every finished partition, old and new
    n_rows : int  rows (readable images) in the finished partitions
    seconds : float  wall time of this call
    """

    store_dir: Path
    n_partitions: int
    written: list[int] = field(default_factory=list)
    already_done: list[int] = field(default_factory=list)
    failed: list[tuple[int, str]] = field(default_factory=list)
    errors: list[tuple[str, str]] = field(default_factory=list)
    n_rows: int = 0
    seconds: float = 0.0

    @property
    def complete(self) -> bool:
        """True when every partition of the store is finished."""
        return not self.failed and len(self.written) + len(self.already_done) == self.n_partitions


@dataclass
class _Task:
    """Everything a worker needs for one partition (pickled to joblib/dask workers)."""

    index: int
    paths: list[str]
    store_dir: str
    extractor: DescriptorExtractor
    pixel_size_nm: float | tuple[float, float] | None
    channel: str | None


def _extract_partition(task: _Task) -> Result:
    """Load, extract and write one partition. Runs in the worker. Exceptions are returned, not
    raised, so one failing partition does not cancel the others (joblib would abort the batch)."""
    try:
        from sklearn.base import clone

        report = load_images(task.paths, pixel_size_nm=task.pixel_size_nm, channel=task.channel, on_error="skip")
        config = effective_config(task.extractor.families, task.extractor.config)
        coarse = coarse_pixel_sides(report.images, config)
        # a name with bytes that are not text (PEP 383) would make the parquet write fail on every rerun
        kept = [path_text(task.paths[i]) for i in report.indices]
        columns = list(map(str, task.extractor.get_feature_names_out()))
        undefined: list[list[str]] = []
        if report.images:
            extractor = clone(task.extractor).set_params(n_jobs=1, progress=False)
            with warnings.catch_warnings():  # given once for the whole run by extract_to_store
                warnings.filterwarnings("ignore", message=COARSE_PIXELS_MESSAGE)
                features, reasons = extractor.fit(report.images).transform_with_reasons(report.images)
            undefined = [[kept[int(i)], str(f), str(r)] for i, f, r in
                         reasons[["image", "feature", "reason"]].itertuples(index=False)]
        else:  # every file bad: an empty, typed table keeps the schema of the store uniform
            features = pd.DataFrame({c: pd.Series(dtype="float64") for c in columns})
        table = pd.concat([pd.DataFrame({"path": pd.Series(kept, dtype=str)}), features], axis=1)
        store_dir = Path(task.store_dir)
        with atomic_path(part_file(store_dir, task.index, "parquet")) as tmp:
            table.to_parquet(tmp, engine="pyarrow", index=False)
        sidecar = {"partition": task.index, "n_files": len(task.paths), "n_rows": len(kept),
                   "bad_files": [[path_text(p), r] for p, r in report.errors], "undefined": undefined}
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
    partition_size: int = 256,
    scheduler: str | None = None,
    n_jobs: int | None = None,
    client: Any = None,
    address: str | None = None,
    pixel_size_nm: float | tuple[float, float] | None = None,
    channel: str | None = None,
    progress: bool = True,
) -> StoreReport:
    """Extract the descriptors of ``paths`` into the feature store ``store_dir``, resuming it.

    Parameters
    ----------
    paths : iterable of str or Path
        Files to read, in the order of the store's rows; the ``path`` column holds ``os.fspath(p)``
        (bytes of a name that are not valid text written ``\\xNN``: :func:`hybridtmd._utils.path_text`).
    store_dir : str or Path
        Store folder (created if absent). Finished partitions of an earlier run with the same
        inputs and settings are kept; different ones are a :class:`HybridTMDError`.
    extractor : DescriptorExtractor, optional
        Families and settings (default ``DescriptorExtractor(progress=False)``: all default
        families, levelling on). Its ``n_jobs`` and ``progress`` are ignored inside partitions.
    partition_size : int
        Files per partition: the unit of work, of resume and of loss on a crash.
    scheduler : "serial" | "joblib" | "dask", optional
        Where partitions run (module docstring). Default "dask" if ``client`` or ``address`` is
        given, else "serial".
    n_jobs : int, optional
        Local workers for "joblib" and for the LocalCluster of "dask" (default all cores; -1 all,
        -2 all but one, as joblib).
    client : distributed.Client, optional
        Run on this cluster (not closed here).
    address : str, optional
        Scheduler address to connect to, e.g. ``tcp://10.0.0.5:8786``.
    pixel_size_nm, channel :
        Passed to :func:`hybridtmd.io.load_images` (recorded in the manifest).
    progress : bool
        Show a progress bar (images of the partitions finished in this run).

    Returns
    -------
    StoreReport
        Partitions written, already done and failed; the bad files of the whole store. A failed
        partition does not stop the others; rerun to retry it. :func:`read_store` refuses an
        incomplete store.
    """
    start = time.perf_counter()
    scheduler = check_scheduler(scheduler, client, address)
    if not isinstance(partition_size, int) or partition_size < 1:
        raise ValueError(f"partition_size must be a positive integer, got {partition_size!r}")
    extractor = DescriptorExtractor(progress=False) if extractor is None else extractor
    if not isinstance(extractor, DescriptorExtractor):
        raise TypeError(f"extractor must be a DescriptorExtractor, got {type(extractor).__name__}")
    require_pyarrow()
    paths = [os.fspath(p) for p in paths]
    store_dir = Path(store_dir)
    store_dir.mkdir(parents=True, exist_ok=True)
    manifest = _manifest(paths, partition_size, extractor, pixel_size_nm, channel)
    open_store(store_dir, manifest)
    # a crashed run leaves hidden temporaries of its in-flight partitions; one run per store at a time
    for stale in store_dir.glob(".part-*"):
        with contextlib.suppress(OSError):
            stale.unlink()

    n_parts = manifest["n_partitions"]
    report = StoreReport(store_dir=store_dir, n_partitions=n_parts)
    tasks = []
    for i in range(n_parts):
        if finished(store_dir, i):
            report.already_done.append(i)
        else:
            chunk = paths[i * partition_size:(i + 1) * partition_size]
            tasks.append(_Task(i, chunk, str(store_dir), extractor, pixel_size_nm, channel))
    sizes = {t.index: len(t.paths) for t in tasks}
    coarse, n_read = [], 0
    # the bar counts the images of the partitions finished in this run
    with contextlib.ExitStack() as stack, ProgressBar(progress and bool(tasks), sum(sizes.values()),
                                                      "feature store") as bar:
        if tasks:
            results = run_partitions(_extract_partition, tasks, scheduler, n_jobs=n_jobs, client=client,
                                     address=address, stack=stack)
            for index, failure, found in results:
                bar.advance(sizes[index])
                coarse, n_read = coarse + found.get("coarse", []), n_read + found.get("n_read", 0)
                if failure is None:
                    report.written.append(index)
                else:
                    report.failed.append((index, failure))
    warn_coarse_pixels(coarse, n_read, effective_config(extractor.families, extractor.config), once=False)
    report.written.sort()
    report.failed.sort()
    for sidecar in sidecars(store_dir, n_parts):
        report.errors.extend((p, r) for p, r in sidecar["bad_files"])
        report.n_rows += sidecar["n_rows"]
    report.seconds = time.perf_counter() - start
    return report
