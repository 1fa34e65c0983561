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
    name and renamed into place by the worker itself, the
    sidecar after the table, so a crash at any moment leaves only finished partitions and
    unfinished ones, never a half-written file that looks finished.
resume
    Calling :func:`~hybridtmd.model.store.extract_to_store` again on the same folder with the same file list and
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

Modules
-------
=====================  ===========================================================================
:mod:`.manifest`       ``store.json``: what a store holds, the partition file names, the resume check
:mod:`.partitions`     where partitions run: serial, joblib, dask.distributed
:mod:`.extraction`     :func:`extract_to_store`: one task per partition, written atomically
:mod:`.reading`        :func:`read_store`, :func:`read_store_reasons`, :func:`store_errors`
:mod:`.tables`         :func:`features_table` (a model's columns, labels and groups joined by path),
                       :func:`store_features` (the HybridFeatures the rows came from)
:mod:`.training`       :func:`fit_from_store`: a HybridClassifier fitted on the rows, no image read;
                       :func:`fit_xgboost_dask`: the XGBoost head on a store larger than memory
:mod:`.predicting`     :func:`predict_to_store`: a saved model over any number of files, per partition;
                       :func:`predict_store_rows`: over a feature store's rows, no image read
=====================  ===========================================================================
"""

from .extraction import extract_to_store
from .manifest import read_manifest
from .partitions import SCHEDULERS, StoreReport
from .predicting import predict_store_rows, predict_to_store, read_predictions
from .reading import read_store, read_store_reasons, store_errors
from .tables import StoreTable, check_store_features, features_table, store_features
from .training import fit_from_store, fit_xgboost_dask

__all__ = ["SCHEDULERS", "StoreReport", "StoreTable", "check_store_features", "extract_to_store", "features_table",
           "fit_from_store", "fit_xgboost_dask", "predict_store_rows", "predict_to_store", "read_manifest",
           "read_predictions", "read_store", "read_store_reasons", "store_errors", "store_features"]
