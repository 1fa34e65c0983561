"""A partition task that kills its worker process (imported by the dask workers of
``test_store_cluster.test_a_killed_worker_loses_no_partition``): for partition 1 it writes half
of a table to the temporary name and dies before renaming it, as kill -9 would."""

from __future__ import annotations

import os
from pathlib import Path

from hybridtmd.model.store import extraction


def crash_then_extract(task):
    flags = Path(task.store_dir).parent
    if task.index == 1 and ((flags / "always").exists() or not (flags / "crashed").exists()):
        (flags / "crashed").touch()
        (Path(task.store_dir) / ".part-000001.parquet.tmp").write_bytes(b"PAR1 half a table")
        os._exit(1)
    return extraction.extract_partition(task)
