"""The command line's feature-store runs: options shared by extract, train, evaluate and predict
with ``--store``, the scheduler-address check, and the lines a run prints."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from ..errors import HybridTMDError
from .messages import console, err_console, exit_for, fail, report_errors

StoreOption = Annotated[Path | None, typer.Option(
    help="Feature store folder (hybridtmd extract --store): fit on its rows (labels and groups from SOURCE, joined "
         "by path) instead of reading the images again.")]
PredictionStoreOption = Annotated[Path | None, typer.Option(
    help="Streaming prediction into this folder: one parquet file of predictions per partition of files, "
         "resumable (needs pyarrow and, for the default scheduler dask, distributed).")]
SchedulerOption = Annotated[str | None, typer.Option(
    help="With --store: serial | joblib (--n-jobs processes) | dask (--address, else a LocalCluster of --n-jobs "
         "processes). Default: dask for predict; for extract serial, dask with --address.")]
AddressOption = Annotated[str | None, typer.Option(help="With --store: dask scheduler, e.g. tcp://host:8786.")]
PartitionSizeOption = Annotated[int | None, typer.Option(
    min=1, help="With --store: files per partition (unit of work and of resume; default 256).")]


def check_reachable(address: str, timeout_s: float = 5.0) -> None:
    """Fail at once when a dask scheduler address does not answer (not after the client's 30 s)."""
    import socket
    from urllib.parse import urlparse

    if address.startswith("inproc://"):  # a scheduler in this very process (a threads-only LocalCluster)
        return
    parsed = urlparse(address if "://" in address else f"tcp://{address}")
    try:
        host, port = parsed.hostname, parsed.port
    except ValueError:
        host, port = None, None
    if not host or not port:
        fail(f"--address {address!r}: expected tcp://HOST:PORT")
    try:
        socket.create_connection((host, port), timeout=timeout_s).close()
    except OSError as exc:
        fail(f"--address {address}: no dask scheduler answers there ({exc})")


def report_run(store: Path, done: Any, skipped: list[tuple[str, str]]) -> None:
    """Print what a store run did (partitions written, done, failed; rows), its bad files, and
    exit 1 while any partition failed or any file was bad."""
    console.print(f"{store}: {len(done.written)} partition(s) written, {len(done.already_done)} already done, "
                  f"{len(done.failed)} failed (of {done.n_partitions}); {done.n_rows} row(s)")
    for index, reason in done.failed:
        err_console.print(f"  partition {index} failed: {escape(reason)}", soft_wrap=True, highlight=False)
    if done.failed:
        err_console.print("run the same command again to retry the failed partition(s)")
    errors = list(skipped) + done.errors
    report_errors(errors)
    exit_for(errors + done.failed)


def extract_into_store(ds: Any, store: Path, extractor: Any, embedder: Any, *, scheduler: str | None, n_jobs: int,
                       address: str | None, partition_size: int | None, read: dict[str, Any]) -> None:
    """``extract --store``: the dataset's files into the store, then the run's report."""
    from ..model.store import extract_to_store

    try:
        done = extract_to_store(ds.paths, store, extractor=extractor, embedder=embedder,
                                partition_size=partition_size or 256, scheduler=scheduler, n_jobs=n_jobs,
                                address=address, progress=len(ds) >= 20, **read)
    except (HybridTMDError, ValueError, TypeError) as exc:
        fail(str(exc))
    report_run(store, done, ds.skipped)


def store_model(store: Path, model: Any, dataset: Any, *, check: bool) -> Any:
    """``train --store``: ``model`` (the config's head settings) fitted on the store's rows of
    ``dataset``; with ``check`` (a config or --channels given) the model's features must be the
    store's."""
    from ..model.store import fit_from_store

    try:
        model, data = fit_from_store(model, store, dataset, check_features=check)
    except (HybridTMDError, ValueError) as exc:
        fail(str(exc), code=1)
    return model, data


def store_table(store: Path, dataset: Any) -> Any:
    """``evaluate --store``: the store's rows of ``dataset`` (:func:`~hybridtmd.model.store.features_table`)."""
    from ..model.store import features_table

    try:
        data = features_table(store, dataset)
    except HybridTMDError as exc:
        fail(str(exc), code=1)
    if not len(data.table):
        report_errors(data.errors)
        fail("no row of the dataset in the store", code=1)
    return data


def predict_into_store(model_dir: Path, inputs: list[Path], store: Path, *, by_sample: bool, alpha: float | None,
                       scheduler: str | None, address: str | None, partition_size: int | None, n_jobs: int,
                       read: dict[str, Any]) -> None:
    """``predict --store``: every file of ``inputs`` (or, when the one input is a feature store,
    every row of it) into the prediction store, then the run's report."""
    from ..model.store import predict_store_rows, predict_to_store
    from .common import expand_inputs
    from .outputs import check_output_dir

    if by_sample or alpha is not None:
        fail("--by-sample and --alpha are not available with --store yet: predict the partitions, then pool "
             "read_predictions(DIR) with hybridtmd.model.samples.pool_samples")
    check_output_dir(store)
    if address is not None:
        check_reachable(address)
    rows = len(inputs) == 1 and (inputs[0] / "store.json").is_file()  # a feature store: its rows, no image read
    paths = [] if rows else expand_inputs(inputs)
    if not rows and not paths:
        fail("no file to predict")
    if rows and (partition_size is not None or any(v is not None for v in read.values())):
        fail(f"{inputs[0]} is a feature store: its partitions and reading options are its own "
             "(--partition-size and reading options do not apply)")
    try:
        if rows:
            done = predict_store_rows(model_dir, inputs[0], store, scheduler=scheduler or "dask", n_jobs=n_jobs,
                                      address=address, progress=True)
        else:
            done = predict_to_store(model_dir, paths, store, partition_size=partition_size or 256,
                                    scheduler=scheduler or "dask", n_jobs=n_jobs, address=address,
                                    progress=len(paths) >= 20, read=read)
    except (HybridTMDError, ValueError, TypeError) as exc:
        fail(str(exc))
    if done.complete:
        console.print(f"predictions of {done.n_rows} file(s) in {store}/pred-*.parquet "
                      "(hybridtmd.model.store.read_predictions reads them)", soft_wrap=True, highlight=False)
    report_run(store, done, [])
