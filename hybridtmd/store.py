"""Large-scale descriptor extraction into a resumable, partitioned feature store on disk.

A *feature store* is a folder holding the descriptors of a fixed, ordered list of files, cut
into *partitions* of ``partition_size`` consecutive files (the last one may be shorter)::

    store_dir/
      store.json                  manifest: what the store is (see below); written first
      part-000000.parquet         rows of partition 0: column ``path``, then one float64 column per descriptor
      part-000000.errors.json     partition 0's bad files (path, reason) and undefined values (path, feature,
      part-000001.parquet         reason); written last, so its presence marks the partition finished
      ...

Definitions
-----------
partition *i*
    Input files ``paths[i * partition_size : (i + 1) * partition_size]``; one task of work.
finished partition
    One whose ``.parquet`` and ``.errors.json`` both exist. Each file is written to a temporary
    name and renamed into place by the worker itself, the sidecar after the table, so a crash at
    any moment leaves finished and unfinished partitions, never a half-written one that looks finished.
resume
    Calling :func:`extract_to_store` again on the same folder with the same file list and
    extractor settings computes only the unfinished partitions. The manifest ``store.json``
    records the number of files and the SHA-256 of their ordered list, the partition size, the
    extractor (families, descriptor and levelling settings, columns), the loading options and the
    hybridtmd version; a call that disagrees with it on any of these is a :class:`HybridTMDError`
    naming the store, because mixing rows computed under two settings would go unnoticed later.
bad file
    A file :func:`hybridtmd.io.load_images` cannot read: it has no row; its path and reason are in
    the sidecar (:func:`store_errors`). Nothing about one file stops its partition.
undefined value
    A NaN descriptor; its reason (the same text as
    ``DescriptorExtractor.transform_with_reasons`` gives) is in the sidecar
    (:func:`read_store_reasons`).

Why parquet (pandas + pyarrow), not zarr: the output is a table (a path column and ~100 named
float columns with NaNs), which parquet stores typed and compressed per column and pandas,
dask.dataframe, polars, Spark and DuckDB read directly (``dask.dataframe.read_parquet(
"store_dir/part-*.parquet")`` for a store larger than memory). One file per partition makes
every write independent (no shared metadata, no locking) and resume a file-existence check.

Where the work runs (``scheduler``)
-----------------------------------
``"serial"``
    Partitions one after the other in this process.
``"joblib"``
    Partitions in ``n_jobs`` local worker processes (loky; default all cores).
``"dask"``
    One task per unfinished partition on a dask.distributed cluster: the ``client`` given, or a
    new client connected to ``address`` (``tcp://host:8786``), or else a ``LocalCluster`` of
    ``n_jobs`` single-threaded worker processes made for this call. Workers need hybridtmd and
    pyarrow installed and read the files and write the store themselves, so both paths and
    ``store_dir`` must be valid on the workers (a shared filesystem on a multi-machine cluster).

Whatever the scheduler, each partition is extracted by a clone of ``extractor`` with
``n_jobs=1`` (the parallelism is across partitions) and the rows are identical to
``extractor.fit_transform`` over the same images in one process. Descriptor families are looked
up by name in each worker: the built-in ones work everywhere; a family you register yourself
must be registered in a module the workers import.

Requires pyarrow (and dask/distributed for ``scheduler="dask"``): ``pip install 'hybridtmd[dask]'``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from ._utils.files import atomic_path, atomic_write_text, json_loads, path_text
from ._utils.progress import ProgressBar
from ._version import __version__
from .descriptors import DescriptorExtractor
from .descriptors.extract import COARSE_PIXELS_MESSAGE, coarse_pixel_sides, effective_config, warn_coarse_pixels
from .descriptors.registry import resolve_families
from .errors import HybridTMDError, MissingDependencyError
from .io import load_images

MANIFEST = "store.json"
FORMAT = "hybridtmd-feature-store"
FORMAT_VERSION = 1
SCHEDULERS = ("serial", "joblib", "dask")
_EXTRA_HINT = "pip install 'hybridtmd[dask]'"


def _part(store_dir: Path, index: int, kind: str) -> Path:
    """File of partition ``index``: ``kind`` "parquet" (its rows) or "errors.json" (its sidecar)."""
    return store_dir / f"part-{index:06d}.{kind}"


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


def _require_pyarrow() -> None:
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        raise MissingDependencyError(f"the feature store writes parquet, which needs pyarrow: {_EXTRA_HINT}") from None


def _plain(value: Any) -> Any:
    """A JSON-comparable form of a settings object (dataclasses -> dicts, tuples -> lists)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = dataclasses.asdict(value)
    return json.loads(json.dumps(value, default=str))


def _paths_digest(paths: Sequence[str]) -> str:
    # NUL cannot occur in a path, so the joined list has one reading
    h = hashlib.sha256()
    for p in paths:
        h.update(p.encode("utf-8", "surrogateescape"))
        h.update(b"\0")
    return h.hexdigest()


def _manifest(paths: Sequence[str], partition_size: int, extractor: DescriptorExtractor,
              pixel_size_nm: Any, channel: str | None) -> dict[str, Any]:
    families = [f.name for f in resolve_families(extractor.families)]  # None and the default list agree
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "hybridtmd_version": __version__,
        "n_paths": len(paths),
        "paths_sha256": _paths_digest(paths),
        "partition_size": partition_size,
        "n_partitions": -(-len(paths) // partition_size),
        "extractor": {
            "class": type(extractor).__name__,
            "families": families,
            "config": _plain(extractor.config),
            "level": bool(extractor.level_images),  # key kept: stores made earlier must still resume
            "level_config": _plain(extractor.level_config),
        },
        "columns": ["path", *map(str, extractor.get_feature_names_out())],
        "load": {"pixel_size_nm": _plain(pixel_size_nm), "channel": channel},
    }


def read_manifest(store_dir: str | Path) -> dict[str, Any]:
    """The manifest (``store.json``) of a store; a :class:`HybridTMDError` if there is none."""
    path = Path(store_dir) / MANIFEST
    try:
        manifest = json_loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise HybridTMDError(f"{store_dir}: not a feature store (no {MANIFEST})") from None
    except (OSError, ValueError) as exc:
        raise HybridTMDError(f"{path}: unreadable store manifest: {exc}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise HybridTMDError(f"{path}: not a hybridtmd feature store manifest")
    return manifest


def _flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _differences(old: dict[str, Any], new: dict[str, Any]) -> str:
    """Short description of how two manifests differ, e.g. ``extractor.families ['areal'] -> ['grains']``."""
    import reprlib

    short = reprlib.Repr()  # attributes, not keywords: keywords need Python 3.12
    short.maxlist, short.maxstring, short.maxother = 4, 40, 40
    old_flat, new_flat = _flatten(old), _flatten(new)
    keys = [k for k in dict.fromkeys([*old_flat, *new_flat]) if old_flat.get(k) != new_flat.get(k)]
    if any(k.startswith("extractor.") for k in keys):
        keys = [k for k in keys if k != "columns"]  # follows from the extractor settings
    return "; ".join("the list of input files differs" if key == "paths_sha256"
                     else f"{key} {short.repr(old_flat.get(key))} -> {short.repr(new_flat.get(key))}"
                     for key in keys)


def _open_store(store_dir: Path, manifest: dict[str, Any]) -> None:
    """Create the store, or check that an existing one was made with the same inputs and settings."""
    if (store_dir / MANIFEST).exists():
        differ = _differences(read_manifest(store_dir), manifest)
        if differ:
            raise HybridTMDError(
                f"{store_dir}: cannot resume this feature store, it was made with other inputs or settings "
                f"({differ}); use a new store directory or delete this one")
        return
    if any(store_dir.glob("part-*")):
        raise HybridTMDError(f"{store_dir}: holds partition files but no {MANIFEST}; refusing to mix stores")
    atomic_write_text(store_dir / MANIFEST, json.dumps(manifest, indent=1))


def _finished(store_dir: Path, index: int) -> bool:
    return _part(store_dir, index, "errors.json").exists() and _part(store_dir, index, "parquet").exists()


#: what a partition's task returns: its index, None or the failure reason, and the pixel sides of
#: its images coarser than the reference with the number of images read (warned once per run)
_Result = tuple[int, str | None, list[float], int]


def _extract_partition(task: _Task) -> _Result:
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
        with atomic_path(_part(store_dir, task.index, "parquet")) as tmp:
            table.to_parquet(tmp, engine="pyarrow", index=False)
        sidecar = {"partition": task.index, "n_files": len(task.paths), "n_rows": len(kept),
                   "bad_files": [[path_text(p), r] for p, r in report.errors], "undefined": undefined}
        # written last: its presence marks the partition finished
        atomic_write_text(_part(store_dir, task.index, "errors.json"), json.dumps(sidecar))
        return task.index, None, coarse, len(report.images)
    except Exception as exc:
        return task.index, f"{type(exc).__name__}: {exc}", [], 0


def _run_serial(tasks: list[_Task], **_: Any) -> Iterator[_Result]:
    return (_extract_partition(t) for t in tasks)


def _run_joblib(tasks: list[_Task], n_jobs: int | None, **_: Any) -> Iterator[_Result]:
    from joblib import Parallel, delayed

    parallel = Parallel(n_jobs=_n_workers(n_jobs), return_as="generator_unordered")
    return parallel(delayed(_extract_partition)(t) for t in tasks)


def _n_workers(n_jobs: int | None) -> int:
    """Worker count with joblib's convention: None or -1 all cores, -2 all but one, ..."""
    cores = os.cpu_count() or 1
    if n_jobs is None:
        return cores
    return max(1, n_jobs if n_jobs > 0 else cores + 1 + n_jobs)


@contextlib.contextmanager
def _dask_client(client: Any, address: str | None, n_jobs: int | None) -> Iterator[Any]:
    """The client to use: the one given, one connected to ``address``, or a LocalCluster made here."""
    if client is not None:
        yield client
        return
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise MissingDependencyError(f"scheduler='dask' needs dask and distributed: {_EXTRA_HINT}") from None
    if address:
        with Client(address) as own:
            yield own
        return
    # single-threaded worker processes: the descriptors hold the GIL for much of their time
    with LocalCluster(n_workers=_n_workers(n_jobs), threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster, Client(cluster) as own:
        yield own


def _run_dask(tasks: list[_Task], n_jobs: int | None, client: Any, address: str | None,
              stack: contextlib.ExitStack) -> Iterator[_Result]:
    from distributed import as_completed

    client = stack.enter_context(_dask_client(client, address, n_jobs))
    # pure=False: a retry after a crash must run again, not reuse a cached result key
    futures = {client.submit(_extract_partition, t, pure=False): t.index for t in tasks}

    def results() -> Iterator[_Result]:
        for future in as_completed(futures):
            try:
                yield future.result()
            except Exception as exc:  # a worker died (KilledWorker) or the task could not be sent
                yield futures[future], f"{type(exc).__name__}: {exc}", [], 0
            finally:
                future.release()

    return results()


_RUNNERS: dict[str, Callable[..., Iterator[_Result]]] = {
    "serial": _run_serial, "joblib": _run_joblib, "dask": _run_dask}


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
        (bytes of a name that are not valid text written ``\\xNN``: :func:`hybridtmd._utils.files.path_text`).
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
    if scheduler is None:
        scheduler = "dask" if client is not None or address else "serial"
    if scheduler not in SCHEDULERS:
        raise ValueError(f"scheduler must be one of {', '.join(SCHEDULERS)}, got {scheduler!r}")
    if (client is not None or address) and scheduler != "dask":
        raise ValueError("client/address are for scheduler='dask'")
    if not isinstance(partition_size, int) or partition_size < 1:
        raise ValueError(f"partition_size must be a positive integer, got {partition_size!r}")
    extractor = DescriptorExtractor(progress=False) if extractor is None else extractor
    if not isinstance(extractor, DescriptorExtractor):
        raise TypeError(f"extractor must be a DescriptorExtractor, got {type(extractor).__name__}")
    _require_pyarrow()
    paths = [os.fspath(p) for p in paths]
    store_dir = Path(store_dir)
    store_dir.mkdir(parents=True, exist_ok=True)
    manifest = _manifest(paths, partition_size, extractor, pixel_size_nm, channel)
    _open_store(store_dir, manifest)
    # a crashed run leaves hidden temporaries of its in-flight partitions; one run per store at a time
    for stale in store_dir.glob(".part-*"):
        with contextlib.suppress(OSError):
            stale.unlink()

    n_parts = manifest["n_partitions"]
    report = StoreReport(store_dir=store_dir, n_partitions=n_parts)
    tasks = []
    for i in range(n_parts):
        if _finished(store_dir, i):
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
            results = _RUNNERS[scheduler](tasks, n_jobs=n_jobs, client=client, address=address, stack=stack)
            for index, failure, sides, n_images in results:
                bar.advance(sizes[index])
                coarse, n_read = coarse + sides, n_read + n_images
                if failure is None:
                    report.written.append(index)
                else:
                    report.failed.append((index, failure))
    warn_coarse_pixels(coarse, n_read, effective_config(extractor.families, extractor.config), once=False)
    report.written.sort()
    report.failed.sort()
    for sidecar in _sidecars(store_dir, n_parts):
        report.errors.extend((p, r) for p, r in sidecar["bad_files"])
        report.n_rows += sidecar["n_rows"]
    report.seconds = time.perf_counter() - start
    return report


def _sidecars(store_dir: Path, n_parts: int) -> Iterator[dict[str, Any]]:
    for i in range(n_parts):
        if _finished(store_dir, i):
            yield json_loads(_part(store_dir, i, "errors.json").read_text(encoding="utf-8"))


def _check_complete(store_dir: Path) -> int:
    """Number of partitions; a :class:`HybridTMDError` naming the missing ones if any."""
    n_parts = int(read_manifest(store_dir)["n_partitions"])
    missing = [i for i in range(n_parts) if not _finished(store_dir, i)]
    if missing:
        shown = ", ".join(map(str, missing[:10])) + (" ..." if len(missing) > 10 else "")
        raise HybridTMDError(f"{store_dir}: feature store is incomplete, {len(missing)} of {n_parts} partition(s) "
                             f"unfinished ({shown}); rerun the extraction to finish it")
    return n_parts


def read_store(store_dir: str | Path) -> pd.DataFrame:
    """The whole feature table of a complete store: column ``path`` then the descriptors, rows in
    input order (bad files have no row). For a store larger than memory use
    ``dask.dataframe.read_parquet(f"{store_dir}/part-*.parquet")``."""
    _require_pyarrow()
    store_dir = Path(store_dir)
    n_parts = _check_complete(store_dir)
    columns = read_manifest(store_dir)["columns"]
    frames = [pd.read_parquet(_part(store_dir, i, "parquet"), engine="pyarrow") for i in range(n_parts)]
    if not frames:
        return pd.DataFrame({c: pd.Series(dtype=str if c == "path" else "float64") for c in columns})
    return pd.concat(frames, ignore_index=True)[columns]


def read_store_reasons(store_dir: str | Path) -> pd.DataFrame:
    """Every undefined (NaN) value of a complete store: columns ``path``, ``feature``, ``reason``."""
    store_dir = Path(store_dir)
    rows = [row for sidecar in _sidecars(store_dir, _check_complete(store_dir)) for row in sidecar["undefined"]]
    return pd.DataFrame(rows, columns=["path", "feature", "reason"])


def store_errors(store_dir: str | Path) -> list[tuple[str, str]]:
    """Bad files (path, reason) of the finished partitions of a store, in input order."""
    store_dir = Path(store_dir)
    n_parts = int(read_manifest(store_dir)["n_partitions"])
    return [(p, r) for sidecar in _sidecars(store_dir, n_parts) for p, r in sidecar["bad_files"]]
