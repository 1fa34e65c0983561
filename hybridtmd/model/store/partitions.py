"""Where a store's partitions run: in this process, in joblib workers or on a dask.distributed cluster.

Every runner takes a picklable ``work(task) -> Result`` function and tasks with an ``index``
attribute, and yields one :data:`Result` per task as tasks finish. ``work`` must return its
failures rather than raise them, so one failing partition does not cancel the others; a task
that never returns (a worker process killed) becomes a failure of its partition here.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..._utils.progress import ProgressBar
from ...errors import HybridTMDError, MissingDependencyError
from .manifest import EXTRA_HINT, MANIFEST, finished, open_store
from .reading import sidecars

SCHEDULERS = ("serial", "joblib", "dask")
#: seconds a client waits for a scheduler address before the run fails
CONNECT_TIMEOUT_S = 5

#: what a partition's task returns: its index, None or the failure reason, and what the driver
#: collects from a finished partition (a dict, empty for a failure)
Result = tuple[int, str | None, dict[str, Any]]


def check_scheduler(scheduler: str | None, client: Any, address: str | None) -> str:
    """The scheduler to use (default "dask" if ``client`` or ``address`` is given, else "serial");
    a ValueError for an unknown one or a client/address without dask."""
    if scheduler is None:
        scheduler = "dask" if client is not None or address else "serial"
    if scheduler not in SCHEDULERS:
        raise ValueError(f"scheduler must be one of {', '.join(SCHEDULERS)}, got {scheduler!r}")
    if (client is not None or address) and scheduler != "dask":
        raise ValueError("client/address are for scheduler='dask'")
    return scheduler


def n_workers(n_jobs: int | None) -> int:
    """Worker count with joblib's convention: None or -1 all cores, -2 all but one, ..."""
    cores = os.cpu_count() or 1
    if n_jobs is None:
        return cores
    return max(1, n_jobs if n_jobs > 0 else cores + 1 + n_jobs)


@contextlib.contextmanager
def dask_client(client: Any = None, address: str | None = None, n_jobs: int | None = None) -> Iterator[Any]:
    """The client to use: the one given, one connected to ``address`` (a :class:`HybridTMDError`
    within :data:`CONNECT_TIMEOUT_S` when nothing answers there), or a LocalCluster of ``n_jobs``
    single-threaded worker processes made here."""
    if client is not None:
        yield client
        return
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise MissingDependencyError(f"scheduler='dask' needs dask and distributed: {EXTRA_HINT}") from None
    if address:
        try:
            own = Client(address, timeout=CONNECT_TIMEOUT_S)
        except (OSError, TimeoutError, ValueError) as exc:
            raise HybridTMDError(f"dask scheduler {address}: no answer within {CONNECT_TIMEOUT_S} s "
                                 f"({type(exc).__name__}: {exc})") from None
        with own:
            yield own
        return
    # single-threaded worker processes: the descriptors hold the GIL for much of their time
    with LocalCluster(n_workers=n_workers(n_jobs), threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster, Client(cluster) as own:
        yield own


def _run_serial(work: Callable[[Any], Result], tasks: list[Any], **_: Any) -> Iterator[Result]:
    return (work(t) for t in tasks)


def _run_joblib(work: Callable[[Any], Result], tasks: list[Any], n_jobs: int | None, **_: Any) -> Iterator[Result]:
    from joblib import Parallel, delayed

    parallel = Parallel(n_jobs=n_workers(n_jobs), return_as="generator_unordered")
    return parallel(delayed(work)(t) for t in tasks)


def _run_dask(work: Callable[[Any], Result], tasks: list[Any], n_jobs: int | None, client: Any,
              address: str | None, stack: contextlib.ExitStack) -> Iterator[Result]:
    from distributed import as_completed

    client = stack.enter_context(dask_client(client, address, n_jobs))
    # pure=False: a retry after a crash must run again, not reuse a cached result key
    futures = {client.submit(work, t, pure=False): t.index for t in tasks}

    def results() -> Iterator[Result]:
        for future in as_completed(futures):
            try:
                yield future.result()
            except Exception as exc:  # a worker died (KilledWorker) or the task could not be sent
                yield futures[future], f"{type(exc).__name__}: {exc}", {}
            finally:
                future.release()

    return results()


_RUNNERS: dict[str, Callable[..., Iterator[Result]]] = {
    "serial": _run_serial, "joblib": _run_joblib, "dask": _run_dask}


def run_partitions(work: Callable[[Any], Result], tasks: list[Any], scheduler: str, *, n_jobs: int | None,
                   client: Any, address: str | None, stack: contextlib.ExitStack) -> Iterator[Result]:
    """One :data:`Result` per task, as they finish, from the runner ``scheduler`` names; a dask
    client made here lives as long as ``stack``."""
    return _RUNNERS[scheduler](work, tasks, n_jobs=n_jobs, client=client, address=address, stack=stack)


@dataclass
class StoreReport:
    """What one run over a store did (:func:`~hybridtmd.model.store.extract_to_store`,
    :func:`~hybridtmd.model.store.predict_to_store`).

    Attributes
    ----------
    store_dir : Path
    n_partitions : int  partitions of the whole store
    written : list of int  partitions computed and written by this call
    already_done : list of int  partitions found finished and left untouched (resume)
    failed : list of (int, str)  partitions whose task raised or whose worker died (partition,
        reason); nothing of them was written, a rerun retries them. Empty when the store is complete.
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


def check_partition_size(partition_size: Any) -> int:
    """``partition_size``, or a ValueError when it is not a positive integer."""
    if not isinstance(partition_size, int) or isinstance(partition_size, bool) or partition_size < 1:
        raise ValueError(f"partition_size must be a positive integer, got {partition_size!r}")
    return partition_size


def _remove_temporaries(store_dir: Path, prefix: str) -> None:
    """Remove the hidden temporaries a dead worker or a crashed run left of its in-flight
    partitions (one run per store at a time: none is being written now)."""
    for stale in store_dir.glob(f".{prefix}-*"):
        with contextlib.suppress(OSError):
            stale.unlink()


def run_store(store_dir: Path, manifest: dict[str, Any], paths: Sequence[str],
              make_task: Callable[[int, list[str]], Any], work: Callable[[Any], Result], *, scheduler: str,
              n_jobs: int | None, client: Any, address: str | None, progress: bool, description: str,
              name: str = MANIFEST, prefix: str = "part"
              ) -> tuple[StoreReport, list[dict[str, Any]]]:
    """Create or resume the store ``store_dir`` (``manifest``, checked against an existing one),
    run ``work`` on ``make_task(index, paths)`` of each unfinished partition, and report: the
    report, and what each partition finished in this run returned."""
    start = time.perf_counter()
    store_dir.mkdir(parents=True, exist_ok=True)
    open_store(store_dir, manifest, name, prefix)
    _remove_temporaries(store_dir, prefix)
    size, n_parts = manifest["partition_size"], manifest["n_partitions"]
    report = StoreReport(store_dir=store_dir, n_partitions=n_parts)
    tasks = []
    for i in range(n_parts):
        if finished(store_dir, i, prefix):
            report.already_done.append(i)
        else:
            tasks.append(make_task(i, list(paths[i * size:(i + 1) * size])))
    sizes = {t.index: len(t.paths) for t in tasks}
    found = []
    # the bar counts the images of the partitions finished in this run
    with contextlib.ExitStack() as stack, ProgressBar(progress and bool(tasks), sum(sizes.values()),
                                                      description) as bar:
        if tasks:
            for index, failure, returned in run_partitions(work, tasks, scheduler, n_jobs=n_jobs, client=client,
                                                           address=address, stack=stack):
                bar.advance(sizes[index])
                found.append(returned)
                if failure is None:
                    report.written.append(index)
                else:
                    report.failed.append((index, failure))
    _remove_temporaries(store_dir, prefix)  # those of workers that died during this run
    # a worker that dies just after finishing a partition takes the report of it along, and dask
    # marks the task failed; its files are complete (the sidecar is written last): it is finished
    done = [i for i, _ in report.failed if finished(store_dir, i, prefix)]
    report.written += done
    report.failed = [(i, r) for i, r in report.failed if i not in done]
    report.written.sort()
    report.failed.sort()
    for sidecar in sidecars(store_dir, n_parts, prefix):
        report.errors.extend((p, r) for p, r in sidecar["bad_files"])
        report.n_rows += sidecar["n_rows"]
    report.seconds = time.perf_counter() - start
    return report, found
